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
# # 04 · Publication bias
#
# Do small or unpublished studies bend the pooled correlation? Contour-enhanced funnel plot,
# Egger's regression test, Begg's rank test, trim-and-fill, PET-PEESE, the three-parameter
# selection model and fail-safe N, with a plain-language verdict. With dependent effects, the
# Egger-type test is also run as a three-level meta-regression with CR2 inference
# (Rodgers & Pustejovsky 2021).

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator
test = "z"  # "z" or "knha"
dependence = "aggregate"  # "aggregate" (one composite per sample) or "none"
rho = 0.5  # assumed correlation between effects of one sample
formats = ["svg", "png", "pdf"]  # figure formats
output_dir = "../outputs/.scratch/04_publication_bias"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import alliance_meta as am
from alliance_meta import plots
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects)
if dependence == "aggregate":
    data = am.aggregate(df["yi"], df["vi"], df["sample_id"], rho=rho)
else:
    data = df[["yi", "vi"]]
print(f"{len(data)} effects analysed ({dependence})")
res = wb.attempt("random effects", am.random_effects, data["yi"], data["vi"], method=method,
                 test=test)
res

# %%
results = {}
if res.ok:
    r = res.result
    results = {
        "egger": wb.attempt("Egger's test", am.egger_test, r),
        "rank test": wb.attempt("Begg's rank test", am.rank_test, r),
        "trim-and-fill": wb.attempt("trim-and-fill", am.trim_and_fill, r),
        "PET-PEESE": wb.attempt("PET-PEESE", am.pet_peese, data["yi"], data["vi"]),
        "selection model": wb.attempt("3PSM", am.selection_model, r, steps=(0.025,)),
        "fail-safe N": wb.attempt("fail-safe N", am.fail_safe_n, data["yi"], data["vi"]),
    }
    tl = wb.attempt("three-level", am.three_level, df["yi"], df["vi"], df["sample_id"])
    if tl.ok:
        results["egger (three-level, CR2)"] = wb.attempt("three-level Egger", am.egger_test,
                                                         tl.result)

# %%
rows = []
for name, a in results.items():
    row = {"analysis": name}
    if a.ok:
        x = a.result
        for attr in ("zval", "tau", "pval", "k0", "side", "estimate", "ci_lb", "ci_ub",
                     "chosen", "LRT", "LRT_p", "fsnum", "note"):
            if hasattr(x, attr):
                row[attr] = getattr(x, attr)
        if "estimate" in row:
            row["r"] = am.z_to_r(row["estimate"])
    else:
        row["note"] = f"not run: {a.reason}"
    rows.append(row)
out.table(pd.DataFrame(rows), "bias_tests")

# %% [markdown]
# ## Funnel plot

# %%
if res.ok:
    tf = results["trim-and-fill"]
    fig = plots.funnel_plot(res.result, trimfill=tf.result if tf.ok else None)
    out.figure(fig, "funnel")

# %% [markdown]
# ## Verdict

# %%
verdict = wb.bias_verdict(results, len(data))
out.table(pd.DataFrame({"verdict": [verdict]}), "verdict")
print(verdict)
