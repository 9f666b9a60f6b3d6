# Writes tests/reference/metafor_bias.json: reference values for alliance_meta.bias and
# alliance_meta.sensitivity (issue 6).
# Run from the repository root:  Rscript tests/reference/make_bias_reference.R
# Needs Debian's r-cran-metafor, r-cran-metadat, r-cran-clubsandwich, r-cran-jsonlite.
# The test suite reads only the JSON; it never needs R. Every entry carries the R call that
# produced it in its "call" field; keys are dataset|method (or dataset|method|option).
#
# Known divergences and how this script handles them (all checked against alliance_meta):
# - trimfill() refits the model with metafor's default control (threshold 1e-5) unless control
#   is passed to it; with the default, its REML tau2 differs from the converged one by up to
#   3e-4 relative. We pass control=ctrl, after which k0, side, the filled studies and the
#   refitted model agree to 1e-11.
# - selmodel()'s default optimiser (optim BFGS) stops with a log-likelihood up to 3e-10 below
#   the maximum, which moves delta by up to 2e-5 relative; we keep the best of three tight
#   optimisers (agreement then ~1e-7, limited by metafor's numDeriv Hessian for the SEs).
# - rma.mv() with nlminb at rel.tol 1e-10 stops up to 3e-11 below the maximum of the restricted
#   likelihood (sigma2 off by up to 3e-6 relative, a leave-one-out p-value by 1.5e-5); again
#   the best of three optimisers.
# - tau2 at the boundary: metafor stops at e.g. 5e-13 where we return exactly 0 (cumul); I2
#   there is compared absolutely (1e-6 percentage points) in the tests.
# - metafor's leave1out() and cumul() return no tau2 for a common-effect model; ours is 0.
suppressPackageStartupMessages({
  library(metafor); library(metadat); library(clubSandwich); library(jsonlite)
})

ctrl <- list(threshold = 1e-12, maxiter = 10000)
# selmodel: the default optimiser (optim BFGS) stops early even at reltol 1e-14 (its logLik is
# up to 3e-10 below the maximum, which moves the estimates by up to 2e-5 relative), and nlminb
# reports false convergence. We fit with three tight optimisers and keep the one that reaches
# the highest log-likelihood; the entry records which.
selctrls <- list(
  `Nelder-Mead` = list(optimizer = "Nelder-Mead", reltol = 1e-16, maxit = 100000),
  nlm = list(optimizer = "nlm", gradtol = 1e-12, steptol = 1e-14, iterlim = 10000),
  BFGS = list(optimizer = "BFGS", reltol = 1e-14, maxit = 10000))
best_selmodel <- function(m, steps) {
  best <- NULL
  for (nm in names(selctrls)) {
    s <- try(suppressWarnings(selmodel(m, type = "stepfun", steps = steps,
                                       control = selctrls[[nm]])), silent = TRUE)
    if (inherits(s, "try-error")) next
    if (is.null(best) || logLik(s) > logLik(best$fit)) best <- list(fit = s, optimizer = nm)
  }
  best
}
# rma.mv: nlminb at rel.tol 1e-10 (the core's setting) stops with a log-likelihood up to 3e-11
# below the maximum, which moves sigma2 by up to 3e-6 relative; as for selmodel we fit with
# three optimisers and keep the highest log-likelihood.
mvctrls <- list(
  nlminb = list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000),
  BFGS = list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-15, maxit = 10000),
  nlm = list(optimizer = "nlm", gradtol = 1e-12, steptol = 1e-14, iterlim = 10000))
best_mv <- function(mods, data) {  # the name of the optimiser reaching the highest logLik
  best <- NULL; name <- NULL
  for (nm in names(mvctrls)) {
    m <- try(rma.mv(yi, vi, mods = mods, random = ~ 1 | study / esid, data = data,
                    method = "REML", control = mvctrls[[nm]]), silent = TRUE)
    if (inherits(m, "try-error")) next
    if (is.null(best) || logLik(m) > logLik(best)) { best <- m; name <- nm }
  }
  name
}

