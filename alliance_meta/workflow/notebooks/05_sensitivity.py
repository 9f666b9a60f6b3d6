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
# # 05 · Sensitivity
#
# Does one study drive the pooled correlation? Leave-one-out, influence diagnostics
# (studentized residuals, DFFITS, Cook's distance, covariance ratio, hat values; metafor's
# flagging rule), the Baujat plot, a cumulative meta-analysis by year, the pooled estimate
# without flagged studies, and leave-one-sample-out for the three-level model.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator
test = "knha"  # "z" or "knha"
formats = ["svg", "png", "pdf"]  # figure formats
output_dir = "../outputs/.scratch/05_sensitivity"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import alliance_meta as am
from alliance_meta import plots
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects).sort_values(["year", "es_id"]).reset_index(drop=True)
labels = [f"{s} ({e.split('_')[-1]})" for s, e in zip(df["study_id"], df["es_id"], strict=True)]
res = wb.attempt("random effects", am.random_effects, df["yi"], df["vi"], method=method,
                 test=test, labels=labels)
res

# %%
if res.ok:
    r = res.result
    loo = wb.attempt("leave-one-out", am.leave_one_out, r)
    inf = wb.attempt("influence", am.influence, r)
    bj = wb.attempt("Baujat", am.baujat, r)
    cum = wb.attempt("cumulative", am.cumulative, r, order=df["year"].to_numpy())
    for name, a in {"leave_one_out": loo, "influence": inf, "cumulative": cum}.items():
        if a.ok:
            out.table(a.result, name)
        else:
            print(a)
    if loo.ok:
        out.figure(plots.leave_one_out_plot(loo.result, res=r), "leave_one_out")
    if cum.ok:
        out.figure(plots.cumulative_plot(cum.result, res=r), "cumulative")
    if bj.ok:
        out.figure(plots.baujat_plot(bj.result), "baujat")

# %% [markdown]
# ## Without the studies flagged as influential

# %%
if res.ok and inf.ok:
    keep = ~inf.result["inf"].to_numpy(bool)
    flagged = [lab for lab, k in zip(labels, keep, strict=True) if not k]
    without = wb.attempt("without flagged", am.random_effects, df["yi"][keep], df["vi"][keep],
                         method=method, test=test)
    rows = [{"model": "all effects", **r.summary().iloc[0].to_dict()}]
    if without.ok:
        rows.append({"model": f"without {len(flagged)} flagged", **without.result.summary().iloc[0].to_dict()})
    print("flagged:", flagged or "none")
    out.table(pd.DataFrame(rows), "without_flagged")

# %% [markdown]
# ## Leave one sample out (three-level model)

# %%
tl = wb.attempt("three-level", am.three_level, df["yi"], df["vi"], df["sample_id"])
if tl.ok:
    loso = wb.attempt("leave one sample out", am.leave_one_out, tl.result)
    if loso.ok:
        out.table(loso.result, "leave_one_sample_out")
    loso
