# Writes tests/reference/metafor_escalc.json: partial correlations and their Fisher z with the
# sampling variance of metafor's escalc(measure = "ZPCOR") (Aloe & Thompson 2013), on metadat's
# dat.aloe2013 (t statistics of regression coefficients, n, and number of predictors).
# Run from the repository root:  Rscript tests/reference/make_escalc_reference.R
# The test suite reads only the JSON; it never needs R.
suppressPackageStartupMessages({ library(metafor); library(metadat); library(jsonlite) })

num <- function(x) unname(as.numeric(x))
d <- dat.aloe2013
pc <- escalc(measure = "PCOR", ti = tval, ni = n, mi = preds, data = d)
zp <- escalc(measure = "ZPCOR", ti = tval, ni = n, mi = preds, data = d)
out <- list(
  source = list(
    script = "tests/reference/make_escalc_reference.R",
    R = R.version.string, metafor = as.character(packageVersion("metafor")),
    metadat = as.character(packageVersion("metadat")),
    call = 'escalc(measure = "PCOR" / "ZPCOR", ti = tval, ni = n, mi = preds, data = dat.aloe2013)',
    date = format(Sys.Date())
  ),
  n = num(d$n), tval = num(d$tval), preds = num(d$preds),
  pcor = num(pc$yi), zpcor_yi = num(zp$yi), zpcor_vi = num(zp$vi)
)
write_json(out, "tests/reference/metafor_escalc.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
