"""The results layer of a run: methods and results paragraphs in APA style, written from the
result objects (nothing typed by hand), the headline numbers as JSON, and figure captions.

What metafor's ``reporter()`` writes for one model (Viechtbauer 2010, J Stat Softw 36(3),
doi:10.18637/jss.v036.i03), adapted to dependent effects: the model and its estimator, the test
and its degrees of freedom, how dependence was handled, the software; then k (effects, samples,
studies), total N, the pooled r with its CI, the prediction interval, the variance components
with their CIs, I^2 per level, moderator and bias tests, and the cautions that small k calls for.
Every number goes through :mod:`alliance_meta.workflow.apa`, so it reads in the sentence exactly
as in the rendered table; tests parse the paragraphs and compare each number with the result.

Files a run writes (contracts read by :mod:`alliance_meta.workflow.site`):

- ``<run>/report.md``: title, caution, methods, results, references (:func:`write_report`).
- ``<run>/headline.json``: :meth:`Headline.to_dict` (full precision, NaN as null).
- ``<run>/figures/captions.json``: ``{figure stem: {"caption": str, "model": str}}``, and
  ``<run>/tables/captions.json`` likewise for table titles (:func:`record_caption`).
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .apa import fmt_ci, fmt_df, fmt_int, fmt_num, fmt_pct, fmt_r, fmt_var, p_text
from .captions import CAPTIONS_FILE, read_captions, record_caption
from .citations import REFERENCES, cited

__all__ = [
    "Headline",
    "headline",
    "methods_paragraph",
    "results_paragraph",
    "moderator_sentence",
    "bias_sentences",
    "write_report",
    "record_caption",
    "read_captions",
    "REFERENCES",
    "CAPTIONS_FILE",
    "HEADLINE_FILE",
    "SMALL_K",
]

HEADLINE_FILE = "headline.json"
#: Below this many samples tau^2 and the prediction interval are too imprecise to interpret
#: without a caution (Borenstein et al. 2009 ch. 16; IntHout et al. 2016 show PIs need k >= 5).
SMALL_K = 5
#: Moderator levels with fewer effects than this are listed but not interpreted.
MIN_PER_LEVEL = 3

_EST_NAMES = {"REML": "restricted maximum likelihood", "ML": "maximum likelihood",
              "DL": "the DerSimonian\u2013Laird estimator", "HE": "the Hedges estimator",
              "HS": "the Hunter\u2013Schmidt estimator", "SJ": "the Sidik\u2013Jonkman estimator",
              "EB": "the empirical Bayes estimator", "PM": "the Paule\u2013Mandel estimator",
              "FE": "a common-effect model (no \u03c4\u00b2)"}


def _f(x) -> float:
    """The first value of a scalar or array as a float (NaN for None)."""
    if x is None:
        return float("nan")
    a = np.ravel(np.asarray(x, dtype=float))
    return float(a[0]) if a.size else float("nan")


def _get(obj, *names, default=None):
    for n in names:
        if obj is not None and hasattr(obj, n):
            v = getattr(obj, n)
            if v is not None:
                return v
    return default


def _unwrap(a):
    """A workbench ``Attempt`` or a bare result -> (result or None, reason)."""
    if a is not None and hasattr(a, "ok") and hasattr(a, "reason"):
        return (a.result, "") if a.ok else (None, a.reason)
    return a, ""


@dataclass(frozen=True)
class Headline:
    """The numbers a reader asks of a pooled model (on the Fisher z scale unless prefixed r_)."""

    model: str
    method: str
    test: str
    df: float
    df_kind: str
    level: float
    k: int
    n_samples: int
    n_studies: int
    N: float
    estimate: float
    se: float
    stat: float
    pval: float
    r: float
    r_ci_lb: float
    r_ci_ub: float
    r_pi_lb: float = float("nan")
    r_pi_ub: float = float("nan")
    tau2: float = float("nan")
    tau2_ci_lb: float = float("nan")
    tau2_ci_ub: float = float("nan")
    sigma2_between: float = float("nan")
    sigma2_between_ci_lb: float = float("nan")
    sigma2_between_ci_ub: float = float("nan")
    sigma2_within: float = float("nan")
    sigma2_within_ci_lb: float = float("nan")
    sigma2_within_ci_ub: float = float("nan")
    I2: float = float("nan")
    I2_between: float = float("nan")
    I2_within: float = float("nan")
    QE: float = float("nan")
    QE_df: float = float("nan")
    QE_p: float = float("nan")
    rho: float = float("nan")
    k_pooled: int = 0
    fallback: bool = False
    cautions: tuple[str, ...] = field(default=())

    @property
    def three_level(self) -> bool:
        return not math.isnan(self.sigma2_between)

    @property
    def stat_name(self) -> str:
        return "z" if math.isinf(self.df) else "t"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: full precision, NaN as None, cautions as a list."""
        d = asdict(self)
        d["cautions"] = list(self.cautions)
        return {k: (None if isinstance(v, float) and math.isnan(v) else
                    ("inf" if isinstance(v, float) and math.isinf(v) else v))
                for k, v in d.items()}

    def to_frame(self) -> pd.DataFrame:
        d = asdict(self)
        d["cautions"] = " ".join(self.cautions)
        return pd.DataFrame([d])


