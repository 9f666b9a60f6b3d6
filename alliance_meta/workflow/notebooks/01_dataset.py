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
formats = ["png"]  # figure formats: add "pdf" (vector, for a manuscript) or "svg"
output_dir = "../outputs/.scratch/01_dataset"  # where tables and figures go

# %%
import matplotlib

matplotlib.use("Agg")

import alliance_meta as am
from alliance_meta import viz
from alliance_meta.data import studies_dir
from alliance_meta.workflow import workbench as wb
from alliance_meta.workflow.table1 import table1

out = wb.Outputs(output_dir, formats)
report = am.validate_studies(data_path)
df = wb.select(data_path, subset, effects)
scope = "all effects" if not subset and effects == "all" else " ".join(
    x for x in (subset, f"{effects} effects" if effects != "all" else "") if x)
print(f"{df['study_id'].nunique()} studies, {df['sample_id'].nunique()} samples, "
      f"{len(df)} effects; {scope}")

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
# ## The dataset at a glance
#
# Effects by study characteristic, publication years (one bin per year) and sample sizes (one
# per sample), then the spread of the effects across the levels of each moderator.

# %%
out.figure(viz.dataset_overview(df, title=scope), "dataset_overview",
           "Effects by study characteristic, publication years and sample sizes")

# %%
moderators = ["r_kind", "alliance_rater", "modality", "format", "delivery"]
out.figure(viz.moderator_distribution(df, moderators, title=scope), "moderator_distribution",
           "Each effect (r) across the levels of the moderators, with k per level; levels "
           "with fewer than 3 effects are marked and not interpreted")

# %% [markdown]
# ## PRISMA 2020 flow
#
# Counted from the screening log (`studies/screening.csv`): every record read, where it was
# found, and why it was left out.

# %%
screening = am.data.load_screening(data_path)
prisma = am.data.prisma_counts(screening, am.load_studies(data_path))
out.figure(viz.prisma_flow(prisma, title="Primary studies"), "prisma",
           "PRISMA 2020 flow diagram of the primary studies, counted from the screening log")
out.table(viz.prisma_table(prisma), "prisma_counts",
          "PRISMA 2020 counts of the primary studies")

# %%
syn = am.data.load_syntheses(data_path)
if len(syn):
    prisma_syn = am.data.prisma_counts(screening, stream="syntheses", syntheses=syn)
    out.figure(viz.prisma_flow(prisma_syn, title="Published meta-analyses"), "prisma_syntheses",
               "PRISMA 2020 flow diagram of the published meta-analyses, counted from the "
               "screening log")
    out.table(viz.prisma_table(prisma_syn), "prisma_syntheses_counts",
              "PRISMA 2020 counts of the published meta-analyses")

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
