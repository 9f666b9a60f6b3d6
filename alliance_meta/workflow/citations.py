"""The references the generated methods and results text cites, in APA 7 style.

A paragraph cites in text ("Konstantopoulos, 2011"); :func:`cited` lists the full references of
every citation that occurs in the given texts, so a report's reference list holds exactly what
its paragraphs cite.
"""

from __future__ import annotations

__all__ = ["REFERENCES", "cited"]

#: In-text citation -> APA reference; a reference is listed when its citation appears.
REFERENCES: dict[str, str] = {
    "Viechtbauer, 2010": "Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor "
    "package. Journal of Statistical Software, 36(3), 1\u201348. "
    "https://doi.org/10.18637/jss.v036.i03",
    "Konstantopoulos, 2011": "Konstantopoulos, S. (2011). Fixed effects and variance components "
    "estimation in three-level meta-analysis. Research Synthesis Methods, 2(1), 61\u201376. "
    "https://doi.org/10.1002/jrsm.35",
    "Cheung, 2014": "Cheung, M. W.-L. (2014). Modeling dependent effect sizes with three-level "
    "meta-analyses: A structural equation modeling approach. Psychological Methods, 19(2), "
    "211\u2013229. https://doi.org/10.1037/a0032968",
    "Pustejovsky & Tipton, 2018": "Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods "
    "for cluster-robust variance estimation and hypothesis testing in fixed effects models. "
    "Journal of Business & Economic Statistics, 36(4), 672\u2013683. "
    "https://doi.org/10.1080/07350015.2016.1247004",
    "Knapp & Hartung, 2003": "Knapp, G., & Hartung, J. (2003). Improved tests for a random "
    "effects meta-regression with a single covariate. Statistics in Medicine, 22(17), "
    "2693\u20132710. https://doi.org/10.1002/sim.1482",
    "Peterson & Brown, 2005": "Peterson, R. A., & Brown, S. P. (2005). On the use of beta "
    "coefficients in meta-analysis. Journal of Applied Psychology, 90(1), 175\u2013181. "
    "https://doi.org/10.1037/0021-9010.90.1.175",
    "Borenstein et al., 2009": "Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, "
    "H. R. (2009). Introduction to meta-analysis. Wiley. https://doi.org/10.1002/9780470743386",
    "Viechtbauer, 2005": "Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance "
    "estimators in the random-effects model. Journal of Educational and Behavioral Statistics, "
    "30(3), 261\u2013293. https://doi.org/10.3102/10769986030003261",
    "Viechtbauer, 2007": "Viechtbauer, W. (2007). Confidence intervals for the amount of "
    "heterogeneity in meta-analysis. Statistics in Medicine, 26(1), 37\u201352. "
    "https://doi.org/10.1002/sim.2514",
    "Higgins & Thompson, 2002": "Higgins, J. P. T., & Thompson, S. G. (2002). Quantifying "
    "heterogeneity in a meta-analysis. Statistics in Medicine, 21(11), 1539\u20131558. "
    "https://doi.org/10.1002/sim.1186",
    "Sterne et al., 2011": "Sterne, J. A. C., Sutton, A. J., Ioannidis, J. P. A., et al. (2011). "
    "Recommendations for examining and interpreting funnel plot asymmetry in meta-analyses of "
    "randomised controlled trials. BMJ, 343, d4002. https://doi.org/10.1136/bmj.d4002",
    "Tipton, 2015": "Tipton, E. (2015). Small sample adjustments for robust variance estimation "
    "with meta-regression. Psychological Methods, 20(3), 375\u2013393. "
    "https://doi.org/10.1037/met0000011",
    "Harris et al., 2020": "Harris, C. R., Millman, K. J., van der Walt, S. J., et al. (2020). "
    "Array programming with NumPy. Nature, 585, 357\u2013362. "
    "https://doi.org/10.1038/s41586-020-2649-2",
    "Virtanen et al., 2020": "Virtanen, P., Gommers, R., Oliphant, T. E., et al. (2020). SciPy "
    "1.0: Fundamental algorithms for scientific computing in Python. Nature Methods, 17, "
    "261\u2013272. https://doi.org/10.1038/s41592-019-0686-2",
}


def cited(*texts: str) -> list[str]:
    """The APA references of the citations occurring in ``texts``, sorted as APA lists them."""
    joined = " ".join(texts)
    return sorted(ref for cite, ref in REFERENCES.items() if cite in joined)
