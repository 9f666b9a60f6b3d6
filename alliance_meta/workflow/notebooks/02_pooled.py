# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The pooled alliance–outcome correlation
#
# One headline model drives every number and figure of this run: by default the three-level
# model (effects within samples, t-test with "contain" df), or CR2 cluster-robust inference,
# or one composite per sample (`dependence`). The forest plot's diamond and prediction
# interval are that model's. A sensitivity table shows the headline under every handling of
# dependent effects (and ρ = .2/.5/.8 for composites); an estimator comparison; our estimate
# beside the published syntheses (`studies/syntheses.csv`); and the APA methods and results
# paragraphs written to `report.md`. Estimates are pooled on Fisher's z and shown as r.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator: REML or ML for three-level; DL, HE, HS, SJ, ML, REML, EB, PM otherwise
dependence = "three-level"  # headline model: "three-level", "robust" (CR2) or "aggregate"
rho = 0.5  # assumed correlation between effects of one sample (aggregate)
rhos = [0.2, 0.5, 0.8]  # correlations shown in the sensitivity table
title = ""  # names the subset in figure titles and the report, empty: from subset/effects
forest_full = False  # also every effect in a paged forest (above 60 effects)
formats = ["png"]  # figure formats: add "pdf" (vector, for a manuscript) or "svg"
output_dir = "../outputs/.scratch/02_pooled"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import alliance_meta as am
from alliance_meta.data import studies_dir
from alliance_meta.workflow import syntheses as sy
from alliance_meta.workflow import workbench as wb
from alliance_meta.workflow.published import demonstration_caution, read_syntheses

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects)
name = title or ("all effects" if not subset and effects == "all"
                 else "; ".join(x for x in (subset, f"{effects} correlations"
                                            if effects != "all" else "") if x))
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, "
      f"{len(df)} effects; subset: {subset or 'all'}; effects: {effects}")

# %% [markdown]
# ## The headline model

# %%
hm = wb.headline_model(df, dependence, method, rho)
print("Headline model:", hm.label)
if hm.note:
    print(hm.note)
pooled = wb.headline_table({dependence: hm})
out.table(pooled, "pooled", f"Headline pooled estimate ({name})", hm.label)
hm

# %% [markdown]
# ## Forest plot

# %%
# more than 60 rows: one row per sample, split across pages when the samples are too
for fig_name, fig in wb.forest_figures(hm, title=f"Alliance\u2013outcome correlations: {name}",
                                       full=forest_full).items():
    out.figure(fig, fig_name, wb.forest_caption(fig_name, name), hm.label)

# %% [markdown]
# ## How the handling of dependent effects moves the estimate
#
# Three-level, CR2-robust, composites per sample under each ρ, and (for reference only) every
# effect treated as independent.

# %%
sens = wb.sensitivity_table(df, method, rhos, headline=dependence)
out.table(sens, "dependence_sensitivity",
          f"The pooled correlation under each handling of dependent effects ({name})", hm.label)

# %% [markdown]
# ## The τ² estimators side by side
#
# Random effects per estimator, on the units the headline pools when it is a random-effects
# model (composites under `aggregate`), else on the effects as independent (reference only).

# %%
pts = hm.points
rows = []
for m in ["DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM"]:
    a = wb.attempt(m, am.random_effects, pts["yi"], pts["vi"], method=m, test="knha")
    if a.ok:
        s = a.result.summary().iloc[0]
        rows.append({"method": m, "r": s["r"], "r_ci_lb": s["r_ci_lb"], "r_ci_ub": s["r_ci_ub"],
                     "tau2": s["tau2"], "I2": s["I2"]})
    else:
        rows.append({"method": m, "note": a.reason})
unit = "per-sample composites" if dependence == "aggregate" else "effects as independent"
out.table(pd.DataFrame(rows), "estimators",
          f"Random-effects estimate under each \u03c4\u00b2 estimator ({unit})",
          f"random effects on {unit}, Knapp\u2013Hartung t-test")

# %% [markdown]
# ## Beside the published syntheses
#
# The overall estimates of the published adult syntheses (`studies/syntheses.csv`, numbers as
# printed, d converted to r); ours is the re-synthesis of what `studies/` holds now. Every
# population is in notebook 07.

# %%
published = sy.published(data_path)
mine = {**pooled.iloc[0].to_dict(), "model": hm.label}
out.table(sy.beside(mine, published), "published_comparison",
          "This review's headline beside the published overall estimates", hm.label)

# %% [markdown]
# ## Methods and results

# %%
caution = demonstration_caution(hm.headline(), read_syntheses(studies_dir(data_path)))
path = wb.write_report(out, hm, title=f"Pooled alliance\u2013outcome correlation: {name}",
                       caution=caution)
