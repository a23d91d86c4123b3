# Further pROC reference values (deterministic outputs only) for her2core.metrics.
# Data: aSAH (pROC, GPL>=3; vendored as aSAH.csv) and dcurves df_binary
# (Apache-2.0; vendored as df_binary.csv).
# Regenerate: Rscript tests/reference/make_proc_extra.R  (from the repo root)
suppressMessages(library(pROC))
here <- "tests/reference"
a <- read.csv(file.path(here, "aSAH.csv"))
b <- read.csv(file.path(here, "df_binary.csv"))
b$y <- as.integer(b$cancer == "TRUE" | b$cancer == TRUE)
f <- function(x) sprintf("%.15g", x)
rows <- list()
add <- function(data, ycol, score, y, s) {
  r <- roc(y, s, levels = c(0, 1), direction = "<", quiet = TRUE)
  ci <- ci.auc(r, method = "delong")
  best <- coords(r, "best", best.method = "youden",
                 ret = c("threshold", "sensitivity", "specificity", "tp", "fp", "tn", "fn"),
                 transpose = FALSE)
  best <- best[1, ]  # ties: pROC returns all; the tests only use data without ties
  k <- best$tp; n <- best$tp + best$fn
  w <- prop.test(k, n, correct = FALSE)$conf.int
  cp <- binom.test(k, n)$conf.int
  rows[[length(rows) + 1]] <<- data.frame(
    data = data, score = score, auc = f(r$auc), var_delong = f(var(r)),
    ci_lower = f(ci[1]), ci_upper = f(ci[3]), n_thresholds = length(r$thresholds),
    youden_threshold = f(best$threshold), youden_sensitivity = f(best$sensitivity),
    youden_specificity = f(best$specificity), tp = best$tp, fp = best$fp, tn = best$tn,
    fn = best$fn, n_youden_ties = nrow(coords(r, "best", best.method = "youden", transpose = FALSE)),
    sens_wilson_lower = f(w[1]), sens_wilson_upper = f(w[2]),
    sens_cp_lower = f(cp[1]), sens_cp_upper = f(cp[2]))
}
ya <- as.integer(a$outcome == "Poor")
for (s in c("wfns", "s100b", "ndka")) add("aSAH", "outcome", s, ya, a[[s]])
for (s in c("marker", "cancerpredmarker", "age")) add("df_binary", "cancer", s, b$y, b[[s]])
write.csv(do.call(rbind, rows), file.path(here, "proc_extra.csv"), row.names = FALSE, quote = FALSE)
# paired and unpaired DeLong on df_binary
r1 <- roc(b$y, b$marker, levels = c(0, 1), direction = "<", quiet = TRUE)
r2 <- roc(b$y, b$cancerpredmarker, levels = c(0, 1), direction = "<", quiet = TRUE)
t1 <- roc.test(r1, r2, method = "delong", paired = TRUE)
old <- b$age > 65
r3 <- roc(b$y[old], b$marker[old], levels = c(0, 1), direction = "<", quiet = TRUE)
r4 <- roc(b$y[!old], b$marker[!old], levels = c(0, 1), direction = "<", quiet = TRUE)
t2 <- roc.test(r3, r4, method = "delong", paired = FALSE)
write.csv(data.frame(test = c("paired marker vs cancerpredmarker", "unpaired marker age>65 vs <=65"),
                     statistic = f(c(t1$statistic, t2$statistic)), p = f(c(t1$p.value, t2$p.value)),
                     df = c(NA, f(t2$parameter)),
                     auc_a = f(c(r1$auc, r3$auc)), auc_b = f(c(r2$auc, r4$auc))),
          file.path(here, "proc_extra_tests.csv"), row.names = FALSE, quote = FALSE)
# ROC curve of aSAH s100b (thresholds, sensitivities, specificities)
r <- roc(ya, a$s100b, levels = c(0, 1), direction = "<", quiet = TRUE)
write.csv(data.frame(threshold = f(r$thresholds), sensitivity = f(r$sensitivities),
                     specificity = f(r$specificities)),
          file.path(here, "proc_roc_s100b.csv"), row.names = FALSE, quote = FALSE)
# direction ">" : ndka as a protective score
r <- roc(ya, a$ndka, levels = c(0, 1), direction = ">", quiet = TRUE)
write.csv(data.frame(auc = f(r$auc), var_delong = f(var(r))),
          file.path(here, "proc_direction_gt.csv"), row.names = FALSE, quote = FALSE)
# stratified bootstrap CI (random: the tests compare within Monte-Carlo error only)
set.seed(1)
ci <- ci.auc(roc(ya, a$s100b, levels = c(0, 1), direction = "<", quiet = TRUE),
             method = "bootstrap", boot.n = 2000, boot.stratified = TRUE, progress = "none")
write.csv(data.frame(lower = f(ci[1]), upper = f(ci[3])),
          file.path(here, "proc_bootstrap_s100b_seed1.csv"), row.names = FALSE, quote = FALSE)
cat("pROC", as.character(packageVersion("pROC")), "\n")
