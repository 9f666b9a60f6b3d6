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
# # 01 · What the dataset holds
#
# Counts of studies, samples and effects by treatment approach, format, delivery, population,
# alliance rater, measure and timing; sample sizes and years; the study table with references;
# and the validation report. Every effect in `studies/effects.csv` carries the verbatim quote it
# was coded from (see `studies/CODEBOOK.md`).

# %% tags=["parameters"]
data_path = None  # studies folder or effects.csv path, None means the repository studies folder
subset = ""  # pandas query over the study columns, empty means all rows
effects = "all"  # "all", "zero-order" or "partial"
formats = ["svg", "png", "pdf"]  # figure formats
output_dir = "../outputs/.scratch/01_dataset"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure

from matplotlib.ticker import MaxNLocator

import alliance_meta as am
from alliance_meta.data import studies_dir
from alliance_meta.viz import theme
from alliance_meta.workflow import workbench as wb
from alliance_meta.workflow.table1 import table1

out = wb.Outputs(output_dir, formats)
report = am.validate_studies(data_path)
df = wb.select(data_path, subset, effects)
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, "
      f"{len(df)} effects")

# %% [markdown]
# ## Validation report

# %%
report

# %% [markdown]
# ## Counts by study characteristics

# %%
columns = ["modality", "format", "delivery", "population", "alliance_rater",
           "alliance_measure", "alliance_timing", "r_kind", "stat_type", "design"]
out.table(wb.counts(df, columns), "counts",
          "Studies, samples and effects by study characteristic")

# %% [markdown]
# ## Sample sizes and publication years

# %%
with theme():
    fig = Figure(figsize=(7, 2.6))
    ax1, ax2 = fig.subplots(1, 2)
    samples = df.drop_duplicates("sample_id")
    ax1.hist(samples["n"].astype(float), bins=10, color="#0072B2")
    ax1.set_xlabel("n per sample")
    ax1.set_ylabel("samples")
    ax2.hist(df.drop_duplicates("study_id")["year"].astype(float), bins=10, color="#E69F00")
    ax2.set_xlabel("publication year")
    ax2.set_ylabel("studies")
    for a in (ax1, ax2):  # counts and years are whole numbers
        a.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
out.figure(fig, "distributions", "Sample sizes (one per sample) and publication years (one per "
           "study)")

# %% [markdown]
# ## Table 1: study characteristics

# %%
out.table(table1(df, studies_dir(data_path) / "references.bib"), "table1",
          "Table 1: characteristics of the included samples")

# %% [markdown]
# ## The effects, with their sources

# %%
table = df[["es_id", "label", "study_id", "sample_id", "n", "stat_type", "stat_value", "r_kind",
            "r", "modality", "format", "delivery", "population", "alliance_measure",
            "alliance_rater", "alliance_timing", "outcome_measure", "doi"]]
out.table(table, "effects", "The effects with their sources")