def _sample_n(data: pd.DataFrame) -> float:
    # effects of one sample share its participants: count each sample once, at its largest n
    if "n" not in data or "sample_id" not in data:
        return float("nan")
    n = pd.to_numeric(data["n"], errors="coerce").groupby(data["sample_id"]).max()
    return float(n.sum()) if n.notna().all() else float("nan")


def _variance_cis(result) -> dict[str, float]:
    out: dict[str, float] = {}
    if hasattr(result, "sigma2_between"):
        ci = None
        if callable(getattr(result, "confint", None)):
            try:
                ci = result.confint()
            except (ValueError, RuntimeError, np.linalg.LinAlgError):
                ci = None
        for comp in ("sigma2_between", "sigma2_within"):
            if isinstance(ci, pd.DataFrame) and comp in ci.index:
                out[f"{comp}_ci_lb"] = float(ci.loc[comp, "ci_lb"])
                out[f"{comp}_ci_ub"] = float(ci.loc[comp, "ci_ub"])
    else:
        for b in ("tau2_ci_lb", "tau2_ci_ub"):
            try:
                out[b] = _f(getattr(result, b, None))
            except (ValueError, RuntimeError):
                out[b] = float("nan")
    return out


def _df_kind(result, robust) -> str:
    if robust is not None:
        return "Satterthwaite"
    test = str(_get(result, "test", default="z"))
    if test == "z":
        return ""
    if test == "knha":
        return "k \u2212 p"
    return str(_get(result, "dfs_method", "dfs_type", "df_method", default="residual"))


