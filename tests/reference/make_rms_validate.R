# rms::validate reference for her2core.metrics.bootstrap_validate.
# Data: aSAH (pROC, GPL>=3; vendored as aSAH.csv). Model: lrm(Poor ~ age + s100b
# + ndka + wfns (as a number) + gender), B = 1000 bootstrap resamples. The resamples are
# random, so the tests compare the optimism within Monte-Carlo error only; the
# apparent indexes are deterministic.
# Regenerate: Rscript tests/reference/make_rms_validate.R  (from the repo root)
suppressMessages(library(rms))
here <- "tests/reference"
d <- read.csv(file.path(here, "aSAH.csv"))
d$poor <- as.integer(d$outcome == "Poor")
d$gender <- factor(d$gender, levels = c("Female", "Male"))
fit <- lrm(poor ~ age + s100b + ndka + wfns + gender, data = d, x = TRUE, y = TRUE)
set.seed(1)
v <- validate(fit, B = 1000)
keep <- c("Dxy", "Slope", "B")
out <- data.frame(index = keep,
                  apparent = sprintf("%.15g", v[keep, "index.orig"]),
                  optimism = sprintf("%.15g", v[keep, "optimism"]),
                  corrected = sprintf("%.15g", v[keep, "index.corrected"]),
                  n = v[keep, "n"])
write.csv(out, file.path(here, "rms_validate.csv"), row.names = FALSE, quote = FALSE)
print(v)
