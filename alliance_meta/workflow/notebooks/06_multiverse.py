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
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
methods = ["DL", "REML", "PM", "SJ"]  # tau2 estimators (DL, HE, HS, SJ, ML, REML, EB, PM, FE)
tests = ["z", "knha"]  # z and/or knha (Knapp-Hartung; t for three-level, Satterthwaite t for CR2)
dependencies = ["three-level", "aggregate", "robust", "first"]  # handling of effects of one sample
min_n = [0, 50, 100]  # keep effects with n at least this
r_kinds = ["all", "zero-order"]  # all or only zero-order correlations
raters = ["all", "client", "therapist", "observer"]  # alliance rater filter
timings = ["all", "early", "late"]  # alliance timing filter
publications = ["all", "journal"]  # publication type filter
modalities = None  # list of modality filters; None means all and each modality in the data
bias = ["none", "trim-and-fill", "PET-PEESE"]  # publication-bias adjustments
rho = 0.5  # assumed correlation between effects of one sample (aggregate)
level = 0.95  # confidence level; significance means p < 1 - level
seed = 0  # recorded with the result (no step of these factors is random)
scheduler = None  # Dask scheduler address such as tcp://host:8786; None computes locally
n_jobs = 1  # local processes when scheduler is None (-1: one per core)
formats = ["svg", "png", "pdf"]  # figure formats
output_dir = "../outputs/.scratch/06_multiverse"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import alliance_meta as am
from alliance_meta.workflow import workbench as wb

out = wb.Outputs(output_dir, formats)
df = wb.select(data_path, subset)
factors = {
    "method": methods, "test": tests, "dependency": dependencies, "min_n": min_n,
    "r_kind": r_kinds, "rater": raters, "timing": timings, "publication": publications,
    "modality": modalities if modalities is not None else am.default_factors(df)["modality"],
    "bias": bias,
}
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, "
      f"{len(df)} effects; subset: {subset or 'all'}")
print("factors: " + "; ".join(f"{k} ({len(v)})" for k, v in factors.items()))

# %% [markdown]
# ## Every specification

# %%
res = am.multiverse(df, factors, scheduler=scheduler, seed=seed, level=level, rho=rho,
                    n_jobs=n_jobs, vocabularies=am.data.ENUMS)
out.table(res.table, "multiverse", "Every specification: its choices, estimate, CI and status",
          "one model per specification")
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
out.figure(am.specification_curve(res), "specification_curve",
           "Specification curve: every estimable specification ordered by its pooled r, with "
           "its CI and the choices that define it.", "one model per specification")

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