def headline(result, data: pd.DataFrame | None = None, *, robust=None, rho: float | None = None,
             model: str | None = None, variance_cis: bool = True) -> Headline:
    """The headline numbers of a pooled (intercept-only) model.

    ``result``: a random-effects or three-level fit (or a workbench ``Attempt`` holding one);
    ``data``: the effects it was fitted on (k effects, samples, studies, N; for a model of
    per-sample composites, the effects before aggregation); ``robust``: a CR2 result on that
    fit, whose SE, t, df, p and CI replace the model's; ``rho``: the within-sample correlation
    assumed when composites were formed. ``variance_cis=False`` leaves the CIs of tau^2 and the
    variance components NaN: their profile likelihood costs dozens of refits, which the
    per-sample and per-level tables (one row per refit, no variance CI shown) do not need.
    """
    result, reason = _unwrap(result)
    if result is None:
        raise ValueError(f"headline: the model could not be fitted ({reason})")
    robust, _ = _unwrap(robust)
    tl = hasattr(result, "sigma2_between")
    src = robust if robust is not None else result
    est = _f(_get(src, "beta", "coef", "estimate"))
    df = (_f(_get(robust, "dfs", "df")) if robust is not None
          else _f(_get(result, "dfs", default=np.inf)))
    if str(_get(result, "test", default="z")) == "z" and robust is None:
        df = float("inf")
    k_pooled = int(_get(result, "k", default=0))
    if data is not None and len(data):
        k = len(data)
        n_samples = int(data["sample_id"].nunique()) if "sample_id" in data else k_pooled
        n_studies = int(data["study_id"].nunique()) if "study_id" in data else n_samples
        N = _sample_n(data)
    else:
        k = k_pooled
        n_samples = int(_get(result, "n_clusters", default=k))
        n_studies, N = n_samples, float("nan")
    pi = (_f(_get(result, "pi_lb")), _f(_get(result, "pi_ub")))
    vals: dict[str, Any] = dict(
        model=model or ("three-level" if tl else "random effects")
        + (" (CR2)" if robust is not None else ""),
        method=str(_get(result, "method", default="")), test=str(_get(result, "test")),
        df=df, df_kind=_df_kind(result, robust), level=float(_get(result, "level", default=.95)),
        k=k, n_samples=n_samples, n_studies=n_studies, N=N, estimate=est,
        se=_f(_get(src, "se")), stat=_f(_get(src, "tval", "zval", "statistic")),
        pval=_f(_get(src, "pval")), r=math.tanh(est),
        r_ci_lb=math.tanh(_f(_get(src, "ci_lb"))), r_ci_ub=math.tanh(_f(_get(src, "ci_ub"))),
        r_pi_lb=math.tanh(pi[0]), r_pi_ub=math.tanh(pi[1]),
        QE=_f(_get(result, "QE", "Q")), QE_p=_f(_get(result, "QE_p", "Q_p")),
        QE_df=float(k_pooled - int(_get(result, "p", default=1))),
        rho=float("nan") if rho is None else float(rho), k_pooled=k_pooled,
    )
    fallback = bool(getattr(result, "fallback", False))
    if tl and fallback:
        # every sample has one effect: the model is random effects, sigma2_between its tau^2
        vals.update(tau2=float(result.sigma2_between), I2=float(result.I2_between),
                    fallback=True)
        ci = _variance_cis(result) if variance_cis else {}
        vals.update(tau2_ci_lb=ci.get("sigma2_between_ci_lb", float("nan")),
                    tau2_ci_ub=ci.get("sigma2_between_ci_ub", float("nan")))
    elif tl:
        s_b, s_w = float(result.sigma2_between), float(result.sigma2_within)
        vals.update(sigma2_between=s_b, sigma2_within=s_w, tau2=s_b + s_w,
                    I2_between=float(result.I2_between), I2_within=float(result.I2_within),
                    I2=float(result.I2_between + result.I2_within))
    else:
        vals.update(tau2=_f(_get(result, "tau2")), I2=_f(_get(result, "I2")))
    if not (tl and fallback) and variance_cis:
        vals.update(_variance_cis(result))
    h = Headline(**vals)
    return Headline(**{**vals, "cautions": tuple(_cautions(h, result))})


def _cautions(h: Headline, result) -> list[str]:
    out = []
    if h.n_samples < SMALL_K:
        out.append(f"With {h.n_samples} independent sample{'s' * (h.n_samples != 1)} "
                   f"(fewer than {SMALL_K}), the heterogeneity variance and the prediction "
                   "interval are estimated imprecisely and should not be interpreted.")
    if h.tau2 == 0:
        out.append("The heterogeneity variance was estimated at zero, so the prediction interval "
                   "equals the confidence interval; with few effects this is not evidence that "
                   "the true correlations are homogeneous.")
    if h.fallback or (h.three_level and h.n_samples == h.k):
        out.append("Every sample contributed one effect, so the within-sample variance is not "
                   "identified: the three-level model was fitted as a random-effects model.")
    return out


# ---------------------------------------------------------------------------------------------
# methods


