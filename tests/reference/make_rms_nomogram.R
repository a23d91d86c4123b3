# Reference values for her2core.nomogram from R rms::nomogram.
# Data: pROC's aSAH (../shared/reference/pROC_aSAH/aSAH.csv, GPL>=3, vendored here
# as aSAH.csv). Model: lrm(Poor ~ age + s100b + wfns (factor) + gender).
# Axis ranges are set to the training min..max of each continuous predictor.
# Regenerate: Rscript tests/reference/make_rms_nomogram.R  (from the repo root)
suppressMessages(library(rms))
here <- "tests/reference"
d <- read.csv(file.path(here, "aSAH.csv"))
d$poor <- as.integer(d$outcome == "Poor")
d$wfns <- factor(d$wfns, levels = 1:5)
d$gender <- factor(d$gender, levels = c("Female", "Male"))
dd <- datadist(d[, c("age", "s100b", "wfns", "gender")])
for (v in c("age", "s100b")) {
  dd$limits["Low:prediction", v] <- min(d[[v]])
  dd$limits["High:prediction", v] <- max(d[[v]])
}
options(datadist = "dd")
fit <- lrm(poor ~ age + s100b + wfns + gender, data = d)
b <- coef(fit)
write.csv(data.frame(term = names(b), coef = sprintf("%.15g", b)),
          file.path(here, "rms_nomogram_coef.csv"), row.names = FALSE, quote = FALSE)
fun.at <- c(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
nom <- nomogram(fit, age = seq(min(d$age), max(d$age), length.out = 7),
                s100b = seq(min(d$s100b), max(d$s100b), length.out = 7),
                fun = plogis, fun.at = fun.at, maxscale = 100)
rows <- list()
for (v in c("age", "s100b", "wfns", "gender")) {
  a <- nom[[v]]
  rows[[v]] <- data.frame(variable = v, value = as.character(a[[v]]),
                          points = sprintf("%.15g", a$points))
}
write.csv(do.call(rbind, rows), file.path(here, "rms_nomogram_points.csv"),
          row.names = FALSE, quote = FALSE)
pv <- nom[["Predicted Value"]]
write.csv(data.frame(probability = sprintf("%.15g", pv$x.real), total_points = sprintf("%.15g", pv$x)),
          file.path(here, "rms_nomogram_probability_axis.csv"), row.names = FALSE, quote = FALSE)
# predicted probabilities of the first 10 patients (for total points -> probability)
pr <- predict(fit, newdata = d[1:10, ], type = "fitted")
write.csv(data.frame(rowname = d$rowname[1:10], age = d$age[1:10], s100b = d$s100b[1:10],
                     wfns = as.character(d$wfns[1:10]), gender = as.character(d$gender[1:10]),
                     probability = sprintf("%.15g", pr)),
          file.path(here, "rms_nomogram_patients.csv"), row.names = FALSE, quote = FALSE)
cat("rms", as.character(packageVersion("rms")), "\n")
print(nom)
