# Reference values for her2core.metrics.calibration from base R glm and a
# transcription of ResourceSelection::hoslem.test (not packaged in Debian).
# Data: dcurves df_binary (vendored as df_binary.csv; MSKCC-Epi-Bio/dcurves,
# Apache-2.0), outcome cancer, probabilities cancerpredmarker; and the fitted
# values of glm(cancer ~ marker + age + famhistory); and cancerpredmarker applied to
# dcurves df_case_control (vendored as df_case_control.csv), an external sample
# where it is miscalibrated (case-control prevalence 0.56).
# Regenerate: Rscript tests/reference/make_glm_calibration.R  (from the repo root)
here <- "tests/reference"
d <- read.csv(file.path(here, "df_binary.csv"))
d$y <- as.integer(d$cancer == "TRUE" | d$cancer == TRUE)
fit_model <- glm(y ~ marker + age + famhistory, family = binomial, data = d)
cc <- read.csv(file.path(here, "df_case_control.csv"))
sets <- list(cancerpredmarker = list(y = d$y, p = d$cancerpredmarker),
             glm_fitted = list(y = d$y, p = unname(fitted(fit_model))),
             case_control_cancerpredmarker = list(y = cc$casecontrol, p = cc$cancerpredmarker))
hoslem <- function(y, yhat, g = 10) {  # ResourceSelection 0.3-5 hoslem.test, verbatim logic
  qq <- unique(quantile(yhat, probs = seq(0, 1, 1/g)))
  cutyhat <- cut(yhat, breaks = qq, include.lowest = TRUE)
  observed <- xtabs(cbind(y0 = 1 - y, y1 = y) ~ cutyhat)
  expected <- xtabs(cbind(yhat0 = 1 - yhat, yhat1 = yhat) ~ cutyhat)
  chisq <- sum((observed - expected)^2/expected)
  c(chisq, length(qq) - 1)
}
out <- list()
for (nm in names(sets)) {
  p <- sets[[nm]]$p
  yy <- sets[[nm]]$y
  lp <- qlogis(p)
  f0 <- glm(yy ~ 1, offset = lp, family = binomial)
  f1 <- glm(yy ~ lp, family = binomial)
  s0 <- summary(f0)$coefficients; s1 <- summary(f1)$coefficients
  for (g in c(5, 10, 20)) {
    h <- hoslem(yy, p, g)
    out[[length(out) + 1]] <- data.frame(
      predictor = nm, g = g, hl_statistic = sprintf("%.15g", h[1]), hl_groups = h[2],
      hl_df = h[2] - 2, hl_p = sprintf("%.15g", pchisq(h[1], h[2] - 2, lower.tail = FALSE)),
      intercept = sprintf("%.15g", s0[1, 1]), intercept_se = sprintf("%.15g", s0[1, 2]),
      slope = sprintf("%.15g", s1[2, 1]), slope_se = sprintf("%.15g", s1[2, 2]),
      slope_model_intercept = sprintf("%.15g", s1[1, 1]),
      brier = sprintf("%.15g", mean((p - yy)^2)))
  }
}
write.csv(do.call(rbind, out), file.path(here, "glm_calibration.csv"), row.names = FALSE, quote = FALSE)
write.csv(data.frame(fitted = sprintf("%.17g", fitted(fit_model))),
          file.path(here, "glm_calibration_fitted.csv"), row.names = FALSE, quote = FALSE)
write.csv(data.frame(term = names(coef(fit_model)), coef = sprintf("%.15g", coef(fit_model))),
          file.path(here, "glm_calibration_model_coef.csv"), row.names = FALSE, quote = FALSE)
# lowess calibration curve (R lowess, iter = 0, f = 2/3) at the sorted predictions
lw <- lowess(d$cancerpredmarker, d$y, iter = 0)
write.csv(data.frame(x = sprintf("%.15g", lw$x), y = sprintf("%.15g", lw$y)),
          file.path(here, "lowess_cancerpredmarker.csv"), row.names = FALSE, quote = FALSE)