def _software() -> str:
    import scipy

    from .. import __version__

    return (f"alliance-meta {__version__} (Python {platform.python_version()}, NumPy "
            f"{np.__version__}, SciPy {scipy.__version__}; Harris et al., 2020; Virtanen et al., "
            "2020)")


def _test_sentence(h: Headline) -> str:
    if h.df_kind == "Satterthwaite":
        return ("Standard errors, tests and confidence intervals of the pooled effect used the "
                "CR2 cluster-robust variance estimator with samples as clusters and Satterthwaite "
                f"degrees of freedom (df = {fmt_df(h.df)}; Pustejovsky & Tipton, 2018; Tipton, "
                "2015), so that they remain valid whatever the dependence among effects of one "
                "sample.")
    if h.stat_name == "z":
        return "Tests and confidence intervals used the standard normal distribution (Wald z)."
    if h.test == "knha":
        return ("Tests and confidence intervals used the Knapp\u2013Hartung adjustment with a t "
                f"distribution on k \u2212 1 = {fmt_df(h.df)} degrees of freedom (Knapp & "
                "Hartung, 2003).")
    kind = {"contain": "metafor's \u201ccontain\u201d method: the number of samples minus the "
            "number of coefficients, for coefficients constant within samples",
            "residual": "the number of effects minus the number of coefficients"}.get(
        h.df_kind, h.df_kind)
    return (f"Tests and confidence intervals used a t distribution with {fmt_df(h.df)} degrees of "
            f"freedom ({kind}).")


def methods_paragraph(result, data: pd.DataFrame | None = None, *, robust=None,
                      rho: float | None = None, model: str | None = None,
                      moderators: Mapping[str, Any] | None = None,
                      bias: Mapping[str, Any] | None = None) -> str:
    """The statistical-methods paragraph of a pooled run, from its fitted model.

    ``data`` (the effects analysed) tells whether any correlation was converted from a
    standardised beta (Peterson & Brown, 2005); ``moderators``/``bias`` add one sentence each
    naming the tests used. See :func:`headline` for the other arguments.
    """
    h = headline(result, data, robust=robust, rho=rho, model=model)
    est = _EST_NAMES.get(h.method, h.method)
    parts = ["Correlations between the alliance and treatment outcome were transformed to Fisher's "
             "z for pooling and back-transformed to r for reporting (Borenstein et al., 2009)."]
    if data is not None and "stat_type" in data and (data["stat_type"] == "beta").any():
        nb = int((data["stat_type"] == "beta").sum())
        parts.append(f"Of the {fmt_int(len(data))} effects, {fmt_int(nb)} "
                     f"{'were' if nb != 1 else 'was'} reported as standardised regression "
                     "coefficients and converted to r with r = .98\u03b2 + .05\u03bb (\u03bb = 1 "
                     "for \u03b2 \u2265 0, else 0) on the direction-aligned scale (Peterson & "
                     "Brown, 2005).")
    if h.three_level:
        parts.append("Because several effects could come from one sample, we fitted a three-level "
                     "random-effects model with effects (level 2) nested in independent samples "
                     "(level 3; Konstantopoulos, 2011; Cheung, 2014), estimating both variance "
                     f"components by {est} ({h.method}).")
    elif not math.isnan(h.rho):
        parts.append("Effects of one sample were first combined into one composite per sample, "
                     f"assuming a within-sample correlation of \u03c1 = {fmt_r(h.rho)} "
                     "(Borenstein et al., 2009, ch. 24); the composites were pooled in a "
                     f"random-effects model with \u03c4\u00b2 estimated by {est} "
                     f"({h.method}; Viechtbauer, 2005).")
    else:
        parts.append(f"Effects were pooled in a random-effects model with \u03c4\u00b2 estimated by "
                     f"{est} ({h.method}; Viechtbauer, 2005)"
                     + (", treating effects of one sample as independent." if h.k > h.n_samples
                        else "."))
    parts.append(_test_sentence(h))
    het = ("Heterogeneity is reported as Cochran's Q, the variance components with profile-"
           "likelihood confidence intervals, and I\u00b2 per level (Cheung, 2014)"
           if h.three_level else
           "Heterogeneity is reported as Cochran's Q, \u03c4\u00b2 with its Q-profile confidence "
           "interval (Viechtbauer, 2007) and I\u00b2 (Higgins & Thompson, 2002)")
    parts.append(het + "; the 95% prediction interval gives the range of true correlations "
                 "expected in a new sample.")
    if moderators:
        parts.append("Moderators were tested one at a time in the same model"
                     + (" with cluster-robust (CR2) Wald tests using the HTZ small-sample "
                        "correction (Pustejovsky & Tipton, 2018)" if any(
                            hasattr(_unwrap(m)[0], "df_denom") for m in _flat(moderators)) else "")
                     + "; levels with fewer than "
                     f"{MIN_PER_LEVEL} effects are reported but not interpreted.")
    if bias:
        parts.append("Small-study effects were examined with " + _join_words(list(bias)) +
                     "; with fewer than 10 samples these tests have little power (Sterne et al., "
                     "2011).")
    parts.append(f"Analyses were run in {_software()}; its estimates are checked against the R "
                 "package metafor (Viechtbauer, 2010) to a relative tolerance of 10\u207b\u2075.")
    return " ".join(parts)


