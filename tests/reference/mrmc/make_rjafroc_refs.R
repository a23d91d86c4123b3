# Converts published RJafroc data and expected values ("goodValues") to CSV for
# tests/reader_study. RJafroc itself is not needed: the .RData / .rds files are read
# with base R. Usage (from the repository root), with the files taken from
# github.com/dpc10ster/RJafroc at commit 44b0e39ebb0adda0d28d675850cbcf97d4d85d3f:
#   Rscript tests/reference/mrmc/make_rjafroc_refs.R DIR
# where DIR holds data/datasetCadLroc.RData and the goodValues361 .rds files named in
# EXPECTED.md (flat, under their base names).
args <- commandArgs(trailingOnly = TRUE)
src <- if (length(args)) args[1] else "/tmp/rj"
out <- "tests/reference/mrmc"
fmt <- function(x) sprintf("%.15g", x)

# datasetCadLroc: reader 1 = CAD, readers 2-10 radiologists; 120 non-diseased then 80
# diseased cases. ROC ratings as RJafroc's DfLroc2Roc: the NL rating of a non-diseased
# case, max(LL, LL_IL) of a diseased case.
load(file.path(src, "datasetCadLroc.RData"))
d <- datasetCadLroc
NL <- d$ratings$NL; LL <- d$ratings$LL; LLIL <- d$ratings$LL_IL
J <- dim(NL)[2]; K2 <- dim(LL)[3]; K <- dim(NL)[3]; K1 <- K - K2
rows <- list()
for (j in 1:J) {
  rows[[j]] <- data.frame(reader = j, case = 1:K, truth = c(rep(0, K1), rep(1, K2)),
                          rating = c(NL[1, j, 1:K1, 1], pmax(LL[1, j, , 1], LLIL[1, j, , 1])))
}
write.csv(do.call(rbind, rows), file.path(out, "cad_lroc_roc.csv"), row.names = FALSE, quote = FALSE)

vals <- list()
put <- function(src_name, x) {
  for (k in names(x)) {
    v <- as.numeric(x[[k]])
    nm <- if (length(v) > 1) paste0(k, "[", seq_along(v), "]") else k
    vals[[length(vals) + 1]] <<- data.frame(source = src_name, quantity = nm, value = fmt(v))
  }
}
put("StCadVsRad 1T-RRFC", readRDS(file.path(src, "1T-RRFC_Wilcoxon.rds")))
put("StCadVsRad 1T-RRRC", readRDS(file.path(src, "1T-RRRC_Wilcoxon.rds")))
put("SsPowerGivenJK RRRC J=10 K=165", readRDS(file.path(src, "ss_rrrc.rds")))
put("SsPowerGivenJK FRRC J=10 K=131", readRDS(file.path(src, "ss_frrc.rds")))
put("SsPowerGivenJK RRFC J=10 K=53", readRDS(file.path(src, "ss_rrfc.rds")))
write.csv(do.call(rbind, vals), file.path(out, "rjafroc_expected.csv"), row.names = FALSE, quote = FALSE)
