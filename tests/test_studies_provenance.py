"""Every row of the real studies/effects.csv: its numbers are in its quote, its study is in the
bibliography, and the validator finds no error in the data as committed; the same for the
screening log and the published syntheses, whose PRISMA counts add up to the data."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from alliance_meta.data import (
    load_screening,
    load_studies,
    load_syntheses,
    number_in_quote,
    prisma_counts,
    validate_screening,
    validate_studies,
    validate_syntheses,
)

STUDIES = Path(__file__).parents[1] / "studies"
with open(STUDIES / "effects.csv", encoding="utf-8", newline="") as fh:
    ROWS = list(csv.DictReader(fh))
BIB_KEYS = set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", (STUDIES / "references.bib").read_text(encoding="utf-8")))


def test_there_are_rows():
    assert len(ROWS) >= 10  # wave 1 merged 10 effects; the file only grows


@pytest.mark.parametrize("row", ROWS, ids=[r["es_id"] for r in ROWS])
def test_numbers_are_in_the_quote(row):
    assert row["quote"].strip(), "no quote"
    assert number_in_quote(row["stat_value"], row["quote"]), f"stat_value {row['stat_value']} not in quote"
    assert number_in_quote(row["n"], row["quote"]), f"n {row['n']} not in quote"


@pytest.mark.parametrize("row", ROWS, ids=[r["es_id"] for r in ROWS])
def test_study_has_a_bib_entry_and_a_source(row):
    assert row["study_id"] in BIB_KEYS
    assert row["source_url"].startswith("http")


def test_validator_finds_no_error():
    report = validate_studies(STUDIES)
    assert report.ok, "\n".join(map(str, report.errors))


def test_every_bib_entry_has_rows():
    assert BIB_KEYS == {r["study_id"] for r in ROWS}


def test_loads_with_finite_effects():
    d = load_studies(STUDIES)
    assert len(d) == len(ROWS) and d["es_id"].is_unique
    assert np.all(np.abs(d["r"]) < 1) and np.all(np.isfinite(d["yi"])) and np.all(d["vi"] > 0)


# ---------------------------------------------------------------------------------------------
# studies/screening.csv and studies/syntheses.csv as committed (issue 14)

with open(STUDIES / "syntheses.csv", encoding="utf-8", newline="") as fh:
    SYNTH_ROWS = list(csv.DictReader(fh))


def test_screening_log_and_syntheses_validate():
    for report in (validate_screening(STUDIES), validate_syntheses(STUDIES)):
        assert report.ok, "\n".join(map(str, report.errors))


@pytest.mark.parametrize("row", SYNTH_ROWS, ids=[r["estimate_id"] for r in SYNTH_ROWS])
def test_synthesis_numbers_are_in_the_quote(row):
    for col in ("estimate", "ci_lb", "ci_ub", "k", "n"):
        if row[col].strip():
            assert number_in_quote(row[col], row["quote"]), f"{col} {row[col]} not in quote"
    assert row["authors"].strip() and row["year"].strip() and row["source_url"].startswith("http")


def test_prisma_counts_add_up_and_match_the_data():
    s = load_screening(STUDIES)
    d = load_studies(STUDIES)
    c = prisma_counts(s, d)
    assert c.identified_total == len(s[s["stream"] == "studies"])
    assert c.identified_total - c.duplicates == c.screened == c.sought
    assert c.sought - c.not_retrieved == c.assessed == sum(c.excluded.values()) + c.included
    # every study of effects.csv is an included record, and nothing else is
    assert (c.studies, c.samples, c.effects) == (d["study_id"].nunique(), d["sample_id"].nunique(), len(d))
    syn = prisma_counts(s, stream="syntheses", syntheses=load_syntheses(STUDIES))
    assert syn.effects == len(SYNTH_ROWS) and syn.studies == len({r["synthesis_id"] for r in SYNTH_ROWS})


def test_cohesion_and_rupture_repair_are_not_coded_as_alliance():
    syn = load_syntheses(STUDIES)
    for sid in ("Burlingame2011", "Burlingame2018"):
        assert set(syn.loc[syn["synthesis_id"] == sid, "construct"]) == {"cohesion"}
