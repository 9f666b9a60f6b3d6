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
# Do small or unpublished studies bend the pooled correlation? A contour-enhanced funnel plot
# centred on the run's headline model; the regression test for funnel asymmetry in the same
# dependence handling (three-level Egger test with CR2 inference, or Egger's meta-regression
# with CR2 standard errors by sample; Rodgers & Pustejovsky 2021); and, on one composite per
# sample (they assume independent effects), Egger's and Begg's tests, trim-and-fill,
# PET-PEESE, the three-parameter selection model and fail-safe N, with the findings in words.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator (REML or ML for the three-level model)
dependence = "three-level"  # headline model: "three-level", "robust" (CR2) or "aggregate"
rho = 0.5  # assumed correlation between effects of one sample (composites)
formats = ["png"]  # figure formats: add "pdf" (vector, for a manuscript) or "svg"
output_dir = "../outputs/.scratch/04_publication_bias"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

from alliance_meta.workflow import bias as wbias
from alliance_meta.workflow import report
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects)
hm = wb.headline_model(df, dependence, method, rho)
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, {len(df)} effects")
print("Headline model:", hm.label)
if hm.note:
    print(hm.note)

# %% [markdown]
# ## Tests and adjustments

# %%
results, comp = wbias.bias_analyses(hm)
print("Methods that assume independent effects use:", comp.label)
out.table(wbias.bias_table(results, hm, comp), "bias_tests",
          "Small-study effects: regression tests, trim-and-fill, PET-PEESE, selection model, "
          "fail-safe N (the model column names the model of each)", hm.label)

# %% [markdown]
# ## Funnel plot
#
# The centre line and pseudo-confidence funnel are the headline model's; the points are the
# units it pools (effects, or per-sample composites). Trim-and-fill's imputed composites are
# drawn when the headline pools composites.

# %%
tf = results["trim-and-fill"]
fill = tf.result if tf.ok and dependence == "aggregate" else None
out.figure(wb.funnel(hm, trimfill=fill), "funnel",
           "Contour-enhanced funnel plot; centre line and funnel from the headline model"
           + ("; open circles: trim-and-fill's imputed composites" if fill is not None else ""),
           hm.label)

# %% [markdown]
# ## In words

# %%
verdict = report.bias_sentences(results, df["sample_id"].nunique())
out.table(pd.DataFrame({"verdict": [verdict]}), "verdict",
          "Small-study effects in words", hm.label)
print(verdict)
