# Reference values for the study report statistics (her2core.metrics.table1, odds,
# reclassification, calibrate).
# Data: aSAH (pROC, GPL>=3; vendored as aSAH.csv), outcome Poor = 1; two small
# simulated samples for the exact Wilcoxon test (written to study_stats_samples.csv).
# Regenerate: Rscript tests/reference/make_study_stats.R  (from the repo root)
# R 4.2.2, rms 6.5-0, Hmisc 4.7-2 (Debian bookworm).
suppressMessages(library(rms))
here <- "tests/reference"
fmt <- function(x) sprintf("%.15g", x)
d <- read.csv(file.path(here, "aSAH.csv"))
d$poor <- as.integer(d$outcome == "Poor")
d$gender <- factor(d$gender, levels = c("Female", "Male"))
d$wfns_f <- factor(d$wfns)
rows <- list()
add <- function(test, what, value) rows[[length(rows) + 1]] <<-
  data.frame(test = test, what = what, value = fmt(value))

# ---- single tests ------------------------------------------------------------
pos <- d$poor == 1
tt <- t.test(d$age[pos], d$age[!pos])
add("t.test age", "t", tt$statistic); add("t.test age", "df", tt$parameter)
add("t.test age", "p", tt$p.value)
wt <- suppressWarnings(wilcox.test(d$s100b[pos], d$s100b[!pos]))  # ties: normal approx
add("wilcox.test s100b", "W", wt$statistic); add("wilcox.test s100b", "p", wt$p.value)
wt <- suppressWarnings(wilcox.test(d$ndka[pos], d$ndka[!pos]))
add("wilcox.test ndka", "W", wt$statistic); add("wilcox.test ndka", "p", wt$p.value)
set.seed(3)
x <- round(rnorm(15, 1), 4); y <- round(rnorm(12), 4)
write.csv(data.frame(sample = c(rep("x", 15), rep("y", 12)), value = c(x, y)),
          file.path(here, "study_stats_samples.csv"), row.names = FALSE, quote = FALSE)
wt <- wilcox.test(x, y)  # no ties, n < 50: exact
add("wilcox.test exact", "W", wt$statistic); add("wilcox.test exact", "p", wt$p.value)
add("shapiro.test x", "p", shapiro.test(x)$p.value)
add("shapiro.test age pos", "p", shapiro.test(d$age[pos])$p.value)
add("shapiro.test age neg", "p", shapiro.test(d$age[!pos])$p.value)
tab <- table(d$gender, d$poor)
ct <- chisq.test(tab)  # 2 x 2: Yates
add("chisq.test gender", "X2", ct$statistic); add("chisq.test gender", "p", ct$p.value)
ct <- suppressWarnings(chisq.test(table(d$wfns, d$poor)))
add("chisq.test wfns", "X2", ct$statistic); add("chisq.test wfns", "p", ct$p.value)
add("fisher.test wfns", "p", fisher.test(table(d$wfns, d$poor))$p.value)
add("fisher.test gender", "p", fisher.test(tab)$p.value)
ps <- c(0.01, 0.04, 0.03, NA, 0.5, 0.002, 0.2)
adj <- p.adjust(ps, "BH")
for (i in seq_along(ps)) add("p.adjust BH", paste0("p", i), adj[i])

# ---- Table 1 with the decision rules of her2core.metrics.table1 -------------
t1 <- list()
for (v in c("age", "s100b", "ndka")) {
  a <- d[[v]][pos]; b <- d[[v]][!pos]
  normal <- shapiro.test(a)$p.value > 0.05 && shapiro.test(b)$p.value > 0.05
  p <- if (normal) t.test(a, b)$p.value else suppressWarnings(wilcox.test(a, b))$p.value
  t1[[v]] <- data.frame(variable = v, test = if (normal) "t-test (Welch)" else "Mann-Whitney",
                        p = p)
}
for (v in c("gender", "wfns")) {
  tb <- table(d[[v]], d$poor)
  e <- suppressWarnings(chisq.test(tb))$expected
  if (all(e >= 5)) { p <- chisq.test(tb)$p.value; test <- "chi-squared" }
  else { p <- fisher.test(tb)$p.value; test <- "Fisher" }
  t1[[v]] <- data.frame(variable = v, test = test, p = p)
}
t1 <- do.call(rbind, t1)
t1$p_fdr <- p.adjust(t1$p, "BH")
t1$p <- fmt(t1$p); t1$p_fdr <- fmt(t1$p_fdr)
write.csv(t1, file.path(here, "study_stats_table1.csv"), row.names = FALSE, quote = FALSE)

