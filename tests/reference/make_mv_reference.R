# Writes tests/reference/metafor_mv.json: reference values for the three-level model (metafor's
# rma.mv with random = ~ 1 | cluster/effect) and clubSandwich's HTZ Wald test.
# Run from the repository root:  Rscript tests/reference/make_mv_reference.R
# Needs Debian's r-cran-metafor, r-cran-metadat, r-cran-clubsandwich, r-cran-jsonlite.
# The test suite reads only the JSON; it never needs R.
suppressPackageStartupMessages({
  library(metafor); library(metadat); library(clubSandwich); library(jsonlite)
})

num <- function(x) unname(as.numeric(x))
# sparse = TRUE: the same model, but bakdash2021 (678 rows) fits in seconds instead of minutes.
# nlminb at rel.tol 1e-10 (as make_core_reference.R); profile CIs with uniroot at tol 1e-10
# (the default, eps^0.25 ~ 1.2e-4, is too coarse for a 1e-4 comparison).
mvctrl <- list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000)
cictrl <- list(tol = 1e-10, maxiter = 10000)

ref <- list()
ref$source <- list(
  script = "tests/reference/make_mv_reference.R",
  R = R.version.string,
  metafor = as.character(packageVersion("metafor")),
  metadat = as.character(packageVersion("metadat")),
  clubSandwich = as.character(packageVersion("clubSandwich")),
  calls = c(
    "m <- rma.mv(yi, vi, mods = <formula>, random = ~ 1 | cluster / effect, data = d, method = 'REML', test = 'z' | 't', dfs = 'residual' | 'contain', sparse = TRUE, control = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))",
    "predict(m)  # intercept-only models: pi.lb, pi.ub",
    "confint(m, control = list(tol = 1e-10, maxiter = 10000))  # profile likelihood CIs of sigma2[1], sigma2[2]",
    "I2 per level: 100 * sigma2 / (sum(sigma2) + (k - p) / tr(P)), P = W - W X (X'WX)^-1 X'W, W = diag(1/vi) (metafor website, 'I^2 for multilevel and multivariate models'; Nakagawa & Santos 2012)",
    "pseudo-R2 per level: 100 * (sigma2_0 - sigma2_mods) / sigma2_0 with sigma2_0 of the intercept-only model (unclamped here)",
    "Wald_test(m, constraints = constrain_zero(2:p), vcov = 'CR2', cluster = d$cluster, test = 'HTZ')",
    "coef_test(m, vcov = 'CR2', cluster = d$cluster, test = 'Satterthwaite')",
    "fallback: rma.mv(yi, vi, random = ~ 1 | id / es) with one effect per cluster (molloy2014) vs rma(yi, vi, method = 'REML'); confint(rma, type = 'PL', control = list(tol = 1e-10, maxiter = 10000))"
  ),
  date = as.character(Sys.Date())
)

# ---- datasets (cluster = level 3, every row its own effect = level 2) ---------------------------
konst <- dat.konstantopoulos2011
assink <- dat.assink2016
bak <- dat.bakdash2021
data <- list(
  konstantopoulos2011 = data.frame(yi = num(konst$yi), vi = num(konst$vi),
                                   cluster = konst$district, effect = konst$school,
                                   year = konst$year),
  assink2016 = data.frame(yi = assink$yi, vi = assink$vi, cluster = assink$study,
                          effect = assink$esid, year = assink$year, deltype = assink$deltype),
  bakdash2021 = data.frame(yi = bak$es.z, vi = bak$vi.z, cluster = bak$SampleID,
                           effect = bak$Outcome, measure = bak$SA.measure.type)
)
mods_of <- list(konstantopoulos2011 = "~ year", assink2016 = "~ year + deltype",
                bakdash2021 = "~ measure")
ref$data <- lapply(data, as.list)

i2_levels <- function(m, d, X) {
  W <- diag(1 / d$vi)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  vt <- (m$k - m$p) / sum(diag(P))
  num(100 * m$sigma2 / (sum(m$sigma2) + vt))
}

fit <- function(d, f, test = "z", dfs = "residual") {
  rma.mv(yi, vi, mods = as.formula(f), random = ~ 1 | cluster / effect, data = d,
         method = "REML", test = test, dfs = dfs, sparse = TRUE, control = mvctrl)
}

