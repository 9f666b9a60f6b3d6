"""Every row of the real studies/effects.csv: its numbers are in its quote, its study is in the
bibliography, and the validator finds no error in the data as committed."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from alliance_meta.data import load_studies, number_in_quote, validate_studies

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
