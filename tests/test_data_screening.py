"""alliance_meta.data, issues 13 and 14: the new codebook columns and vocabularies, partial r with
its covariates (metafor's ZPCOR), external provenance, samples shared across studies, the
screening log with its PRISMA 2020 counts, and the published syntheses.

Rows are fictional (study ids Fixture2020 ...), built from tests/fixtures/good.csv; each expected
problem names the file, the CSV line (header = 1) and the column.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TOL

from alliance_meta.data import (
    FIELDS,
    load_screening,
    load_studies,
    load_syntheses,
    prisma_counts,
    validate_screening,
    validate_studies,
    validate_syntheses,
)
from alliance_meta.data.schema import SCREENING_FIELDS, SYNTHESES_FIELDS
from alliance_meta.stats.escalc import partial_r_to_z

FIX = Path(__file__).parent / "fixtures"
REF = Path(__file__).parent / "reference"
COLS = [f.name for f in FIELDS]


def _rows(name: str = "good.csv") -> list[dict[str, str]]:
    with open(FIX / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]], cols: list[str]) -> Path:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows([{c: r.get(c, "") for c in cols} for r in rows])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _studies(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    _write(tmp_path / "effects.csv", rows, COLS)
    shutil.copy(FIX / "references.bib", tmp_path)
    return tmp_path


def _errors(report) -> set[tuple[int, str]]:
    return {(p.row, p.column) for p in report.errors}


# ---------------------------------------------------------------------------------------------
# partial r with its covariates: metafor's escalc(measure = "ZPCOR")


def test_partial_r_to_z_equals_metafor_zpcor():
    ref = json.loads((REF / "metafor_escalc.json").read_text())
    # dat.aloe2013: mi = preds counts the focal predictor, so the covariates are preds - 1
    yi, vi = partial_r_to_z(ref["pcor"], ref["n"], np.asarray(ref["preds"]) - 1)
    np.testing.assert_allclose(yi, ref["zpcor_yi"], rtol=TOL["closed"])
    np.testing.assert_allclose(vi, ref["zpcor_vi"], rtol=TOL["closed"])


def test_partial_r_to_z_refuses_too_few_cases():
    with pytest.raises(ValueError, match="position 1"):
        partial_r_to_z([0.2, 0.2], [50, 10], [3, 8])


def test_partial_r_row_loads_with_zpcor_variance_and_stays_partial(tmp_path):
    ref = json.loads((REF / "metafor_escalc.json").read_text())
    row = dict(_rows()[0], es_id="Fixture2020_9", stat_type="partial_r", stat_value="-.30",
               r_kind="partial", n_covariates=str(int(ref["preds"][0]) - 1), n=str(int(ref["n"][0])),
               quote=f"Fictional: partial r = −.30 controlling for three covariates (n = {int(ref['n'][0])}).")
    d = load_studies(_studies(tmp_path, [row])).iloc[0]
    assert d["r"] == pytest.approx(0.30, rel=1e-12) and d["r_kind"] == "partial"
    # vi = 1 / (n - mi - 1) as metafor's ZPCOR, with mi = n_covariates + 1 (dat.aloe2013 row 1)
    assert d["vi"] == pytest.approx(ref["zpcor_vi"][0], rel=TOL["closed"])
    assert d["yi"] == pytest.approx(np.arctanh(0.30), rel=1e-12)


def test_partial_r_needs_covariates_and_a_partial_kind(tmp_path):
    base = _rows()[0]
    bad = [dict(base, es_id="Fixture2020_7", stat_type="partial_r", r_kind="partial", n_covariates=""),
           dict(base, es_id="Fixture2020_8", stat_type="partial_r", r_kind="zero-order", n_covariates="2",
                outcome_measure="other"),
           dict(base, es_id="Fixture2020_9", stat_type="partial_r", r_kind="partial", n_covariates="48",
                outcome_measure="third")]
    report = validate_studies(_studies(tmp_path, bad))
    assert _errors(report) == {(2, "n_covariates"), (3, "r_kind"), (4, "n_covariates")}
    msgs = {(p.row, p.column): p.message for p in report.errors}
    assert "ZPCOR" in msgs[(2, "n_covariates")] and "too few cases" in msgs[(4, "n_covariates")]


# ---------------------------------------------------------------------------------------------
# the new columns and their vocabularies


NEW_VALUES = {"alliance_measure": ("WAI-O-S", "WAI-0"), "alliance_target": ("virtual-agent", "robot"),
              "outcome_type": ("well-being", "wellbeing"), "outcome_timing": ("follow-up", "later"),
              "prior_change_controlled": ("no", "partly"), "source_type": ("secondary", "tertiary"),
              "provenance": ("curated", "imported"), "qa_temporal": ("unclear", "maybe"),
              "qa_alliance_valid": ("yes", "Yes"), "qa_outcome_valid": ("no", "n"),
              "qa_adjusted": ("unclear", "?"), "qa_attrition": ("yes", "80%")}


def test_new_columns_accept_their_vocabulary(tmp_path):
    rows = [dict(r, country="Switzerland", **{c: ok for c, (ok, _) in NEW_VALUES.items()}) for r in _rows()]
    report = validate_studies(_studies(tmp_path, rows))
    assert report.ok and not report.warnings, report
    d = load_studies(tmp_path).iloc[0]
    assert d["alliance_target"] == "virtual-agent" and d["qa_attrition"] == "yes"


@pytest.mark.parametrize("column", sorted(NEW_VALUES))
def test_new_columns_refuse_unknown_values(tmp_path, column):
    row = dict(_rows()[0], **{column: NEW_VALUES[column][1]})
    report = validate_studies(_studies(tmp_path, [row]))
    (p,) = report.errors
    assert (p.file, p.row, p.column) == (str(tmp_path / "effects.csv"), 2, column)
    assert f"unknown value {NEW_VALUES[column][1]!r}" in p.message


# ---------------------------------------------------------------------------------------------
# provenance: curated rows need quote and source; external rows do not (issue 13)


def _external(row: dict[str, str]) -> dict[str, str]:
    keep = ("es_id", "study_id", "sample_id", "n", "stat_type", "stat_value", "df", "sign", "r_kind")
    return {c: row[c] for c in keep}


def test_missing_provenance_is_an_error_for_curated_rows(tmp_path):
    report = validate_studies(_studies(tmp_path, [dict(_rows()[0], provenance="")]))
    assert _errors(report) == {(2, "provenance")}


def test_external_rows_need_no_quote_source_or_moderators(tmp_path):
    rows = [dict(_external(r), provenance="external") for r in _rows()[:2]]
    rows.append(dict(_external(_rows()[0]), es_id="Other2001_1", study_id="Other2001", sample_id="o1",
                     provenance="external"))
    report = validate_studies(_studies(tmp_path, rows))
    assert report.ok, report
    # a study without a bibliography entry is only a warning for external rows
    assert [(p.row, p.column) for p in report.warnings if p.column == "study_id"] == [(4, "study_id")]
    d = load_studies(tmp_path)
    assert d["r"].tolist()[0] == pytest.approx(0.30) and d["quote"].isna().all()


def test_missing_provenance_is_a_warning_when_validating_as_external(tmp_path):
    rows = [_external(r) for r in _rows()[:2]]
    report = validate_studies(_studies(tmp_path, rows), provenance="external")
    assert report.ok, report
    assert {(p.row, p.column) for p in report.warnings if p.column == "provenance"} == {(2, "provenance"),
                                                                                      (3, "provenance")}
    # the same rows validated as curated: provenance, quote, source and moderators are missing
    strict = validate_studies(tmp_path)
    assert {"provenance", "quote", "source_url", "modality"} <= {p.column for p in strict.errors}


def test_external_rows_keep_the_other_checks(tmp_path):
    rows = [dict(_external(_rows()[0]), provenance="external", stat_value="1.3"),
            dict(_external(_rows()[0]), provenance="external", es_id="Fixture2020_2", n="2")]
    report = validate_studies(_studies(tmp_path, rows))
    assert _errors(report) == {(2, "stat_value"), (3, "n")}


def test_unknown_provenance_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match="provenance must be one of"):
        validate_studies(_studies(tmp_path, _rows()[:1]), provenance="imported")


# ---------------------------------------------------------------------------------------------
# two papers on one trial share a sample (issue 13)


def test_a_sample_may_be_shared_by_two_studies_and_must_agree_on_n(tmp_path):
    rows = _rows()
    other = [r for r in rows if r["study_id"] == "Fixture2021"][0]
    shared = dict(other, sample_id="Fixture2020_s1", n="50", df="", n1="", n2="", stat_type="r",
                  stat_value="0.25", quote="Fictional: a second paper on the same 50 patients, r = .25.")
    report = validate_studies(_studies(tmp_path, [rows[0], shared]))
    assert report.ok, report
    d = load_studies(tmp_path)
    assert d["sample_id"].nunique() == 1 and d["study_id"].nunique() == 2
    shared_n = dict(shared, n="40", quote="Fictional: a second paper on 40 of them, r = .25.")
    report = validate_studies(_studies(tmp_path, [rows[0], shared_n]))
    ((row, col),) = _errors(report)
    assert (row, col) == (3, "n")
    assert "sample 'Fixture2020_s1' has n = 50 on line 2" in report.errors[0].message


# ---------------------------------------------------------------------------------------------
# screening.csv


SCREEN_COLS = [f.name for f in SCREENING_FIELDS]
SYN_COLS = [f.name for f in SYNTHESES_FIELDS]


def _screen(**kw: str) -> dict[str, str]:
    base = {"record_id": "t-001", "stream": "studies", "citation": "Fixture, A. (2020). A study.",
            "found_via": "search", "decision": "excluded", "reason": "no-statistic",
            "note": "No statistic in the abstract."}
    return base | kw


GOOD_SCREEN = [
    _screen(record_id="t-001", decision="included", reason="", study_id="Fixture2020", note=""),
    _screen(record_id="t-002", decision="included", reason="", study_id="Fixture2021", note="", found_via="lead"),
    _screen(record_id="t-003"),
    _screen(record_id="t-004", reason="not-outcome", found_via="citation"),
    _screen(record_id="t-005", reason="not-outcome"),
    _screen(record_id="t-006", decision="not-retrieved", reason="not-retrieved"),
    _screen(record_id="t-007", decision="duplicate", reason="", duplicate_of="t-003", note="Found again."),
    _screen(record_id="t-008", decision="duplicate", reason="", duplicate_of="t-001", note="Found again.",
            found_via="lead"),
    _screen(record_id="s-001", stream="syntheses", decision="included", reason="", study_id="Meta2019", note=""),
    _screen(record_id="s-002", stream="syntheses", reason="other"),
]


@pytest.fixture
def review(tmp_path) -> Path:
    """A studies folder with fictional effects, screening log and syntheses."""
    shutil.copy(FIX / "good.csv", tmp_path / "effects.csv")
    shutil.copy(FIX / "references.bib", tmp_path)
    _write(tmp_path / "screening.csv", GOOD_SCREEN, SCREEN_COLS)
    _write(tmp_path / "syntheses.csv", [SYNTH], SYN_COLS)
    (tmp_path / "syntheses.bib").write_text("@article{Meta2019,\n  author = {Meta, M.},\n  year = {2019}\n}\n")
    return tmp_path


SYNTH = {"synthesis_id": "Meta2019", "estimate_id": "Meta2019_1", "authors": "Meta, M.", "year": "2019",
         "population": "adult-general", "construct": "alliance", "subgroup": "overall", "metric": "r",
         "estimate": ".28", "ci_lb": ".25", "ci_ub": ".30", "k": "295", "k_unit": "studies", "n": "",
         "model": "multilevel", "source_url": "https://example.org/fictional",
         "quote": "Fictional: r = .28 (95% CI .25 to .30; 295 studies)."}


def test_good_screening_log_is_clean_and_counts_as_prisma(review):
    report = validate_screening(review)
    assert report.ok and not report.problems, report
    s = load_screening(review)
    c = prisma_counts(s, load_studies(review))
    # expected counts by hand from GOOD_SCREEN (stream studies, 8 rows)
    assert c.identified == {"search": 5, "lead": 2, "citation": 1}
    assert (c.duplicates, c.screened, c.sought, c.not_retrieved, c.assessed) == (2, 6, 6, 1, 5)
    assert c.excluded == {"no-statistic": 1, "not-outcome": 2} and c.included == 2
    # good.csv: 6 effects, Fixture2020 has one sample, Fixture2021 one
    assert (c.studies, c.samples, c.effects) == (2, 2, 6)
    assert c.identified_total - c.duplicates == c.screened
    assert c.assessed == sum(c.excluded.values()) + c.included
    t = c.summary()
    assert list(t.columns) == ["stage", "label", "n"] and t.set_index("label").loc["effects", "n"] == 6
    syn = prisma_counts(s, stream="syntheses", syntheses=load_syntheses(review))
    assert (syn.identified_total, syn.duplicates, syn.included, syn.studies, syn.effects) == (2, 0, 1, 1, 1)


BAD_SCREEN = [
    # (row, expected (column, message fragment))
    (_screen(decision="included", reason="other", study_id="Fixture2020", note=""), ("reason", "no reason")),
    (_screen(decision="included", reason="", study_id="Nowhere2020", note=""), ("study_id", "not a study_id")),
    (_screen(decision="included", reason="", note=""), ("study_id", "names its study_id")),
    (_screen(reason=""), ("reason", "needs a reason")),
    (_screen(reason="not-retrieved"), ("reason", "decision not-retrieved")),
    (_screen(decision="not-retrieved", reason="no-statistic"), ("reason", "reason not-retrieved")),
    (_screen(decision="duplicate", reason=""), ("duplicate_of", "names the record_id")),
    (_screen(decision="duplicate", reason="", duplicate_of="t-999"), ("duplicate_of", "not a record_id")),
    (_screen(decision="duplicate", reason="", duplicate_of="t-007"), ("duplicate_of", "itself a duplicate")),
    (_screen(decision="duplicate", reason="", duplicate_of="s-002"), ("duplicate_of", "screened for syntheses")),
    (_screen(note=""), ("note", "needs a note")),
    (_screen(decision="rejected"), ("decision", "unknown value 'rejected'")),
    (_screen(found_via="google"), ("found_via", "unknown value 'google'")),
    (_screen(reason="no statistic"), ("reason", "unknown value 'no statistic'")),
    (_screen(record_id="t-003"), ("record_id", "duplicate record_id 't-003'")),
    (_screen(citation="=HYPERLINK(1)"), ("citation", "spreadsheet formula")),
]


@pytest.mark.parametrize("case", range(len(BAD_SCREEN)))
def test_screening_errors_name_file_row_and_column(review, case):
    bad, (col, fragment) = BAD_SCREEN[case]
    bad = dict(bad, record_id=bad["record_id"] if bad["record_id"] == "t-003" else "t-100")
    _write(review / "screening.csv", [*GOOD_SCREEN, bad], SCREEN_COLS)
    report = validate_screening(review)
    (p,) = report.errors
    assert (p.file, p.row, p.column) == (str(review / "screening.csv"), len(GOOD_SCREEN) + 2, col), report
    assert fragment in p.message
    with pytest.raises(Exception, match=col):
        load_screening(review)


def test_every_included_study_needs_its_record_and_same_doi_warns(review):
    rows = [r for r in GOOD_SCREEN if r.get("study_id") != "Fixture2021"]
    rows += [_screen(record_id="t-020", doi="10.1/x"), _screen(record_id="t-021", doi="https://doi.org/10.1/X")]
    _write(review / "screening.csv", rows, SCREEN_COLS)
    report = validate_screening(review)
    (p,) = report.errors
    assert p.column == "study_id" and "'Fixture2021'" in p.message and "no included record" in p.message
    (w,) = report.warnings
    assert (w.row, w.column) == (len(rows) + 1, "doi") and "same DOI as line" in w.message


def test_prisma_counts_refuses_an_unknown_stream(review):
    with pytest.raises(ValueError, match="stream must be one of"):
        prisma_counts(load_screening(review), stream="trials")


# ---------------------------------------------------------------------------------------------
# syntheses.csv


BAD_SYN = [
    ({"estimate": ".29"}, ("estimate", "does not appear in the quote")),
    ({"k": "296"}, ("k", "does not appear in the quote")),
    ({"ci_ub": ""}, ("ci_ub", "both confidence limits")),
    ({"ci_lb": ".30", "ci_ub": ".25"}, ("ci_lb", "exceeds ci_ub")),
    ({"authors": ""}, ("authors", "missing value")),
    ({"year": ""}, ("year", "missing value")),
    ({"population": "adults"}, ("population", "unknown value")),
    ({"construct": "cohesion-alliance"}, ("construct", "unknown value")),
    ({"estimate_id": "Other2019_1"}, ("estimate_id", "does not belong to synthesis")),
    ({"synthesis_id": "Meta2020", "estimate_id": "Meta2020_1", "year": "2020"}, ("synthesis_id", "no entry")),
    ({"k": "", "k_unit": "studies"}, ("k_unit", "without k")),
    ({"metric": "r", "estimate": "1.28", "quote": "Fictional: r = 1.28 (95% CI .25 to .30; 295 studies)."},
     ("estimate", "must lie in (-1, 1)")),
]


def test_good_syntheses_are_clean(review):
    report = validate_syntheses(review)
    assert report.ok and not report.problems, report
    d = load_syntheses(review)
    assert d.loc[0, "estimate"] == pytest.approx(0.28) and d.loc[0, "k"] == 295


@pytest.mark.parametrize("case", range(len(BAD_SYN)))
def test_syntheses_errors_name_file_row_and_column(review, case):
    change, (col, fragment) = BAD_SYN[case]
    second = dict(SYNTH, estimate_id="Meta2019_2", subgroup="internet") | change
    _write(review / "syntheses.csv", [SYNTH, second], SYN_COLS)
    if "synthesis_id" in change:  # its screening record, so that only the bibliography is missing
        _write(review / "screening.csv", [*GOOD_SCREEN, _screen(record_id="s-003", stream="syntheses",
               decision="included", reason="", study_id="Meta2020", note="")], SCREEN_COLS)
    report = validate_syntheses(review)
    assert (str(review / "syntheses.csv"), 3, col) in {(p.file, p.row, p.column) for p in report.errors}, report
    assert any(fragment in p.message for p in report.errors if p.column == col)


def test_synthesis_level_columns_agree_within_a_synthesis(review):
    _write(review / "syntheses.csv", [SYNTH, dict(SYNTH, estimate_id="Meta2019_2", journal="Other")], SYN_COLS)
    assert _errors(validate_syntheses(review)) == {(3, "journal")}


def test_a_review_without_screening_log_or_syntheses_has_empty_tables(tmp_path):
    shutil.copy(FIX / "good.csv", tmp_path / "effects.csv")
    assert validate_screening(tmp_path).ok and not validate_screening(tmp_path).problems
    assert validate_syntheses(tmp_path).ok and not validate_syntheses(tmp_path).problems
    assert load_screening(tmp_path).empty and list(load_syntheses(tmp_path).columns) == SYN_COLS
    _write(tmp_path / "syntheses.csv", [], SYN_COLS)  # the header only, as a fresh review has it
    assert validate_syntheses(tmp_path).ok and load_syntheses(tmp_path).empty
    # a table without its bibliography is still an error
    _write(tmp_path / "syntheses.csv", [SYNTH], SYN_COLS)
    (p,) = validate_syntheses(tmp_path).errors
    assert (p.file, p.row) == (str(tmp_path / "syntheses.bib"), 0) and "not found" in p.message


def test_a_review_without_a_screening_log_is_not_held_to_it(tmp_path):
    # A review whose effects were imported from elsewhere keeps no screening log (only its
    # header, as `alliance-meta init` writes it): its studies need no included record there.
    import shutil

    from alliance_meta.data import validate_screening

    src = Path(__file__).parent.parent / "studies"
    for f in ("effects.csv", "references.bib", "syntheses.csv", "syntheses.bib"):
        shutil.copy(src / f, tmp_path / f)
    header = (src / "screening.csv").read_text(encoding="utf-8").splitlines()[0]
    (tmp_path / "screening.csv").write_text(header + "\n", encoding="utf-8")
    assert validate_screening(tmp_path).ok