describe <- function(m, d) {
  out <- list(beta = num(m$beta), se = num(m$se), zval = num(m$zval), pval = num(m$pval),
              ci_lb = num(m$ci.lb), ci_ub = num(m$ci.ub), sigma2 = num(m$sigma2),
              QE = num(m$QE), QE_p = num(m$QEp), QM = num(m$QM), QM_p = num(m$QMp),
              QM_df = num(m$QMdf), dfs = num(m$ddf), logLik = num(logLik(m)),
              coef_names = rownames(m$beta), k = m$k, p = m$p,
              I2_levels = i2_levels(m, d, model.matrix(m)))
  if (m$int.only) {
    pr <- predict(m)
    out$pi_lb <- num(pr$pi.lb); out$pi_ub <- num(pr$pi.ub)
  }
  out
}

mv <- list()
for (ds in names(data)) {
  d <- data[[ds]]
  for (f in c("~ 1", mods_of[[ds]])) {
    for (spec in list(c("z", "residual"), c("t", "residual"), c("t", "contain"))) {
      m <- fit(d, f, spec[1], spec[2])
      mv[[paste(ds, f, spec[1], spec[2], sep = "|")]] <- describe(m, d)
    }
  }
  m0 <- fit(d, "~ 1")
  ci <- confint(m0, control = cictrl)
  mv[[paste(ds, "~ 1", "z", "residual", sep = "|")]]$confint <- list(
    sigma2_between = num(ci[[1]]$random["sigma^2.1", ]),
    sigma2_within = num(ci[[2]]$random["sigma^2.2", ]))
  m1 <- fit(d, mods_of[[ds]])
  mv[[paste(ds, mods_of[[ds]], "z", "residual", sep = "|")]]$R2_levels <-
    num(100 * (m0$sigma2 - m1$sigma2) / m0$sigma2)
}
ref$three_level <- mv

# ---- clubSandwich: CR2 coefficient tests and the HTZ Wald test on models with moderators -------
wald <- list()
for (ds in names(data)) {
  d <- data[[ds]]
  m <- fit(d, mods_of[[ds]])
  p <- m$p
  w <- Wald_test(m, constraints = constrain_zero(2:p), vcov = "CR2", cluster = d$cluster,
                 test = "HTZ")
  ct <- as.data.frame(coef_test(m, vcov = "CR2", cluster = d$cluster, test = "Satterthwaite"))
  wald[[paste(ds, mods_of[[ds]], sep = "|")]] <- list(
    constraints = 2:p, Fstat = num(w$Fstat), df_num = num(w$df_num),
    df_denom = num(w$df_denom), p_val = num(w$p_val),
    coef = list(beta = num(ct$beta), se = num(ct$SE), df = num(ct$df_Satt),
                pval = num(ct$p_Satt)))
  if (p > 2) {  # a single constraint as well (q = 1: HTZ reduces to the Satterthwaite t test)
    w1 <- Wald_test(m, constraints = constrain_zero(p), vcov = "CR2", cluster = d$cluster,
                    test = "HTZ")
    wald[[paste(ds, mods_of[[ds]], sep = "|")]]$single <- list(
      constraints = p, Fstat = num(w1$Fstat), df_num = num(w1$df_num),
      df_denom = num(w1$df_denom), p_val = num(w1$p_val))
  }
}
ref$wald_htz <- wald

# ---- one effect per cluster: sigma2 components are not identifiable ---------------------------
mol <- escalc("ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
mol$id <- seq_len(nrow(mol)); mol$es <- 1
m <- rma.mv(yi, vi, random = ~ 1 | id / es, data = mol, method = "REML", control = mvctrl)
r <- rma(yi, vi, data = mol, method = "REML", control = list(threshold = 1e-12, maxiter = 10000))
ref$fallback <- list(dataset = "molloy2014", yi = num(mol$yi), vi = num(mol$vi),
                     rma_mv_sigma2 = num(m$sigma2), rma_mv_beta = num(m$beta),
                     rma_mv_se = num(m$se), rma_tau2 = num(r$tau2), rma_beta = num(r$beta),
                     rma_se = num(r$se), rma_ci_lb = num(r$ci.lb), rma_ci_ub = num(r$ci.ub),
                     rma_pi_lb = num(predict(r)$pi.lb), rma_pi_ub = num(predict(r)$pi.ub),
                     rma_tau2_pl_ci = num(confint(r, type = "PL", control = cictrl)$random["tau^2", ]))

write_json(ref, "tests/reference/metafor_mv.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote tests/reference/metafor_mv.json\n")
