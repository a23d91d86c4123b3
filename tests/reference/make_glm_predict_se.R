# Delta-method intervals of predicted probabilities: glm + predict(se.fit = TRUE).
# Reference for ClinicalModel.predict_interval / coefficient_covariance
# (tests/models/test_interval.py). Run from the repository root:
#   Rscript tests/reference/make_glm_predict_se.R
d <- read.csv("tests/reference/df_binary.csv")
d$risk_group <- factor(d$risk_group, levels = c("low", "intermediate", "high"))
fit <- glm(cancer ~ age + famhistory + marker + risk_group, family = binomial, data = d)
pr <- predict(fit, newdata = d, type = "link", se.fit = TRUE)
z <- qnorm(0.975)
out <- data.frame(patientid = d$patientid, lp = pr$fit, se = pr$se.fit,
                  p = plogis(pr$fit), lo = plogis(pr$fit - z * pr$se.fit),
                  hi = plogis(pr$fit + z * pr$se.fit))
write.csv(out, "tests/reference/glm_predict_se.csv", row.names = FALSE)
V <- vcov(fit)
write.csv(data.frame(term = rownames(V), V, check.names = FALSE),
          "tests/reference/glm_predict_vcov.csv", row.names = FALSE)