num <- function(x) unname(as.numeric(x))

ref <- list()
ref$source <- list(
  script = "tests/reference/make_bias_reference.R",
  R = R.version.string,
  metafor = as.character(packageVersion("metafor")),
  metadat = as.character(packageVersion("metadat")),
  clubSandwich = as.character(packageVersion("clubSandwich")),
  control = paste(
    "rma(..., control=list(threshold=1e-12, maxiter=10000));",
    "selmodel(..., control=selctrls[[best of Nelder-Mead reltol 1e-16, nlm gradtol 1e-12, BFGS reltol 1e-14]]) (Hessian by numDeriv);",
    "rma.mv(..., control=mvctrls[[best of nlminb rel.tol 1e-10, optim BFGS reltol 1e-15, nlm gradtol 1e-12]])"),
  date = as.character(Sys.Date())
)

# ---- datasets -------------------------------------------------------------------------------
molloy <- escalc("ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
mcd <- escalc("ZCOR", ri = ri, ni = ni, data = dat.mcdaniel1994)
hack <- dat.hackshaw1998
bd <- dat.bangertdrowns2004
assink <- dat.assink2016

sets <- list(
  molloy2014 = data.frame(yi = num(molloy$yi), vi = num(molloy$vi), year = molloy$year,
                          meanage = molloy$meanage),
  hackshaw1998 = data.frame(yi = num(hack$yi), vi = num(hack$vi), year = hack$year),
  bangertdrowns2004 = data.frame(yi = num(bd$yi), vi = num(bd$vi), year = bd$year),
  mcdaniel1994 = data.frame(yi = num(mcd$yi), vi = num(mcd$vi), year = mcd$study)
)
ref$data <- lapply(sets, as.list)
ref$data$assink2016 <- list(yi = assink$yi, vi = assink$vi, study = assink$study,
                            esid = assink$esid)
ref$data_note <- paste(
  "molloy2014 and mcdaniel1994: escalc('ZCOR', ri=ri, ni=ni); hackshaw1998 and",
  "bangertdrowns2004: yi and vi as stored in metadat. mcdaniel1994 has no year; its 'year'",
  "column is the study number, used as the order of the cumulative meta-analysis.")

fit <- function(d, meth, test = "z") rma(yi, vi, data = d, method = meth, test = test,
                                         control = ctrl)
call_of <- function(ds, meth, test = "z")
  sprintf("rma(yi, vi, data=%s, method='%s', test='%s')", ds, meth, test)

reg <- list(); rank <- list(); tf <- list(); pet <- list(); sel <- list(); fsn_ <- list()
l1o <- list(); infl <- list(); bj <- list(); cu <- list()

for (ds in names(sets)) {
  d <- sets[[ds]]
  # --- rank test (model independent) and fail-safe N
  rt <- ranktest(fit(d, "REML"))
  rank[[ds]] <- list(call = sprintf("ranktest(%s)", call_of(ds, "REML")),
                     tau = num(rt$tau), pval = num(rt$pval))
  fr <- fsn(yi, vi, data = d)
  fo <- fsn(yi, vi, data = d, type = "Orwin")
  fo2 <- fsn(yi, vi, data = d, type = "Orwin", target = 0.05)
  fsn_[[ds]] <- list(
    call = "fsn(yi, vi, type='Rosenthal'); fsn(yi, vi, type='Orwin'); fsn(yi, vi, type='Orwin', target=0.05)",
    rosenthal = list(fsnum = num(fr$fsnum), pval = num(fr$pval), alpha = num(fr$alpha)),
    orwin = list(fsnum = num(fo$fsnum), meanes = num(fo$meanes), target = num(fo$target)),
    orwin_05 = list(fsnum = num(fo2$fsnum), meanes = num(fo2$meanes), target = num(fo2$target)))
  # issue 12: effects coded in the other direction (metafor uses |sum z|)
  frn <- fsn(-yi, vi, data = d)
  fsn_[[ds]]$rosenthal_negated <- list(call = "fsn(-yi, vi, type='Rosenthal')",
                                       fsnum = num(frn$fsnum), pval = num(frn$pval))
  # --- PET and PEESE: weighted regression with multiplicative dispersion (regtest model='lm')
  for (pr in c("sei", "vi")) {
    r <- regtest(d$yi, d$vi, model = "lm", predictor = pr, ret.fit = TRUE)
    cf <- coef(summary(r$fit))
    pet[[paste(ds, "lm", pr, sep = "|")]] <- list(
      call = sprintf("regtest(yi, vi, model='lm', predictor='%s', ret.fit=TRUE)", pr),
      zval = num(r$zval), pval = num(r$pval), dfs = num(r$dfs), est = num(r$est),
      ci_lb = num(r$ci.lb), ci_ub = num(r$ci.ub), coef = num(cf[, 1]), se = num(cf[, 2]),
      coef_pval = num(cf[, 4]))
  }
  for (meth in c("REML", "DL", "FE")) {
    key <- paste(ds, meth, sep = "|")
    m <- fit(d, meth)
    # --- Egger (regtest default: sei as moderator in the same model)
    for (pr in c("sei", "vi")) {
      r <- regtest(m, predictor = pr, ret.fit = TRUE)
      reg[[paste(ds, meth, "z", pr, sep = "|")]] <- list(
        call = sprintf("regtest(%s, predictor='%s')", call_of(ds, meth), pr),
        zval = num(r$zval), pval = num(r$pval), est = num(r$est), ci_lb = num(r$ci.lb),
        ci_ub = num(r$ci.ub), coef = num(r$fit$beta), se = num(r$fit$se),
        tau2 = num(r$fit$tau2))
    }
    # --- trim and fill
    for (est in c("L0", "R0")) {
      sides <- if (ds == "molloy2014" && est == "L0") c("auto", "right") else "auto"
      for (sd in sides) {
        t <- if (sd == "auto") trimfill(m, estimator = est, control = ctrl) else
          trimfill(m, estimator = est, side = sd, control = ctrl)
        tf[[paste(ds, meth, est, sd, sep = "|")]] <- list(
          call = sprintf("trimfill(%s, estimator='%s'%s, control=ctrl)", call_of(ds, meth), est,
                         if (sd == "auto") "" else sprintf(", side='%s'", sd)),
          k0 = num(t$k0), side = t$side, beta = num(t$beta), se = num(t$se),
          zval = num(t$zval), pval = num(t$pval), ci_lb = num(t$ci.lb), ci_ub = num(t$ci.ub),
          tau2 = num(t$tau2), QE = num(t$QE), I2 = num(t$I2),
          fill_yi = num(t$yi[t$fill]), fill_vi = num(t$vi[t$fill]))
      }
    }
    # --- leave-one-out, influence, Baujat, cumulative
    l <- leave1out(m)
    l1o[[key]] <- list(call = sprintf("leave1out(%s)", call_of(ds, meth)),
                       estimate = num(l$estimate), se = num(l$se), zval = num(if (is.null(l$zval)) l$tval else l$zval),
                       pval = num(l$pval), ci_lb = num(l$ci.lb), ci_ub = num(l$ci.ub),
                       Q = num(l$Q), Qp = num(l$Qp), tau2 = num(l$tau2), I2 = num(l$I2),
                       H2 = num(l$H2))
    inf <- influence(m)
    infl[[key]] <- list(call = sprintf("influence(%s)", call_of(ds, meth)),
                        rstudent = num(inf$inf$rstudent), dffits = num(inf$inf$dffits),
                        cook_d = num(inf$inf$cook.d), cov_r = num(inf$inf$cov.r),
                        tau2_del = num(inf$inf$tau2.del), QE_del = num(inf$inf$QE.del),
                        hat = num(inf$inf$hat), weight = num(inf$inf$weight),
                        dfbs = num(inf$dfbs$intrcpt), is_infl = as.logical(inf$is.infl))
    b <- baujat(m)
    bj[[key]] <- list(call = sprintf("baujat(%s)", call_of(ds, meth)), x = num(b$x),
                      y = num(b$y))
    cm <- cumul(m, order = d$year)
    cu[[key]] <- list(call = sprintf("cumul(%s, order=%s$year)", call_of(ds, meth), ds),
                      ids = as.integer(rownames(as.data.frame(cm))),
                      estimate = num(cm$estimate), se = num(cm$se), zval = num(cm$zval),
                      pval = num(cm$pval), ci_lb = num(cm$ci.lb), ci_ub = num(cm$ci.ub),
                      Q = num(cm$Q), Qp = num(cm$Qp), tau2 = num(cm$tau2), I2 = num(cm$I2),
                      H2 = num(cm$H2))
  }
  # --- selection models (ML; metafor refits by ML whatever the method of the rma fit)
  selspecs <- list(list(meth = "REML", steps = 0.025), list(meth = "FE", steps = 0.025))
  if (ds %in% c("mcdaniel1994", "hackshaw1998"))
    selspecs[[3]] <- list(meth = "REML", steps = c(0.025, 0.5))
  for (s in selspecs) {
    m <- fit(d, s$meth)
    b <- best_selmodel(m, s$steps)
    sm <- b$fit
    m0 <- rma(yi, vi, data = d, method = if (s$meth == "FE") "FE" else "ML", control = ctrl)
    sel[[paste(ds, s$meth, paste(s$steps, collapse = ","), sep = "|")]] <- list(
      call = sprintf("selmodel(%s, type='stepfun', steps=c(%s), control=selctrls[['%s']])",
                     call_of(ds, s$meth), paste(s$steps, collapse = ", "), b$optimizer),
      optimizer = b$optimizer,
      beta = num(sm$beta), se = num(sm$se), zval = num(sm$zval), pval = num(sm$pval),
      ci_lb = num(sm$ci.lb), ci_ub = num(sm$ci.ub), tau2 = num(sm$tau2),
      se_tau2 = num(sm$se.tau2), delta = num(sm$delta), se_delta = num(sm$se.delta),
      LRT = num(sm$LRT), LRTdf = num(sm$LRTdf), LRTp = num(sm$LRTp),
      logLik = num(logLik(sm)), logLik_unadjusted = num(logLik(m0)),
      ptable_k = num(sm$ptable$k))
  }
}

# knha variants and a meta-regression for the influence diagnostics
m <- fit(sets$molloy2014, "REML", "knha")
r <- regtest(m, ret.fit = TRUE)
reg[["molloy2014|REML|knha|sei"]] <- list(
  call = sprintf("regtest(%s)", call_of("molloy2014", "REML", "knha")),
  zval = num(r$zval), pval = num(r$pval), dfs = num(r$dfs), est = num(r$est),
  ci_lb = num(r$ci.lb), ci_ub = num(r$ci.ub), coef = num(r$fit$beta), se = num(r$fit$se),
  tau2 = num(r$fit$tau2))
l <- leave1out(m)
l1o[["molloy2014|REML|knha"]] <- list(
  call = sprintf("leave1out(%s)", call_of("molloy2014", "REML", "knha")),
  estimate = num(l$estimate), se = num(l$se), zval = num(l$tval), pval = num(l$pval),
  ci_lb = num(l$ci.lb), ci_ub = num(l$ci.ub), Q = num(l$Q), Qp = num(l$Qp),
  tau2 = num(l$tau2), I2 = num(l$I2), H2 = num(l$H2))
inf <- influence(m)  # the knha fit
infl[["molloy2014|REML|knha"]] <- list(
  call = sprintf("influence(%s)", call_of("molloy2014", "REML", "knha")),
  rstudent = num(inf$inf$rstudent), dffits = num(inf$inf$dffits),
  cook_d = num(inf$inf$cook.d), cov_r = num(inf$inf$cov.r),
  tau2_del = num(inf$inf$tau2.del), QE_del = num(inf$inf$QE.del), hat = num(inf$inf$hat),
  weight = num(inf$inf$weight), dfbs = num(inf$dfbs$intrcpt),
  is_infl = as.logical(inf$is.infl))
m <- rma(yi, vi, mods = ~ meanage, data = sets$molloy2014, method = "REML", control = ctrl)
inf <- influence(m)
infl[["molloy2014|REML|~ meanage"]] <- list(
  call = "influence(rma(yi, vi, mods=~meanage, data=molloy2014, method='REML'))",
  rstudent = num(inf$inf$rstudent), dffits = num(inf$inf$dffits),
  cook_d = num(inf$inf$cook.d), cov_r = num(inf$inf$cov.r),
  tau2_del = num(inf$inf$tau2.del), QE_del = num(inf$inf$QE.del), hat = num(inf$inf$hat),
  weight = num(inf$inf$weight),
  dfbs = setNames(lapply(rownames(m$beta), function(n) num(inf$dfbs[[n]])), rownames(m$beta)),
  is_infl = as.logical(inf$is.infl))

ref$regtest <- reg; ref$ranktest <- rank; ref$trimfill <- tf; ref$pet_peese <- pet
ref$selmodel <- sel; ref$fsn <- fsn_; ref$leave1out <- l1o; ref$influence <- infl
ref$baujat <- bj; ref$cumul <- cu

# ---- three-level Egger / PET-PEESE with CR2 and leave-one-sample-out --------------------------
ct <- function(m, cl) {
  x <- as.data.frame(coef_test(m, vcov = "CR2", cluster = cl, test = "Satterthwaite"))
  list(beta = num(x$beta), se = num(x$SE), tstat = num(x$tstat), df = num(x$df_Satt),
       pval = num(x$p_Satt))
}
assink$sei <- sqrt(assink$vi)
three <- list()
for (pr in c("sei", "vi")) {
  f <- as.formula(paste("~", pr))
  nm <- best_mv(f, assink)
  m <- rma.mv(yi, vi, mods = f, random = ~ 1 | study / esid, data = assink, method = "REML",
              control = mvctrls[[nm]])
  three[[paste("assink2016", pr, sep = "|")]] <- c(
    list(call = sprintf(paste("coef_test(rma.mv(yi, vi, mods=~%s, random=~1|study/esid,",
                              "data=assink2016, method='REML'), vcov='CR2', cluster=study,",
                              "test='Satterthwaite')"), pr),
         optimizer = nm, model_beta = num(m$beta), sigma2 = num(m$sigma2)),
    ct(m, assink$study))
}
ref$three_level_bias <- three

studies <- unique(assink$study)
loo <- lapply(studies, function(s) {
  d <- assink[assink$study != s, ]
  nm <- best_mv(~ 1, d)
  m <- rma.mv(yi, vi, random = ~ 1 | study / esid, data = d, method = "REML",
              control = mvctrls[[nm]])
  c(num(m$beta), num(m$se), num(m$pval), num(m$ci.lb), num(m$ci.ub), num(m$sigma2))
})
loo <- do.call(rbind, loo)
ref$three_level_loo <- list(
  call = "for each study s: rma.mv(yi, vi, random=~1|study/esid, data=assink2016[study != s, ], method='REML')",
  study = studies, estimate = loo[, 1], se = loo[, 2], pval = loo[, 3], ci_lb = loo[, 4],
  ci_ub = loo[, 5], sigma2_between = loo[, 6], sigma2_within = loo[, 7])

write_json(ref, "tests/reference/metafor_bias.json", digits = NA, auto_unbox = TRUE,
           pretty = TRUE)
cat("wrote tests/reference/metafor_bias.json\n")
