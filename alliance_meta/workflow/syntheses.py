"""The published syntheses (``studies/syntheses.csv``) beside ours (notebooks 02 and 07).

Every estimate is kept as printed; for comparison it is expressed as r: d (and g) with
r = d / sqrt(d^2 + 4) (``am.r_from_d``; Borenstein et al. 2009, eq. 7.5, equal group sizes, as
the abstracts give no group sizes), Fisher's z with r = tanh(z); "other" metrics are not
converted. The second-order summary (Schmidt & Oh 2013, Organ Behav Hum Decis Process
121:204-218, doi:10.1016/j.obhdp.2013.01.002) pools first-order estimates by random effects
(``am.random_effects``, REML, Knapp-Hartung) on Fisher's z, with each estimate's standard error
read from its printed CI as (z(ub) - z(lb)) / (2 z_.975), which assumes the CI was symmetric on
that scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..data import load_syntheses, studies_dir
from ..stats.escalc import r_from_d, z_to_r
from ..stats.inference import crit
from ..stats.rma import random_effects
from .table1 import author_year, parse_bib
from .workbench import Attempt, attempt, headline_model, select

__all__ = ["CONVERSION", "RULE", "published", "eligible", "non_overlapping", "second_order",
           "ours", "beside", "summary_table", "summary_rows"]

#: How each printed metric becomes r (shown in the tables and the figure).
CONVERSION = {"r": "as printed", "d": "r = d / \u221a(d\u00b2 + 4)",
              "g": "r = g / \u221a(g\u00b2 + 4)", "z": "r = tanh(z)", "other": "not converted"}

#: The rule that picks non-overlapping syntheses for the second-order summary.
RULE = ("one estimate per population: among overall estimates of the alliance (construct "
        "'alliance', subgroup beginning 'overall') in r or a convertible metric, with a printed "
        "CI and a positive sign as printed (a negative estimate's sign convention cannot be "
        "aligned from the abstract), the most recent synthesis; ties go to the larger k, then "
        "the larger N")


def _to_r(metric: pd.Series, x: pd.Series) -> np.ndarray:
    x = x.to_numpy(float)
    m = metric.astype(str).to_numpy()
    out = np.full(x.shape, np.nan)
    out[m == "r"] = x[m == "r"]
    dg = np.isin(m, ("d", "g"))
    out[dg] = r_from_d(x[dg])
    out[m == "z"] = z_to_r(x[m == "z"])
    return out


def published(data_path: str | None = None) -> pd.DataFrame:
    """The syntheses table with ``r``, ``r_ci_lb``, ``r_ci_ub`` (converted), ``conversion``,
    ``se_z`` (standard error on Fisher's z from the CI) and a short ``label``."""
    s = load_syntheses(data_path).copy()
    s["r"] = _to_r(s["metric"], s["estimate"])
    s["r_ci_lb"] = _to_r(s["metric"], s["ci_lb"])
    s["r_ci_ub"] = _to_r(s["metric"], s["ci_ub"])
    s["conversion"] = s["metric"].astype(str).map(CONVERSION)
    s["se_z"] = (np.arctanh(s["r_ci_ub"]) - np.arctanh(s["r_ci_lb"])) / (2 * crit(0.95))
    try:
        bib = parse_bib(studies_dir(data_path) / "syntheses.bib")
    except (OSError, ValueError):
        bib = {}
    who = {k: "{} ({})".format(*author_year(bib[k])) if k in bib else k
           for k in s["synthesis_id"].astype(str).unique()}
    s["label"] = [f"{who[i]}: {g}" + ("" if c == "alliance" else f" [{c}]") for i, g, c in
                  zip(s["synthesis_id"].astype(str), s["subgroup"], s["construct"], strict=True)]
    return s


def eligible(pub: pd.DataFrame) -> pd.Series:
    """The estimates a second-order summary can use (see :data:`RULE`, without the
    one-per-population part)."""
    return ((pub["construct"] == "alliance")
            & pub["subgroup"].astype(str).str.lower().str.startswith("overall")
            & pub["r"].notna() & pub["se_z"].notna() & (pub["se_z"] > 0) & (pub["r"] > 0))


def non_overlapping(pub: pd.DataFrame) -> pd.Series:
    """True for the one estimate per population that :data:`RULE` selects."""
    e = pub[eligible(pub)].copy()
    e["_k"] = e["k"].astype("Float64").fillna(-1)
    e["_n"] = e["n"].astype("Float64").fillna(-1)
    e = e.sort_values(["population", "year", "_k", "_n", "estimate_id"],
                      ascending=[True, False, False, False, True], kind="stable")
    keep = e.drop_duplicates("population").index
    return pub.index.isin(keep)


def second_order(pub: pd.DataFrame, rows: pd.Series, method: str = "REML") -> Attempt:
    """Random-effects summary (Knapp-Hartung) of the selected first-order estimates on Fisher's
    z, each weighted by its standard error from the CI."""
    t = pub[rows]
    return attempt("second-order", random_effects, np.arctanh(t["r"].to_numpy(float)),
                   t["se_z"].to_numpy(float) ** 2, method=method, test="knha",
                   labels=list(t["label"]))


def ours(subsets: Mapping[str, str], dependence: str = "three-level", method: str = "REML",
         rho: float = 0.5, data_path: str | None = None, base: str = "") -> pd.DataFrame:
    """Our headline model on the subset of our effects matching each published population
    (``{population: pandas query}``, ``""`` for all effects; ``base`` is a query applied to
    every subset); one row each."""
    rows = []
    for pop, q in subsets.items():
        full = " and ".join(f"({x})" for x in (base, q) if x and x.strip())
        row = {"population": pop, "subset": full or "all effects"}
        d = attempt("select", select, data_path, full)
        a = attempt(pop, headline_model, d.result, dependence, method, rho) if d.ok else d
        if a.ok:
            h = a.result.headline()
            row.update(k=h.k, n_samples=h.n_samples, r=h.r, r_ci_lb=h.r_ci_lb,
                       r_ci_ub=h.r_ci_ub, r_pi_lb=h.r_pi_lb, r_pi_ub=h.r_pi_ub,
                       model=a.result.label, note=a.result.note)
        else:
            row["note"] = f"not estimable: {a.reason}"
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=[
        "population", "subset", "k", "n_samples", "r", "r_ci_lb", "r_ci_ub", "r_pi_lb",
        "r_pi_ub", "model", "note"])


