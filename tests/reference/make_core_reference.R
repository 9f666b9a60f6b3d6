# Writes tests/reference/metafor_core.json: reference values for alliance_meta's statistical core.
# Run from the repository root:  Rscript tests/reference/make_core_reference.R
# Needs Debian's r-cran-metafor, r-cran-metadat, r-cran-clubsandwich, r-cran-jsonlite.
# The test suite reads only the JSON; it never needs R.
suppressPackageStartupMessages({
  library(metafor); library(metadat); library(clubSandwich); library(jsonlite)
})

# rma.mv: nlminb stops with "no convergence" at rel.tol = 1e-12 on these data; 1e-10 converges.
ctrl <- list(threshold = 1e-12, maxiter = 10000, stepadj = 0.5, tol = 1e-12)
methods <- c("DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM")

num <- function(x) unname(as.numeric(x))

uni <- function(m, with_ci = TRUE) {
  out <- list(
    beta = num(m$beta), se = num(m$se), zval = num(m$zval), pval = num(m$pval),
    ci_lb = num(m$ci.lb), ci_ub = num(m$ci.ub), tau2 = num(m$tau2),
    I2 = num(m$I2), H2 = num(m$H2), QE = num(m$QE), QE_p = num(m$QEp),
    QM = num(m$QM), QM_p = num(m$QMp), k = m$k, p = m$p,
    logLik = num(logLik(m))
  )
  if (!is.null(m$R2)) out$R2 <- num(m$R2)
  if (m$int.only) {
    pr <- predict(m)
    out$pi_lb <- num(pr$pi.lb); out$pi_ub <- num(pr$pi.ub)
    if (with_ci && m$method != "FE") {
      ci <- confint(m, control = list(tol = 1e-12, maxiter = 10000))$random
      out$tau2_ci_lb <- num(ci["tau^2", "ci.lb"]); out$tau2_ci_ub <- num(ci["tau^2", "ci.ub"])
    }
  }
  out
}

ref <- list()
ref$source <- list(
  script = "tests/reference/make_core_reference.R",
  R = R.version.string,
  metafor = as.character(packageVersion("metafor")),
  metadat = as.character(packageVersion("metadat")),
  clubSandwich = as.character(packageVersion("clubSandwich")),
  control = "rma(..., control=list(threshold=1e-12, maxiter=10000, stepadj=0.5, tol=1e-12)); rma.mv(..., control=list(rel.tol=1e-10))",
  date = as.character(Sys.Date())
)