def _flat(moderators: Mapping[str, Any]):
    for v in moderators.values():
        yield from (v if isinstance(v, (tuple, list)) else (v,))


def _join_words(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + (", and " if len(words) > 2 else " and ") + words[-1]


# ---------------------------------------------------------------------------------------------
# results


def _stat_text(h: Headline) -> str:
    if h.stat_name == "z":
        return f"z = {fmt_num(h.stat)}, {p_text(h.pval)}"
    return f"t({fmt_df(h.df)}) = {fmt_num(h.stat)}, {p_text(h.pval)}"


def _model_phrase(h: Headline) -> str:
    base = "three-level model" if h.three_level else (
        "random-effects model of per-sample composites" if not math.isnan(h.rho)
        else "random-effects model")
    if h.df_kind == "Satterthwaite":
        base += " with CR2 cluster-robust inference"
    return base


def _counts_text(h: Headline) -> str:
    s = f"k = {fmt_int(h.k)} effect{'s' * (h.k != 1)} from {fmt_int(h.n_samples)} " \
        f"sample{'s' * (h.n_samples != 1)}"
    if h.n_studies != h.n_samples:
        s += f" in {fmt_int(h.n_studies)} stud{'ies' if h.n_studies != 1 else 'y'}"
    if not math.isnan(h.N):
        s += f" (total N = {fmt_int(h.N)})"
    return s


def _var_text(name: str, v: float, lb: float, ub: float, level: float) -> str:
    val = fmt_var(v)
    s = f"{name} {val}" if val.startswith("<") else f"{name} = {val}"
    if not (math.isnan(lb) or math.isnan(ub)):
        s += f", {round(level * 100):g}% CI {fmt_ci(lb, ub, fmt_var)}"
    return s


def _heterogeneity_text(h: Headline) -> str:
    parts = []
    if not math.isnan(h.QE):
        parts.append(f"Q({fmt_df(h.QE_df)}) = {fmt_num(h.QE)}, {p_text(h.QE_p)}")
    if h.three_level:
        parts.append(_var_text("\u03c3\u00b2 between samples", h.sigma2_between,
                               h.sigma2_between_ci_lb, h.sigma2_between_ci_ub, h.level))
        parts.append(_var_text("\u03c3\u00b2 within samples", h.sigma2_within,
                               h.sigma2_within_ci_lb, h.sigma2_within_ci_ub, h.level))
        parts.append(f"I\u00b2 = {fmt_pct(h.I2_between)}% between and {fmt_pct(h.I2_within)}% "
                     "within samples")
    else:
        parts.append(_var_text("\u03c4\u00b2", h.tau2, h.tau2_ci_lb, h.tau2_ci_ub, h.level))
        parts.append(f"I\u00b2 = {fmt_pct(h.I2)}%")
    return "Heterogeneity: " + "; ".join(parts) + "."


def _moderator_levels(data: pd.DataFrame | None, name: str) -> list[str]:
    if data is None or name not in data:
        return []
    counts = data[name].astype(str).value_counts()
    return sorted(counts[counts < MIN_PER_LEVEL].index)


def moderator_sentence(name: str, result, data: pd.DataFrame | None = None) -> str:
    """One APA sentence for the omnibus test of a moderator.

    ``result`` is a meta-regression (``QM``, ``QM_df``, ``QM_p``; F under t tests), a
    subgroup analysis (``Q_between``, ``df_between``, ``Q_between_p``), a cluster-robust Wald
    test (``F``, ``df_num``, ``df_denom``, ``pval``; HTZ), or a tuple of one of these and a
    permutation test (``QM_p``), or a workbench ``Attempt``.
    """
    perm = None
    if isinstance(result, (tuple, list)):
        result, perm = result[0], (result[1] if len(result) > 1 else None)
    res, reason = _unwrap(result)
    label = name.replace("_", " ")
    if res is None:
        return f"The moderator {label} could not be tested ({reason})."
    if hasattr(res, "df_denom"):
        txt = (f"F({fmt_df(res.df_num)}, {fmt_df(res.df_denom)}) = {fmt_num(_f(res.F))}, "
               f"{p_text(_f(res.pval))} (HTZ)")
        p = _f(res.pval)
    elif hasattr(res, "Q_between"):
        txt = f"Q({fmt_df(res.df_between)}) = {fmt_num(res.Q_between)}, {p_text(res.Q_between_p)}"
        p = float(res.Q_between_p)
    else:
        qdf = np.ravel(np.asarray(getattr(res, "QM_df", res.p - 1), dtype=float))
        if str(getattr(res, "test", "z")) != "z" and qdf.size >= 2:
            txt = f"F({fmt_df(qdf[0])}, {fmt_df(qdf[1])}) = {fmt_num(res.QM)}, {p_text(res.QM_p)}"
        else:
            txt = f"Q_M({fmt_df(qdf[0])}) = {fmt_num(res.QM)}, {p_text(res.QM_p)}"
        p = float(res.QM_p)
    perm_res, _ = _unwrap(perm)
    if perm_res is not None:
        txt += f"; permutation {p_text(_f(_get(perm_res, 'QM_p', 'pval')))}"
    verdict = "was associated" if p < 0.05 else "was not significantly associated"
    s = f"The moderator {label} {verdict} with the size of the correlation, {txt}."
    small = _moderator_levels(data, name)
    if small:
        s += (f" Levels with fewer than {MIN_PER_LEVEL} effects ({', '.join(small)}) are not "
              "interpreted.")
    return s


def bias_sentences(bias: Mapping[str, Any], k: int | None = None) -> str:
    """APA sentences for the small-study-effect results (Egger, rank test, trim-and-fill,
    PET-PEESE, selection model, fail-safe N), each with its test; failures give their reason."""
    out = []
    for name, a in bias.items():
        res, reason = _unwrap(a)
        if res is None:
            out.append(f"{name} could not be run ({reason}).")
            continue
        cls = type(res).__name__
        if cls == "EggerResult":
            df = _f(getattr(res, "dfs", np.inf))
            st = (f"z = {fmt_num(res.zval)}" if math.isinf(df)
                  else f"t({fmt_df(df)}) = {fmt_num(res.zval)}")
            out.append(f"The regression test for funnel asymmetry ({name}) gave {st}, "
                       f"{p_text(res.pval)}.")
        elif cls == "RankTestResult":
            out.append(f"The rank correlation test gave Kendall's \u03c4 = {fmt_r(res.tau)}, "
                       f"{p_text(res.pval)}.")
        elif cls == "TrimFillResult":
            out.append(f"Trim-and-fill imputed {res.k0} effect{'s' * (res.k0 != 1)} on the "
                       f"{res.side} side; the adjusted r = {fmt_r(math.tanh(res.estimate))}, "
                       f"95% CI {fmt_ci(math.tanh(res.ci_lb), math.tanh(res.ci_ub))}.")
        elif cls == "PetPeeseResult":
            out.append(f"The conditional PET-PEESE estimate ({res.chosen}) was r = "
                       f"{fmt_r(math.tanh(res.estimate))}, 95% CI "
                       f"{fmt_ci(math.tanh(res.ci_lb), math.tanh(res.ci_ub))}.")
        elif cls == "SelectionModelResult":
            out.append(f"The step-function selection model gave an adjusted r = "
                       f"{fmt_r(math.tanh(res.estimate))}, 95% CI "
                       f"{fmt_ci(math.tanh(res.ci_lb), math.tanh(res.ci_ub))}; the likelihood-"
                       f"ratio test of selection gave \u03c7\u00b2({fmt_df(res.LRT_df)}) = "
                       f"{fmt_num(res.LRT)}, {p_text(res.LRT_p)}.")
        elif cls == "FailSafeNResult":
            out.append(f"The fail-safe N ({res.method}) was {fmt_int(res.fsnum)}.")
    if k is not None and k < 10 and out:
        out.append(f"With {k} samples, these tests have little power; a non-significant test is "
                   "no evidence that bias is absent (Sterne et al., 2011).")
    return " ".join(out)


def results_paragraph(result, data: pd.DataFrame | None = None, *, robust=None,
                      rho: float | None = None, model: str | None = None,
                      moderators: Mapping[str, Any] | None = None,
                      bias: Mapping[str, Any] | None = None) -> str:
    """The APA results paragraph: counts, pooled r with CI and test, PI, heterogeneity per
    level, moderator and bias findings, and the cautions small k calls for."""
    h = headline(result, data, robust=robust, rho=rho, model=model)
    pct = f"{round(h.level * 100):g}%"
    s = [f"Across {_counts_text(h)}, the pooled alliance\u2013outcome correlation was "
         f"r = {fmt_r(h.r)}, {pct} CI {fmt_ci(h.r_ci_lb, h.r_ci_ub)}, {_stat_text(h)} "
         f"({_model_phrase(h)})."]
    if not math.isnan(h.r_pi_lb):
        s.append(f"The {pct} prediction interval for the correlation in a new sample was "
                 f"{fmt_ci(h.r_pi_lb, h.r_pi_ub)}.")
    else:
        s.append("No prediction interval is available for this model.")
    s.append(_heterogeneity_text(h))
    s.extend(h.cautions)
    if moderators:
        s.extend(moderator_sentence(n, m, data) for n, m in moderators.items())
    if bias:
        s.append(bias_sentences(bias, h.n_samples))
    return " ".join(s)


def write_report(path: str | Path, result, data: pd.DataFrame | None = None, *,
                 title: str = "", caution: str = "", robust=None, rho: float | None = None,
                 model: str | None = None, moderators: Mapping[str, Any] | None = None,
                 bias: Mapping[str, Any] | None = None) -> Path:
    """Write ``report.md`` (title, caution, methods, results, references) and, beside it,
    ``headline.json``. ``path`` is the file or the run's output folder. Returns the .md path."""
    path = Path(path)
    if path.suffix != ".md":
        path = path / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = dict(robust=robust, rho=rho, model=model, moderators=moderators, bias=bias)
    methods = methods_paragraph(result, data, **kw)
    results = results_paragraph(result, data, **kw)
    h = headline(result, data, robust=robust, rho=rho, model=model)
    lines = [f"# {title or 'Report'}", ""]
    if caution:
        lines += [f"> {caution}", ""]
    lines += ["## Method", "", methods, "", "## Results", "", results, "", "## References", ""]
    lines += [f"- {r}" for r in cited(methods, results)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (path.parent / HEADLINE_FILE).write_text(
        json.dumps(h.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n",
        encoding="utf-8")
    return path
