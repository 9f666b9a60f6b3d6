"""Small-study effects for the run's headline model (notebook 04).

The regression test for funnel asymmetry follows the headline's dependence handling: the
three-level Egger test with CR2 inference (``am.egger_test`` on the three-level fit; Rodgers &
Pustejovsky 2021, Psychol Methods 26:141-160, doi:10.1037/met0000300), Egger's meta-regression
on the standard error with CR2 standard errors by sample for the robust headline (their
"EGG-RVE"), or the classical test on per-sample composites. The rank test, trim-and-fill,
PET-PEESE, the selection model and fail-safe N assume independent effects, so they run on one
composite per sample (``rho`` of the run) whatever the headline. Every number comes from the
stats floor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats.bias import (
    egger_test,
    fail_safe_n,
    pet_peese,
    rank_test,
    selection_model,
    trim_and_fill,
)
from ..stats.rma import meta_regression
from ..stats.robust import robust
from .workbench import Attempt, HeadlineModel, attempt, headline_model

__all__ = ["bias_analyses", "bias_table", "composites_model"]


def composites_model(hm: HeadlineModel) -> HeadlineModel:
    """The headline model's composites (one per sample, the run's ``rho``): the headline itself
    under ``aggregate``."""
    if hm.dependence == "aggregate":
        return hm
    return headline_model(hm.effects, "aggregate", hm.method, hm.rho, hm.level)


def _egger_rve(hm: HeadlineModel):
    e = hm.effects
    reg = meta_regression(e["yi"], e["vi"], mods=np.sqrt(e["vi"].to_numpy(float)),
                          method=hm.method, test="z", level=hm.level)
    return robust(reg, e["sample_id"])


def bias_analyses(hm: HeadlineModel) -> tuple[dict[str, Attempt], HeadlineModel]:
    """The small-study analyses (name -> Attempt) and the composites model the classical ones
    use. Keys: the dependence-aware regression test first, then the classical methods."""
    comp = composites_model(hm)
    out: dict[str, Attempt] = {}
    if hm.dependence == "three-level" and hasattr(hm.fit, "sigma2_between"):
        out["Egger (three-level, CR2)"] = attempt("Egger", egger_test, hm.fit)
    elif hm.dependence == "robust":
        out["Egger (CR2 meta-regression on SE)"] = attempt("Egger", _egger_rve, hm)
    r = comp.fit
    p = comp.points
    out.update({
        "Egger (per-sample composites)": attempt("Egger", egger_test, r),
        "rank test": attempt("Begg's rank test", rank_test, r),
        "trim-and-fill": attempt("trim-and-fill", trim_and_fill, r),
        "PET-PEESE": attempt("PET-PEESE", pet_peese, p["yi"], p["vi"]),
        "selection model": attempt("3PSM", selection_model, r, steps=(0.025,)),
        "fail-safe N": attempt("fail-safe N", fail_safe_n, p["yi"], p["vi"]),
    })
    return out, comp


def bias_table(results: dict[str, Attempt], hm: HeadlineModel,
               comp: HeadlineModel) -> pd.DataFrame:
    """One row per analysis: its statistic, p, adjusted estimate (and r), and the model."""
    rows = []
    for name, a in results.items():
        model = comp.label if "composites" in name or not name.startswith("Egger") else hm.label
        row = {"analysis": name, "model": model}
        x = a.result
        if x is None:
            row["note"] = f"not run: {a.reason}"
        elif hasattr(x, "vcov"):  # CR2 meta-regression: the slope on the SE is the test
            s = x.summary().iloc[1]
            i = x.summary().iloc[0]
            row.update(zval=s["tval"], dfs=s["df"], pval=s["pval"], estimate=i["estimate"],
                       ci_lb=i["ci_lb"], ci_ub=i["ci_ub"])
        else:
            for attr in ("zval", "dfs", "tau", "pval", "k0", "side", "estimate", "ci_lb",
                         "ci_ub", "chosen", "LRT", "LRT_p", "fsnum", "note"):
                if hasattr(x, attr):
                    row[attr] = getattr(x, attr)
        if "estimate" in row:
            row["r"] = float(np.tanh(row["estimate"]))
        rows.append(row)
    return pd.DataFrame(rows)
