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
# # 03 · Moderators
#
# Does the alliance–outcome correlation differ by treatment approach, format, delivery,
# population, alliance rater, measure or timing, or by publication year? Subgroup tests
# (Q-between, separate tau² per subgroup), meta-regressions with permutation p-values, and a
# bubble plot for year. Levels with a single effect are listed but not pooled.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator
test = "knha"  # "z" or "knha"
moderators = ["modality", "format", "delivery", "population", "alliance_rater",
              "alliance_measure", "alliance_timing"]  # categorical moderators to test
n_perm = 1000  # permutations for the meta-regression p-values
seed = 0  # random seed of the permutation test
formats = ["svg", "png", "pdf"]  # figure formats
output_dir = "../outputs/.scratch/03_moderators"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import alliance_meta as am
from alliance_meta import plots
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects)
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, {len(df)} effects")

# %% [markdown]
# ## Subgroups

# %%
levels, tests = [], []
for mod in moderators:
    table, test_result = wb.subgroup_table(df, mod, method=method, test=test)
    levels.append(table)
    if test_result.ok:
        r = test_result.result
        tests.append({"moderator": mod, "groups": len(r.groups), "Q_between": r.Q_between,
                      "df": r.df_between, "pval": r.Q_between_p})
    else:
        tests.append({"moderator": mod, "note": f"not testable: {test_result.reason}"})
out.table(pd.concat(levels, ignore_index=True), "subgroups")
out.table(pd.DataFrame(tests), "subgroup_tests")

# %% [markdown]
# ## Meta-regression on publication year

# %%
reg = wb.attempt("year", am.meta_regression, df["yi"], df["vi"], mods=df[["year"]].astype(float),
                 formula="~ year", method=method, test=test)
if reg.ok:
    perm = am.permutation_test(reg.result, n_perm=n_perm, seed=seed)
    coefs = reg.result.summary().merge(perm.summary()[["term", "pval_perm"]], on="term")
    out.table(coefs, "year_regression")
    out.figure(plots.bubble_plot(reg.result, "year"), "bubble_year")
reg
