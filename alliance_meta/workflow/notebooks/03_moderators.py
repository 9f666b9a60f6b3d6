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
# Does the alliance–outcome correlation differ by partial vs zero-order correlation, alliance
# rater, outcome rater, timing, treatment approach, format, delivery, design or publication
# type, or with publication year? Each moderator is fitted in the run's headline model
# (`dependence`): a three-level meta-regression with its omnibus F test (t-test, "contain"
# df), a CR2 meta-regression with the HTZ Wald test, or a meta-regression of per-sample
# composites. A permutation test permutes per-sample composites, so a sample's effects move
# together. Levels with fewer than 3 effects are listed but **not interpreted**; an orchard
# plot shows every level's effects and its pooled estimate.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
method = "REML"  # tau2 estimator (REML or ML for the three-level model)
dependence = "three-level"  # headline model: "three-level", "robust" (CR2) or "aggregate"
rho = 0.5  # assumed correlation between effects of one sample (composites)
moderators = ["r_kind", "alliance_rater", "outcome_rater", "alliance_timing", "modality",
              "format", "delivery", "design", "publication_type"]  # categorical moderators
continuous = ["year"]  # continuous moderators, centred at their mean
n_perm = 1000  # permutations for the permutation p-values
seed = 0  # random seed of the permutation test
formats = ["png"]  # figure formats: add "pdf" (vector, for a manuscript) or "svg"
output_dir = "../outputs/.scratch/03_moderators"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")

from alliance_meta import plots
from alliance_meta.workflow import moderators as md
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset, effects)
hm = wb.headline_model(df, dependence, method, rho)
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, {len(df)} effects")
print("Headline model:", hm.label)
if hm.note:
    print(hm.note)

# %% [markdown]
# ## Each moderator in the headline model

# %%
results = {m: md.moderator_analysis(hm, m, n_perm=n_perm, seed=seed) for m in moderators}
results.update({m: md.moderator_analysis(hm, m, continuous=True, n_perm=n_perm, seed=seed)
                for m in continuous})
for r in results.values():
    print(r)
    if r.note:
        print("  ", r.note)
out.table(md.tests_table(results), "moderator_tests",
          "Omnibus test of each moderator in the headline model, with its permutation p",
          hm.label)

# %% [markdown]
# ## Pooled correlation per level
#
# The headline model fitted within each level; `interpret` is False for levels with fewer
# than 3 effects (reported, not interpreted).

# %%
out.table(md.levels_table(results), "moderator_levels",
          "Pooled correlation per moderator level (headline model per level); levels with "
          "k < 3 are not interpreted", hm.label)

# %%
out.figure(md.orchard(hm, results, title="Alliance\u2013outcome correlation by moderator level"),
           "orchard", "Orchard plot: every effect by moderator level, with each level's pooled "
           "estimate, CI and (where the model has one) prediction interval; \u2020 marks levels "
           "with k < 3, not interpreted.", f"per level, {hm.label}")

# %% [markdown]
# ## Publication year

# %%
for m in continuous:
    fit = results[m].omnibus.result
    if fit is not None and hasattr(fit, "X"):
        out.table(fit.summary(), f"{m}_regression",
                  f"Meta-regression on {m} (centred) in the headline model", hm.label)
        out.figure(plots.bubble_plot(fit, f"{m}_c", xlabel=f"{m} (centred)"), f"bubble_{m}",
                   f"Bubble plot of the correlation against {m} (centred), with the fitted "
                   "line and its CI.", hm.label)
    else:
        print(results[m])

# %% [markdown]
# ## In words

# %%
print("\n".join(md.sentences(results)))
