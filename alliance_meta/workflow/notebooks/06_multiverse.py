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
# # 06 · The multiverse: every defensible analytic choice at once
#
# Would the pooled alliance–outcome correlation change if we had chosen another tau²
# estimator, test, way of handling several effects of one sample, inclusion rule or
# publication-bias adjustment? Every combination of the choices below is one specification
# (Steegen et al. 2016; Voracek et al. 2019); each is fitted, and the specification curve
# (Simonsohn et al. 2020) shows them all, ordered by their estimate. Specifications that cannot
# be fitted on the data (too few effects, a method that does not apply) are listed with the
# reason, not dropped. Estimates are pooled on Fisher's z and shown as r.

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means this review's studies folder
subset = ""  # pandas query over the study columns, empty means all rows
factors = None  # factor -> list of levels; None means the grid fitted to the data (default_factors)
method = "REML"  # the headline's tau2 estimator (marked on the specification curve)
dependence = "three-level"  # the headline's dependence handling (marked on the curve)
rho = 0.5  # assumed correlation between effects of one sample (aggregate)
level = 0.95  # confidence level; significance means p < 1 - level
seed = 0  # recorded with the result (no step of these factors is random)
scheduler = None  # Dask scheduler address such as tcp://host:8786; None computes locally
n_jobs = 1  # local processes when scheduler is None (-1: one per core)
formats = ["png"]  # figure formats: add "pdf" (vector, for a manuscript) or "svg"
output_dir = "../outputs/.scratch/06_multiverse"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import alliance_meta as am
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset)
if factors is None:  # levels come from the data present, ordered as in the codebook
    factors = am.default_factors(df, am.data.ENUMS)
# the headline analysis of runs 02-05 (every row kept, no bias adjustment), marked on the
# curve when it is a specification of this grid
headline = {"method": method, "dependency": dependence, "test": "knha", "bias": "none",
            "min_n": 0, "beta": "include"}
prespecified = {f: headline.get(f, "all") for f in factors}
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, "
      f"{len(df)} effects; subset: {subset or 'all'}")
print("factors: " + "; ".join(f"{k} ({len(v)})" for k, v in factors.items()))

# %% [markdown]
# ## Every specification

# %%
# under the pipeline, row sets whose data are unchanged since the last run are read back
res = am.multiverse(df, factors, scheduler=scheduler, seed=seed, level=level, rho=rho,
                    n_jobs=n_jobs, vocabularies=am.data.ENUMS,
                    cache=wb.cache_file("multiverse.npz", subset))
out.table(res.table, "multiverse", "Every specification: its choices, estimate, CI and status",
          "one model per specification", compress=True)  # tables/multiverse.csv.gz
res

# %% [markdown]
# ## How many specifications agree
#
# The share of estimable specifications whose pooled r is significantly positive, not
# significant, or significantly negative, overall and by each choice.

# %%
summary = pd.concat([res.summary().assign(factor="", level="all specifications")]
                    + [res.summary(by=f) for f in res.varying], ignore_index=True)
summary = summary[["factor", "level"] + [c for c in summary.columns if c not in ("factor", "level")]]
out.table(summary, "multiverse_summary", "Share of specifications significantly positive, "
          "not significant or negative, overall and by choice", "one model per specification")

# %%
out.figure(am.share_significant_plot(res), "multiverse_share_significant",
           "Share of estimable specifications by significance and direction, by choice.",
           "one model per specification")

# %% [markdown]
# ## The specification curve

# %%
curve = wb.attempt("pre-specified specification", am.specification_curve, res,
                   prespecified=prespecified)
if not curve.ok:  # the headline's choices are not one specification of this grid
    print(curve)
    curve = wb.attempt("specification curve", am.specification_curve, res)
out.figure(curve.result, "specification_curve",
           "Specification curve: every estimable specification ordered by its pooled r, with "
           "its CI and the choices that define it; the pre-specified (headline) analysis is "
           "marked.", "one model per specification")

# %%
out.figure(am.estimate_histogram(res), "multiverse_histogram",
           "Distribution of the pooled r over the estimable specifications.",
           "one model per specification")

# %% [markdown]
# ## Which choices move the estimate most
#
# An ANOVA-style decomposition of r over the estimable specifications: `eta2` is the share of
# the variance between a factor's levels, `unique` what the factor adds to the other main
# effects; the last row is what the main effects leave to their interactions.

# %%
dec = wb.attempt("decomposition", res.decompose)
if dec.ok:
    out.table(dec.result, "multiverse_decomposition",
              "How much of the variation in r each choice explains")
else:
    print(dec)

# %% [markdown]
# ## Why specifications could not be fitted

# %%
reasons = (res.table.loc[res.table["status"] != "ok", "reason"].value_counts()
           .rename_axis("reason").reset_index(name="specifications"))
out.table(reasons, "multiverse_not_estimable", "Why specifications could not be fitted")

# %% [markdown]
# ## Combinations that are not specifications
#
# Combinations of choices that cannot define a model on these data (for example a three-level
# model by a non-likelihood estimator, trim-and-fill under dependent effects, or a filter that
# keeps the same rows as another) are not fitted; each is listed here with the reason.

# %%
excluded = (res.excluded["reason"].value_counts().rename_axis("reason")
            .reset_index(name="combinations")) if len(res.excluded) else pd.DataFrame(
    {"reason": [], "combinations": []})
out.table(excluded, "multiverse_excluded", "Combinations of choices that are not specifications, "
          "by reason")