# ---- datasets -------------------------------------------------------------------------------
molloy <- escalc("ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
mcd <- escalc("ZCOR", ri = ri, ni = ni, data = dat.mcdaniel1994)
mcd <- mcd[!is.na(mcd$type) & !is.na(mcd$struct), ]  # rows lacking a moderator; our models refuse NA
bd <- dat.bangertdrowns2004
bd <- bd[!is.na(bd$length) & !is.na(bd$grade), ]
konst <- dat.konstantopoulos2011
assink <- dat.assink2016

ref$data <- list(
  molloy2014 = list(yi = num(molloy$yi), vi = num(molloy$vi), ri = molloy$ri, ni = molloy$ni,
                    meanage = molloy$meanage, controls = as.character(molloy$controls),
                    design = as.character(molloy$design)),
  mcdaniel1994 = list(yi = num(mcd$yi), vi = num(mcd$vi), ri = mcd$ri, ni = mcd$ni,
                      type = as.character(mcd$type), struct = as.character(mcd$struct)),
  bangertdrowns2004 = list(yi = bd$yi, vi = bd$vi, length = bd$length,
                           grade = as.character(bd$grade)),
  konstantopoulos2011 = list(yi = konst$yi, vi = konst$vi, district = konst$district,
                             school = konst$school, year = konst$year),
  assink2016 = list(yi = assink$yi, vi = assink$vi, study = assink$study,
                    esid = assink$esid, year = assink$year, deltype = assink$deltype)
)

# ---- random-effects and common-effect models, every estimator x test --------------------------
fits <- list()
for (ds in c("molloy2014", "mcdaniel1994", "bangertdrowns2004")) {
  d <- ref$data[[ds]]
  for (meth in methods) for (tst in c("z", "knha")) {
    m <- rma(d$yi, d$vi, method = meth, test = tst, control = ctrl)
    fits[[paste(ds, meth, tst, sep = "|")]] <- uni(m)
  }
  m <- rma(d$yi, d$vi, method = "FE")
  fits[[paste(ds, "FE", "z", sep = "|")]] <- uni(m)
}
ref$random_effects <- fits

# ---- meta-regression ---------------------------------------------------------------------------
regs <- list()
specs <- list(
  list(ds = "molloy2014", formula = "~ meanage + controls"),
  list(ds = "mcdaniel1994", formula = "~ type + struct"),
  list(ds = "bangertdrowns2004", formula = "~ length + grade")
)
for (s in specs) {
  d <- as.data.frame(ref$data[[s$ds]])
  for (meth in methods) for (tst in c("z", "knha")) {
    m <- rma(yi, vi, mods = as.formula(s$formula), data = d, method = meth, test = tst,
             control = ctrl)
    r <- uni(m, with_ci = FALSE)
    r$coef_names <- rownames(m$beta)
    regs[[paste(s$ds, s$formula, meth, tst, sep = "|")]] <- r
  }
}
ref$meta_regression <- regs

# ---- models without intercept (issue 12): QM tests every coefficient; metafor reports no R2 ----
noint <- list()
for (s in list(list(ds = "molloy2014", formula = "~ 0 + controls"),
               list(ds = "molloy2014", formula = "~ 0 + controls + meanage"),
               list(ds = "mcdaniel1994", formula = "~ 0 + type"))) {
  d <- as.data.frame(ref$data[[s$ds]])
  for (meth in c("REML", "DL")) for (tst in c("z", "knha")) {
    m <- rma(yi, vi, mods = as.formula(s$formula), data = d, method = meth, test = tst,
             control = ctrl)
    r <- uni(m, with_ci = FALSE)
    r$coef_names <- rownames(m$beta)
    r$QM_df <- num(m$QMdf[!is.na(m$QMdf)])
    r$R2_reported <- !is.null(m$R2)
    r$call <- sprintf("rma(yi, vi, mods=%s, data=%s, method='%s', test='%s')", s$formula, s$ds,
                      meth, tst)
    noint[[paste(s$ds, s$formula, meth, tst, sep = "|")]] <- r
  }
}
ref$no_intercept <- noint

# permutation test: p-values are Monte Carlo; the test compares within simulation error
set.seed(1)
mr <- rma(yi, vi, mods = ~ meanage + controls, data = as.data.frame(ref$data$molloy2014),
          method = "REML", control = ctrl)
pt <- permutest(mr, iter = 5000, progbar = FALSE)
ref$permutation <- list(dataset = "molloy2014", formula = "~ meanage + controls",
                        iter = 5000, QMp = num(pt$QMp), pval = num(pt$pval))

# ---- three-level models and CR2 ----------------------------------------------------------------
three <- list()
for (meth in c("REML", "ML")) {
  for (tst in c("z", "t")) {
    m <- rma.mv(yi, vi, random = ~ 1 | district / school, data = konst, method = meth,
                test = tst, control = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))
    three[[paste("konstantopoulos2011", "~ 1", meth, tst, sep = "|")]] <- list(
      beta = num(m$beta), se = num(m$se), pval = num(m$pval), ci_lb = num(m$ci.lb),
      ci_ub = num(m$ci.ub), sigma2 = num(m$sigma2), QE = num(m$QE), QE_p = num(m$QEp),
      logLik = num(logLik(m)), coef_names = rownames(m$beta))
  }
  m <- rma.mv(yi, vi, mods = ~ year, random = ~ 1 | district / school, data = konst,
              method = meth, control = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))
  three[[paste("konstantopoulos2011", "~ year", meth, "z", sep = "|")]] <- list(
    beta = num(m$beta), se = num(m$se), pval = num(m$pval), ci_lb = num(m$ci.lb),
    ci_ub = num(m$ci.ub), sigma2 = num(m$sigma2), QE = num(m$QE), QE_p = num(m$QEp),
    QM = num(m$QM), QM_p = num(m$QMp), logLik = num(logLik(m)), coef_names = rownames(m$beta))
  m <- rma.mv(yi, vi, random = ~ 1 | study / esid, data = assink, method = meth,
              control = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))
  three[[paste("assink2016", "~ 1", meth, "z", sep = "|")]] <- list(
    beta = num(m$beta), se = num(m$se), pval = num(m$pval), ci_lb = num(m$ci.lb),
    ci_ub = num(m$ci.ub), sigma2 = num(m$sigma2), QE = num(m$QE), QE_p = num(m$QEp),
    logLik = num(logLik(m)), coef_names = rownames(m$beta))
}
ref$three_level <- three

ct <- function(m, cl) {
  x <- as.data.frame(coef_test(m, vcov = "CR2", cluster = cl, test = "Satterthwaite"))
  list(beta = num(x$beta), se = num(x$SE), tstat = num(x$tstat), df = num(x$df_Satt),
       pval = num(x$p_Satt))
}
rob <- list()
m <- rma.mv(yi, vi, random = ~ 1 | study / esid, data = assink, method = "REML",
            control = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))
rob[["assink2016|three_level|~ 1"]] <- ct(m, assink$study)
m <- rma.mv(yi, vi, mods = ~ year + deltype, random = ~ 1 | study / esid, data = assink,
            method = "REML", control = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))
rob[["assink2016|three_level|~ year + deltype"]] <- c(ct(m, assink$study),
  list(sigma2 = num(m$sigma2), beta_model = num(m$beta), coef_names = rownames(m$beta)))
m <- rma(yi, vi, data = assink, method = "REML", control = ctrl)
rob[["assink2016|random_effects|~ 1"]] <- c(ct(m, assink$study), list(tau2 = num(m$tau2)))
m <- rma(yi, vi, mods = ~ year + deltype, data = assink, method = "REML", control = ctrl)
rob[["assink2016|random_effects|~ year + deltype"]] <- c(ct(m, assink$study),
  list(tau2 = num(m$tau2)))
m <- rma.mv(yi, vi, mods = ~ year, random = ~ 1 | district / school, data = konst,
            method = "REML", control = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))
rob[["konstantopoulos2011|three_level|~ year"]] <- ct(m, konst$district)
ref$robust <- rob

# ---- aggregation (Borenstein ch. 24 composite = metafor's unweighted CS aggregate) -------------
ag <- aggregate(escalc(yi = yi, vi = vi, data = assink), cluster = study, rho = 0.5,
                struct = "CS", weighted = FALSE)
ref$aggregate <- list(dataset = "assink2016", rho = 0.5, yi = num(ag$yi), vi = num(ag$vi))

write_json(ref, "tests/reference/metafor_core.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote tests/reference/metafor_core.json\n")