# ---- lrm: univariable and multivariable ---------------------------------------
coefs <- list()
put <- function(model, f) {
  s <- sqrt(diag(vcov(f)))
  b <- coef(f)
  coefs[[length(coefs) + 1]] <<- data.frame(model = model, term = names(b), coef = fmt(b),
                                             se = fmt(s), p = fmt(2 * pnorm(-abs(b / s))))
}
for (v in c("age", "s100b", "ndka", "gender", "wfns_f")) put(paste("uni", v), lrm(as.formula(paste("poor ~", v)), data = d))
fm <- lrm(poor ~ age + s100b + ndka + gender + wfns_f, data = d, x = TRUE, y = TRUE)
put("multi", fm)
write.csv(do.call(rbind, coefs), file.path(here, "study_stats_lrm.csv"), row.names = FALSE, quote = FALSE)

# ---- calibrate (bias-corrected curve) with recorded resample indices ----------
f2 <- lrm(poor ~ age + s100b + ndka + gender, data = d, x = TRUE, y = TRUE)
B <- 40
set.seed(7)
idx <- replicate(B, sample(nrow(d), replace = TRUE))   # what predab.resample draws
write.csv(t(idx), file.path(here, "study_stats_calibrate_indices.csv"), row.names = FALSE, quote = FALSE)
set.seed(7)
cal <- calibrate(f2, B = B)
cc <- unclass(cal)
write.csv(data.frame(predy = fmt(cc[, "predy"]), calibrated_orig = fmt(cc[, "calibrated.orig"]),
                     calibrated_corrected = fmt(cc[, "calibrated.corrected"]),
                     optimism = fmt(cc[, "optimism"]), n = cc[, "n"]),
          file.path(here, "study_stats_calibrate.csv"), row.names = FALSE, quote = FALSE)
# print.calibrate.default's summary of the corrected curve, at full precision
predicted <- attr(cal, "predicted")
s <- !is.na(cc[, "predy"] + cc[, "calibrated.corrected"])
err <- predicted - approx(cc[s, "predy"], cc[s, "calibrated.corrected"], xout = predicted,
                          ties = mean)$y
add("calibrate", "mean_absolute_error", mean(abs(err), na.rm = TRUE))
add("calibrate", "mean_squared_error", mean(err^2, na.rm = TRUE))
add("calibrate", "quantile90_absolute_error", quantile(abs(err), 0.9, na.rm = TRUE))

# ---- val.prob ----------------------------------------------------------------
p_new <- predict(f2, type = "fitted")
p_ref <- predict(lrm(poor ~ age + gender, data = d), type = "fitted")
p_mis <- plogis(0.6 * qlogis(p_new) + 0.4)
vp <- list()
for (nm in c("p_new", "p_mis")) {
  v <- val.prob(get(nm), d$poor, pl = FALSE)
  vp[[nm]] <- data.frame(p = nm, stat = names(v), value = fmt(v))
}
write.csv(do.call(rbind, vp), file.path(here, "study_stats_valprob.csv"), row.names = FALSE, quote = FALSE)
write.csv(data.frame(poor = d$poor, p_ref = fmt(p_ref), p_new = fmt(p_new), p_mis = fmt(p_mis)),
          file.path(here, "study_stats_probs.csv"), row.names = FALSE, quote = FALSE)

# ---- Hmisc improveProb: continuous NRI and IDI ------------------------------------
ip <- improveProb(p_ref, p_new, d$poor)
ipn <- c("nri", "se.nri", "z.nri", "nri.ev", "se.nri.ev", "nri.ne", "se.nri.ne", "idi", "se.idi",
         "z.idi", "improveSens", "improveSpec")
for (k in ipn) add("improveProb", k, ip[[k]])

write.csv(do.call(rbind, rows), file.path(here, "study_stats_tests.csv"), row.names = FALSE, quote = FALSE)
invisible(print(cal, digits = 4))
