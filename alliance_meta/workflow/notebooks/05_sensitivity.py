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
# Does one sample drive the pooled correlation, or the way dependent effects are handled?
# Every analysis uses the run's headline model (`dependence`) and drops or adds whole
# **samples** (all effects of a sample together): leave-one-sample-out, a cumulative
# meta-analysis by sample in order of publication year, influence diagnostics per sample
# (studentized residuals, DFFITS, Cook's distance, covariance ratio, hat values; metafor's
# flagging rule) with the Baujat plot, the headline without flagged samples, and the headline
# under every handling of dependence and ρ.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator (REML or ML for the three-level model)
dependence = "three-level"  # headline model: "three-level", "robust" (CR2) or "aggregate"
rho = 0.5  # assumed correlation between effects of one sample (composites)
rhos = [0.2, 0.5, 0.8]  # correlations shown in the dependence sensitivity table
formats = ["png"]  # figure formats: add "pdf" (vector, for a manuscript) or "svg"
output_dir = "../outputs/.scratch/05_sensitivity"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")

import alliance_meta as am
from alliance_meta import plots
from alliance_meta.workflow import by_sample as bs
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects)
hm = wb.headline_model(df, dependence, method, rho)
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, {len(df)} effects")
print("Headline model:", hm.label)
if hm.note:
    print(hm.note)
hm

# %% [markdown]
# ## Leave one sample out

# %%
loso = wb.attempt("leave one sample out", bs.leave_one_sample_out, hm)
if loso.ok:
    out.table(loso.result, "leave_one_sample_out",
              "The headline model refitted without each sample in turn", hm.label)
    out.figure(plots.leave_one_out_plot(loso.result, res=hm.result, unit="sample",
                                        model_label=hm.label), "leave_one_sample_out",
               "Leave-one-sample-out: the pooled correlation without each sample (all its "
               "effects); dashed line and band: the headline estimate and CI.", hm.label)
else:
    print(loso)

# %% [markdown]
# ## Cumulative meta-analysis by sample

# %%
cum = wb.attempt("cumulative by sample", bs.cumulative_by_sample, hm)
if cum.ok:
    out.table(cum.result, "cumulative_by_sample",
              "Cumulative meta-analysis: samples added in order of publication year", hm.label)
    fitted = cum.result.dropna(subset=["estimate"])
    out.figure(plots.cumulative_plot(fitted, res=hm.result, unit="sample",
                                     model_label=hm.label), "cumulative_by_sample",
               "Cumulative meta-analysis by sample (publication year order); rows start where "
               "the headline model can first be fitted.", hm.label)
else:
    print(cum)

# %% [markdown]
# ## Influence per sample

# %%
inf = wb.attempt("influence", bs.influence_by_sample, hm)
if inf.ok:
    table, inf_model = inf.result
    print("Influence diagnostics from:", inf_model)
    out.table(table, "influence", "Influence diagnostics per sample", inf_model)
    bj = wb.attempt("Baujat", am.baujat, wb.headline_model(df, "aggregate", method, rho).fit
                    if "not available" in inf_model else hm.fit)
    if bj.ok:
        out.figure(plots.baujat_plot(bj.result, model_label=inf_model), "baujat",
                   "Baujat plot: each sample's contribution to heterogeneity against its "
                   "influence on the pooled estimate.", inf_model)
else:
    print(inf)

# %% [markdown]
# ## Without the samples flagged as influential

# %%
if inf.ok:
    flagged = list(table.loc[table["inf"], "sample_id"])
    print("flagged:", list(table.loc[table["inf"], "label"]) or "none")
    if flagged:
        without = bs.without_samples(hm, flagged)
        out.table(wb.headline_table({"all samples": hm, f"without {len(flagged)} flagged":
                                     without}),
                  "without_flagged", "The headline without the flagged samples", hm.label)

# %% [markdown]
# ## How the handling of dependent effects moves the estimate

# %%
out.table(wb.sensitivity_table(df, method, rhos, headline=dependence), "dependence_sensitivity",
          "The pooled correlation under each handling of dependent effects and \u03c1", hm.label)