def beside(headline_row: Mapping, pub: pd.DataFrame,
           populations: tuple[str, ...] = ("adult-general",)) -> pd.DataFrame:
    """Our headline beside the published overall alliance estimates of ``populations``, as
    printed (metric, estimate, CI, k and its unit) and as r."""
    p = pub[(pub["construct"] == "alliance") & pub["population"].isin(populations)
            & pub["subgroup"].astype(str).str.lower().str.startswith("overall")]
    cols = ["source", "population", "subgroup", "metric", "estimate", "ci_lb", "ci_ub", "k",
            "k_unit", "model", "r", "r_ci_lb", "r_ci_ub", "doi"]
    theirs = p.assign(source=p["label"].astype(str).str.split(":").str[0]).reindex(columns=cols)
    me = pd.DataFrame([{"source": "this review", "population": "all effects in studies/",
                        "subgroup": "headline", "metric": "r", "estimate": headline_row["r"],
                        "ci_lb": headline_row["r_ci_lb"], "ci_ub": headline_row["r_ci_ub"],
                        "k": headline_row["k"], "k_unit": "effects",
                        "model": headline_row["model"], "r": headline_row["r"],
                        "r_ci_lb": headline_row["r_ci_lb"], "r_ci_ub": headline_row["r_ci_ub"]}])
    return pd.concat([me.reindex(columns=cols), theirs], ignore_index=True)


def summary_table(fits: Mapping[str, Attempt]) -> pd.DataFrame:
    """One row per second-order summary: k, r with CI and PI, tau2, I2 (or why it failed)."""
    rows = []
    for name, a in fits.items():
        row = {"summary": name}
        if a.ok:
            s = a.result.summary().iloc[0]
            row.update(k=a.result.k, **{c: s[c] for c in ("r", "r_ci_lb", "r_ci_ub", "r_pi_lb",
                                                          "r_pi_ub", "tau2", "I2", "pval")
                                        if c in s})
            row["syntheses"] = "; ".join(a.result.labels)
        else:
            row["note"] = f"not estimable: {a.reason}"
        rows.append(row)
    return pd.DataFrame(rows)


def summary_rows(table: pd.DataFrame) -> list[tuple[str, float, float, float, float, float]]:
    """The summaries as (label, r, ci_lb, ci_ub, pi_lb, pi_ub) for the figure."""
    t = table.dropna(subset=["r"]) if "r" in table else table.iloc[:0]
    return [(f"{row['summary']} (k = {int(row['k'])})", row["r"], row["r_ci_lb"], row["r_ci_ub"],
             row.get("r_pi_lb", np.nan), row.get("r_pi_ub", np.nan)) for _, row in t.iterrows()]
