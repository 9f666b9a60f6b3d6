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
# # 07 · The published syntheses
#
# Every pooled estimate that published meta-analyses of the alliance–outcome association
# print in their abstracts (`studies/syntheses.csv`, each with its verbatim quote), grouped by
# population, as printed and as r (d and g converted with r = d / √(d² + 4)); this review's
# headline estimate beside the matching populations; and a second-order random-effects
# summary across syntheses that do not overlap (the rule is printed below), also shown
# without the rule. Group cohesion and rupture–repair are their own constructs and stay out
# of the summaries.

# %% tags=["parameters"]
data_path = None  # studies folder, None means the repository studies folder
subset = ""  # pandas query over our effects, applied before matching the populations below
dependence = "three-level"  # our headline model: "three-level", "robust" (CR2) or "aggregate"
method = "REML"  # tau2 estimator of our headline and of the second-order summaries
rho = 0.5  # assumed correlation between effects of one sample (aggregate)
ours = {"adult-general": "", "CBT": "modality == 'CBT'", "youth": "population == 'child-adolescent'", "group": "format == 'group'", "internet": "delivery == 'internet'", "teletherapy": "delivery == 'video'"}  # population -> subset of our effects (one line: papermill reads parameters line by line)
formats = ["png"]  # figure formats: add "pdf" (vector, for a manuscript) or "svg"
output_dir = "../outputs/.scratch/07_syntheses"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")

from alliance_meta.viz.syntheses import syntheses_forest
from alliance_meta.workflow import syntheses as sy
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
pub = sy.published(data_path)
print(f"{pub['synthesis_id'].nunique()} meta-analyses, {len(pub)} pooled estimates, "
      f"{pub['population'].nunique()} populations")
out.table(pub.groupby(["population", "construct"]).size().reset_index(name="estimates"),
          "syntheses_counts", "Published pooled estimates by population and construct")

# %% [markdown]
# ## Converted to r
#
# Estimates printed as d or g become r = d / √(d² + 4) (Borenstein et al. 2009, eq. 7.5,
# equal group sizes: the abstracts give none); "other" metrics are not converted and stay out
# of the figure.

# %%
conv = pub[pub["metric"] != "r"][["label", "metric", "estimate", "ci_lb", "ci_ub", "conversion",
                                  "r", "r_ci_lb", "r_ci_ub", "notes"]]
out.table(conv, "conversions", "Published estimates not printed as r, and their r")

# %% [markdown]
# ## This review beside the matching populations

# %%
mine = sy.ours(ours, dependence, method, rho, data_path, base=subset)
out.table(mine, "ours_by_population",
          "This review's headline model on the subset matching each published population",
          f"headline model ({dependence})")

# %% [markdown]
# ## Second-order summaries
#
# The rule for syntheses that do not overlap:

# %%
print(sy.RULE)
eligible = sy.eligible(pub)
chosen = sy.non_overlapping(pub)
out.table(pub.loc[eligible, ["label", "population", "year", "k", "k_unit", "n", "r", "r_ci_lb",
                             "r_ci_ub", "se_z"]].assign(selected=chosen[eligible.to_numpy()]),
          "second_order_selection",
          "Estimates eligible for a second-order summary, and the one per population the rule "
          "selects")
fits = {"Non-overlapping (one per population)": sy.second_order(pub, chosen, method),
        "Without the rule (all eligible, overlapping)": sy.second_order(pub, eligible, method)}
summary = sy.summary_table(fits)
label = f"random effects {method} on Fisher's z, Knapp\u2013Hartung t-test"
out.table(summary, "second_order", "Second-order random-effects summaries of published "
          "overall alliance\u2013outcome estimates", label)

# %% [markdown]
# ## Forest of the published estimates

# %%
fig = syntheses_forest(pub, mine, sy.summary_rows(summary), selected=chosen,
                       title="Published alliance\u2013outcome syntheses by population",
                       note=f"Summaries: {label}; standard errors from the printed CIs.")
out.figure(fig, "syntheses_forest",
           "Published pooled estimates by population (as r), this review's headline estimate "
           "beside matching populations, and second-order summaries with and without the "
           "non-overlap rule.", label)
