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
# Random effects (Knapp–Hartung by default), the three-level model (effects within samples),
# CR2 cluster-robust inference and one composite per sample; prediction intervals; forest plots
# overall and by treatment approach; an estimator comparison; and our estimate beside the
# published syntheses. Estimates are pooled on Fisher's z and shown as r.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator: DL, HE, HS, SJ, ML, REML, EB, PM
test = "knha"  # "z" or "knha" (Knapp-Hartung)
dependence = "three-level"  # headline model: "three-level", "aggregate" or "robust"
rho = 0.5  # assumed correlation between effects of one sample (aggregate)
formats = ["svg", "png", "pdf"]  # figure formats
output_dir = "../outputs/.scratch/02_pooled"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import alliance_meta as am
from alliance_meta import plots
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects)
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, "
      f"{len(df)} effects; subset: {subset or 'all'}; effects: {effects}")

# %% [markdown]
# ## Pooled estimates under each way of handling dependent effects

# %%
models = wb.pooled_models(df, method=method, test=test, rho=rho)
headline = {"three-level": "three-level", "aggregate": "aggregated per sample",
            "robust": "robust (CR2)"}[dependence]
order = [headline] + [m for m in models if m != headline]
pooled = wb.pooled_table({m: models[m] for m in order}, df)
out.table(pooled, "pooled")

# %%
models[headline]

# %% [markdown]
# ## Forest plot

# %%
re = models["random effects"]
if re.ok:
    fig = plots.forest_plot(re.result, groups=list(df["modality"]) if df["modality"].nunique() > 1
                            else None, title="Alliance–outcome correlations")
    out.figure(fig, "forest")
else:
    print(re)

# %% [markdown]
# ## The tau² estimators side by side

# %%
rows = []
for m in ["DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM"]:
    a = wb.attempt(m, am.random_effects, df["yi"], df["vi"], method=m, test=test)
    if a.ok:
        s = a.result.summary().iloc[0]
        rows.append({"method": m, "r": s["r"], "r_ci_lb": s["r_ci_lb"], "r_ci_ub": s["r_ci_ub"],
                     "tau2": s["tau2"], "I2": s["I2"]})
    else:
        rows.append({"method": m, "note": a.reason})
out.table(pd.DataFrame(rows), "estimators")

# %% [markdown]
# ## Beside the published syntheses
#
# Horvath et al. (2011) and Flückiger et al. (2018) pooled far more studies; ours is the
# re-synthesis of what `studies/` holds now.

# %%
ours = pooled.iloc[[0]][["model", "k", "r", "r_ci_lb", "r_ci_ub"]].rename(
    columns={"model": "source"})
ours["source"] = "this dataset (" + ours["source"] + ")"
out.table(pd.concat([ours, wb.PUBLISHED], ignore_index=True), "published_comparison")
