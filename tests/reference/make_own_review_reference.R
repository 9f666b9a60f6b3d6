# Writes the inputs and the expected values of tests/test_own_review.py (issue 13: a review of a
# dataset coded elsewhere, from a wheel in a fresh folder):
#   tests/fixtures/molloy2014_foreign.csv   metadat's dat.molloy2014 with columns of its own
#                                           (Author, Year, r_xy, N), as a user would bring it
#   tests/reference/own_review_molloy2014.json   metafor's pooled estimates for it
# Run from the repository root:  Rscript tests/reference/make_own_review_reference.R
# Needs Debian's r-cran-metafor, r-cran-metadat, r-cran-jsonlite. The test reads only these files.
#
# molloy2014 (Molloy, O'Carroll & Ferguson 2014, conscientiousness and medication adherence)
# has one correlation per study. The review imports each study as one sample, so the
# three-level model's two variance components are not separately identifiable there (only
# their sum is) and it equals the random-effects model. The comparison is with the headline of
# the 02_pooled run as issue 12 defines it: rma.mv(yi, vi, random = ~ 1 | sample_id/es_id,
# method = "REML", test = "t", dfs = "contain"), which here equals rma(method = "REML",
# test = "t"); rma(test = "knha") is kept for reference.
suppressPackageStartupMessages({ library(metafor); library(metadat); library(jsonlite) })
num <- function(x) unname(as.numeric(x))
d <- dat.molloy2014
foreign <- data.frame(Author = d$authors, Year = d$year, r_xy = d$ri, N = d$ni)
write.csv(foreign, "tests/fixtures/molloy2014_foreign.csv", row.names = FALSE, fileEncoding = "UTF-8")

dat <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = d)
ctrl <- list(threshold = 1e-12, maxiter = 10000, stepadj = 0.5)
re <- rma(yi, vi, data = dat, method = "REML", test = "knha", control = ctrl)
re_t <- rma(yi, vi, data = dat, method = "REML", test = "t", control = ctrl)
dat$sample_id <- seq_len(nrow(dat)); dat$es_id <- seq_len(nrow(dat))
mv <- rma.mv(yi, vi, random = ~ 1 | sample_id/es_id, data = dat, method = "REML", test = "t",
             dfs = "contain", control = list(rel.tol = 1e-12, eval.max = 10000, iter.max = 10000))
ref <- list(
  source = list(
    script = "tests/reference/make_own_review_reference.R",
    data = "metadat::dat.molloy2014, escalc(measure = 'ZCOR', ri = ri, ni = ni)",
    random_effects = "rma(yi, vi, method = 'REML', test = 'knha', control = list(threshold = 1e-12, maxiter = 10000, stepadj = 0.5))",
    random_effects_t = "rma(yi, vi, method = 'REML', test = 't', control = as above)",
    three_level = "rma.mv(yi, vi, random = ~ 1 | sample_id/es_id, method = 'REML', test = 't', dfs = 'contain', control = list(rel.tol = 1e-12))",
    R = R.version.string, metafor = as.character(packageVersion("metafor")),
    metadat = as.character(packageVersion("metadat")), date = as.character(Sys.Date())
  ),
  k = re$k,
  random_effects = list(beta = num(re$beta), se = num(re$se), ci_lb = num(re$ci.lb),
                        ci_ub = num(re$ci.ub), tau2 = num(re$tau2), I2 = num(re$I2)),
  random_effects_t = list(beta = num(re_t$beta), se = num(re_t$se), ci_lb = num(re_t$ci.lb),
                          ci_ub = num(re_t$ci.ub), df = num(re_t$ddf)),
  three_level = list(beta = num(mv$beta), se = num(mv$se), ci_lb = num(mv$ci.lb),
                     ci_ub = num(mv$ci.ub), df = num(mv$ddf), sigma2_sum = sum(num(mv$sigma2))),
  yi = num(dat$yi), vi = num(dat$vi),
  weights_random_effects = num(weights(re)),  # percent, as `alliance-meta export --format csv`
  weights_three_level = num(weights(mv))
)
# three-level weights where effects are nested (export --format csv): konstantopoulos2011
k11 <- dat.konstantopoulos2011
mk <- rma.mv(yi, vi, random = ~ 1 | district/school, data = k11, method = "REML",
             control = list(rel.tol = 1e-12, eval.max = 10000, iter.max = 10000))
ref$konstantopoulos2011 <- list(
  call = "weights(rma.mv(yi, vi, random = ~ 1 | district/school, data = dat.konstantopoulos2011))",
  yi = num(k11$yi), vi = num(k11$vi), district = num(k11$district),
  sigma2 = num(mk$sigma2), weights = num(weights(mk)))
write(toJSON(ref, digits = NA, auto_unbox = TRUE, pretty = TRUE),
      "tests/reference/own_review_molloy2014.json")
