"""alliance_meta.data and the CLI: validation of every kind of bad input, loading, appending.

The fixtures in tests/fixtures/ are fictional rows (study ids Fixture2020, Fixture2021, ...), one file
per kind of problem. Each expected problem names the CSV line (header = 1) and the column.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alliance_meta import data
from alliance_meta.data import (
    ENUMS,
    FIELDS,
    StudiesValidationError,
    append_rows,
    load_studies,
    number_in_quote,
    validate_studies,
)
from alliance_meta.workflow.cli import app

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parents[1]

# fixture -> every error it must produce: (CSV line, column, part of the message)
BAD = {
    # line 2-3 hold a valid row whose quote has a line break, so the r = 1.2 row starts on line 4
    "bad_r_range.csv": [(4, "stat_value", "r = 1.2, outside"), (5, "stat_value", "r = 1.225, outside")],
    "bad_n_small.csv": [(2, "n", "below the minimum of 4"), (3, "n", "below the minimum of 4")],
    "bad_category.csv": [(2, "modality", "did you mean 'CBT'"), (3, "format", "unknown value 'individul'"),
                         (4, "sign", "unknown value '2'")],
    "bad_missing_required.csv": [(2, "outcome_measure", "missing value"), (3, "year", "missing value")],
    "bad_duplicate_es_id.csv": [(3, "es_id", "duplicate es_id 'Fixture2020_1' (first on line 2)")],
    # line 4 differs in n too, but its notes say why
    "bad_sample_n.csv": [(3, "n", "has n = 50 on line 2 but n = 48 here")],
    "bad_missing_quote.csv": [(2, "quote", "missing quote")],
    "bad_not_in_quote.csv": [(2, "stat_value", "-.32 does not appear"), (3, "n", "51 does not appear"),
                             (4, "stat_value", "-.20 does not appear")],
    "bad_no_bib.csv": [(2, "study_id", "'Nobib2022' has no entry")],
    "bad_formula.csv": [(2, "notes", "spreadsheet formula ('=')"), (3, "diagnosis", "formula ('@')"),
                        (4, "country", "formula ('+')"), (5, "outcome_measure", "formula ('-')")],
    "bad_html.csv": [(2, "quote", "HTML or script"), (3, "notes", "HTML or script")],
    "bad_t_without_df.csv": [(2, "df", "a t needs its df")],
    "bad_negative_stat.csv": [(2, "stat_value", "F cannot be negative"),
                              (3, "stat_value", "chi2 cannot be negative")],
    "bad_not_utf8.csv": [(3, "", "not UTF-8 (byte 0xe9")],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_problem_is_reported_with_file_row_and_column(name):
    path = FIX / name
    report = validate_studies(path)
    assert not report.ok
    got = {(p.row, p.column) for p in report.errors}
    assert got == {(row, col) for row, col, _ in BAD[name]}, report
    for row, col, fragment in BAD[name]:
        (p,) = [p for p in report.errors if (p.row, p.column) == (row, col)]
        assert p.file == str(path)
        assert fragment in p.message
        assert str(p).startswith(f"{path}:{row}: {col + ': ' if col else ''}")


def test_good_fixture_is_clean():
    report = validate_studies(FIX / "good.csv")
    assert report.ok and not report.problems, report


def test_beta_above_half_is_a_warning_not_an_error():
    report = validate_studies(FIX / "warn_beta_large.csv")
    assert report.ok
    (w,) = [p for p in report.warnings if p.column == "stat_value"]
    assert (w.row, w.severity) == (2, "warning") and "|beta| = 0.62" in w.message
    assert str(w).endswith(w.message) and ": warning: " in str(w)


def test_missing_files_are_problems(tmp_path):
    report = validate_studies(tmp_path)
    assert {(Path(p.file).name, p.row) for p in report.errors} == {("effects.csv", 0), ("references.bib", 0)}


def test_missing_column_and_ragged_row(tmp_path):
    text = (FIX / "good.csv").read_text(encoding="utf-8").splitlines()
    header = text[0].replace(",notes", "").replace(",outcome_measure", "")
    rows = [",".join(text[1].split(",")[:3])]  # a row cut short after three fields
    (tmp_path / "effects.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    shutil.copy(FIX / "references.bib", tmp_path)
    report = validate_studies(tmp_path)
    # a column curated rows need is an error; an optional one a warning (its cells are empty)
    assert (1, "outcome_measure") in {(p.row, p.column) for p in report.errors}
    assert (1, "notes") in {(p.row, p.column) for p in report.warnings}
    assert any(p.row == 2 and "has 3 fields" in p.message for p in report.errors)


def test_duplicate_bib_key(tmp_path):
    shutil.copy(FIX / "good.csv", tmp_path / "effects.csv")
    bib = (FIX / "references.bib").read_text()
    (tmp_path / "references.bib").write_text(bib + "\n@article{Fixture2020,\n  title = {again}\n}\n")
    (p,) = validate_studies(tmp_path).errors
    assert (Path(p.file).name, p.row, p.column) == ("references.bib", 16, "Fixture2020")
    assert "duplicate bibliography key (first on line 2)" in p.message


# number_in_quote: (value, quote, expected)
QUOTES = [
    (".23", "an overall correlation of .23 was observed", True),
    ("0.23", "r = .23", True),
    (".310", "(r=.310, P=.01)", True),
    ("-0.23", "r = \u2212.23", True),  # U+2212 minus
    ("-.23", "r = \u2013.23", True),  # en dash used as minus
    ("-.23", "r = - .23", True),  # space after the minus
    ("-0.301", "r = -0,301; p = 0,011", True),  # comma decimal
    ("56", "Fifty-six patients with anorexia nervosa", True),
    ("127", "one hundred and twenty-seven clients", True),
    ("1052", "Ns = 1,052 and 11,029", True),
    ("-4.37", "t206=\u22124.37, P<.001", True),
    (".33", "rs = .13\u2013.33", True),  # a range: the dash is not a minus
    ("-.33", "rs = .13\u2013.33", False),
    (".24", "\u03b2 = -.24", False),  # the sign must match
    ("-.24", "\u03b2 = .24", False),
    ("-0.39", "(\u03b2 = -. 0.39, p = 0.001)", False),  # garbled print: sign not attached
    ("37", "p = .037", False),  # not part of another number
    ("234", "1,234 patients", False),
    ("206", "t206 = 4.37", False),  # glued to a letter
    ("50", "fifty-six", False),
    ("6", "fifty-six", False),
    ("0.3", "r = .31", False),
    ("abc", "abc", False),
]


@pytest.mark.parametrize(("value", "quote", "expected"), QUOTES)
def test_number_in_quote(value, quote, expected):
    assert number_in_quote(value, quote) is expected


def test_load_studies_computes_r_yi_vi():
    d = load_studies(FIX / "good.csv").set_index("es_id")
    # expected r from the conversion formulas in CODEBOOK.md, times sign
    r = {
        "Fixture2020_1": -0.30 * -1,  # r as printed, sign -1
        "Fixture2020_2": 2.5 / math.sqrt(2.5**2 + 46),  # t(46), Rosenthal (1991)
        "Fixture2021_1": 0.5 / math.sqrt(0.5**2 + (40**2) / (20 * 20)),  # d, Borenstein et al. eq. 7.5
        "Fixture2021_2": math.sqrt(4.0 / (4.0 + 38)),  # F(1, 38), Rosenthal (1991)
        "Fixture2021_3": math.sqrt(3.6 / 40),  # phi from chi2(1), n = 40
        "Fixture2021_4": 0.98 * 0.20 + 0.05,  # Peterson & Brown (2005): .98 beta + .05 lambda, sign 1
    }
    # vi = 1/(n-3); partial t with residual df: 1/(df-1) (Aloe & Thompson 2013); beta without df: 1/(n-3)
    vi = {"Fixture2020_1": 1 / 47, "Fixture2020_2": 1 / 45, "Fixture2021_1": 1 / 37,
          "Fixture2021_2": 1 / 37, "Fixture2021_3": 1 / 37, "Fixture2021_4": 1 / 37}
    for es, rr in r.items():
        assert d.loc[es, "r"] == pytest.approx(rr, rel=1e-12)
        assert d.loc[es, "yi"] == pytest.approx(math.atanh(rr), rel=1e-12)
        assert d.loc[es, "vi"] == pytest.approx(vi[es], rel=1e-12)


def test_load_studies_columns_and_dtypes():
    d = load_studies(FIX / "good.csv")
    assert list(d.columns) == [f.name for f in FIELDS] + ["r", "yi", "vi"]
    assert str(d["n"].dtype) == "Int64" and str(d["year"].dtype) == "Int64"
    assert d["stat_value"].dtype == np.float64 and d["df"].dtype == np.float64
    assert isinstance(d["modality"].dtype, pd.StringDtype)
    assert d["doi"].isna().all()  # empty optional text is missing, not ""
    assert d.loc[0, "stat_value"] == -0.30 and d.loc[1, "alliance_session"] == 3


def test_load_studies_raises_with_every_error():
    with pytest.raises(StudiesValidationError) as e:
        load_studies(FIX / "bad_category.csv")
    msg = str(e.value)
    for line, col in ((2, "modality"), (3, "format"), (4, "sign")):
        assert f"bad_category.csv:{line}: {col}:" in msg
    assert len(e.value.report.errors) == 3


def test_report_summary_and_html_escape_text():
    report = validate_studies(FIX / "bad_html.csv")
    s = report.summary()
    assert list(s.columns) == ["file", "row", "column", "severity", "message"]
    assert len(s) == len(report.problems)
    page = report._repr_html_()
    assert "<script" not in page
    hostile = data.Problem("<b>x</b>.csv", 2, "quote", "<script>alert(1)</script>")
    page = data.ValidationReport((hostile,), ("<b>x</b>.csv",), 1)._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>x</b>" not in page


# ---------------------------------------------------------------------------------------------
# appending


@pytest.fixture
def studies(tmp_path) -> Path:
    shutil.copy(FIX / "good.csv", tmp_path / "effects.csv")
    shutil.copy(FIX / "references.bib", tmp_path / "references.bib")
    return tmp_path


def test_append_rows_keeps_existing_bytes_and_appends(studies):
    before = (studies / "effects.csv").read_bytes()
    bib_before = (studies / "references.bib").read_bytes()
    res = append_rows(FIX / "new_study.csv", studies, bib=FIX / "new_study.bib")
    assert res.added == ("Newstudy2023_1",) and res.bib_keys == ("Newstudy2023",)
    after = (studies / "effects.csv").read_bytes()
    assert after.startswith(before)
    assert after[len(before):].decode().startswith("Newstudy2023_1,Newstudy2023,")
    assert (studies / "references.bib").read_bytes().startswith(bib_before)
    d = load_studies(studies)
    assert d["es_id"].tolist()[-1] == "Newstudy2023_1" and len(d) == 7
    assert sorted(p.name for p in studies.iterdir()) == ["effects.csv", "references.bib"]  # no temp files


def test_append_rows_refuses_duplicates_and_writes_nothing(studies):
    before = (studies / "effects.csv").read_bytes()
    with pytest.raises(StudiesValidationError) as e:
        append_rows(FIX / "good.csv", studies)
    dup = [p for p in e.value.report.errors if p.column == "es_id"]
    assert len(dup) == 6 and all(p.file == str(FIX / "good.csv") for p in dup)
    assert "duplicate es_id 'Fixture2020_1' (first on " in dup[0].message
    assert (studies / "effects.csv").read_bytes() == before


def test_append_rows_needs_the_bib_entry(studies):
    with pytest.raises(StudiesValidationError) as e:
        append_rows(FIX / "new_study.csv", studies)
    (p,) = e.value.report.errors
    assert (p.file, p.row, p.column) == (str(FIX / "new_study.csv"), 2, "study_id")


def test_append_rows_refuses_a_bib_key_already_there(studies):
    with pytest.raises(StudiesValidationError) as e:
        append_rows(FIX / "new_study.csv", studies, bib=FIX / "references.bib")
    assert any(p.column == "Fixture2020" and "already in" in p.message for p in e.value.report.errors)


def test_append_rows_from_a_dataframe(studies):
    new = pd.read_csv(FIX / "new_study.csv", dtype=str, keep_default_na=False)
    (studies / "references.bib").write_text(
        (studies / "references.bib").read_text() + (FIX / "new_study.bib").read_text())
    res = append_rows(new, studies)
    assert res.added == ("Newstudy2023_1",)
    assert load_studies(studies)["r"].iloc[-1] == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------
# command line

runner = CliRunner()


def test_cli_validate_prints_file_row_column(monkeypatch):
    monkeypatch.chdir(FIX.parent)  # files below the working directory are shown relative to it
    res = runner.invoke(app, ["validate", str(FIX / "bad_category.csv")])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert "fixtures/bad_category.csv:3: format: unknown value 'individul'; allowed: individual, group, couple, family" in lines
    assert lines[-1].startswith("3 error(s), 0 warning(s) in 3 row(s)")
    ok = runner.invoke(app, ["validate", str(FIX / "good.csv")])
    assert ok.exit_code == 0, ok.output


def test_cli_add_study_runs_the_pipeline_when_present(studies, monkeypatch):
    calls = []
    fake = types.ModuleType("alliance_meta.workflow.pipeline")
    fake.run_pipeline = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "alliance_meta.workflow.pipeline", fake)
    res = runner.invoke(app, ["add-study", str(FIX / "new_study.csv"), "--bib", str(FIX / "new_study.bib"),
                              "--studies", str(studies)])
    assert res.exit_code == 0, res.output
    assert "Added 1 row(s)" in res.output and "Newstudy2023_1" in res.output
    assert calls == [{"only_changed": True}]


def test_cli_add_study_without_pipeline_and_refusal(studies, monkeypatch):
    monkeypatch.setitem(sys.modules, "alliance_meta.workflow.pipeline", None)  # import raises ModuleNotFoundError
    args = ["add-study", str(FIX / "new_study.csv"), "--bib", str(FIX / "new_study.bib"), "--studies", str(studies)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "pipeline is not available yet" in res.output
    before = (studies / "effects.csv").read_bytes()
    again = runner.invoke(app, ["add-study", str(FIX / "new_study.csv"), "--studies", str(studies)])
    assert again.exit_code == 1 and "Nothing was added" in again.output
    assert "es_id: duplicate es_id 'Newstudy2023_1'" in again.output
    assert (studies / "effects.csv").read_bytes() == before


# ---------------------------------------------------------------------------------------------
# schema: datapackage.json and CODEBOOK.md agree with data.FIELDS


def test_committed_datapackage_is_what_write_datapackage_writes(tmp_path):
    committed = (ROOT / "studies" / "datapackage.json").read_text(encoding="utf-8")
    for name in ("effects.csv", "screening.csv", "syntheses.csv"):  # it describes the tables present
        shutil.copy(ROOT / "studies" / name, tmp_path)
    written = data.write_datapackage(tmp_path).read_text(encoding="utf-8")
    assert committed == written
    enum = {f["name"]: f["constraints"].get("enum") for f in json.loads(committed)["resources"][0]["schema"]["fields"]
            if "constraints" in f}
    assert enum["modality"] == list(ENUMS["modality"])


def test_datapackage_validates_with_frictionless(tmp_path):
    import frictionless  # a declared dependency (pyproject.toml)

    assert frictionless.validate(str(ROOT / "studies" / "datapackage.json")).valid
    # the enum constraints are live: an unknown format fails
    shutil.copy(ROOT / "studies" / "datapackage.json", tmp_path)
    shutil.copy(FIX / "bad_category.csv", tmp_path / "effects.csv")
    report = frictionless.validate(str(tmp_path / "datapackage.json"))
    assert not report.valid
    assert any("individul" in e.message for t in report.tasks for e in t.errors)


def _codebook_table(heading: str) -> dict[str, list[str]]:
    """The 4-column table of the CODEBOOK.md section that starts with ``heading``."""
    text = (ROOT / "studies" / "CODEBOOK.md").read_text(encoding="utf-8")
    section = text.split("\n" + heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("column", "---"):
            for name in cells[0].split(","):
                rows[name.strip()] = cells[1:]
    return rows


@pytest.mark.parametrize(("heading", "fields"), [("## Columns", FIELDS),
                                                  ("## screening.csv", data.SCREENING_FIELDS),
                                                  ("## syntheses.csv", data.SYNTHESES_FIELDS)])
def test_codebook_lists_the_same_columns_types_and_values(heading, fields):
    table = _codebook_table(heading)
    assert list(table) == [f.name for f in fields]
    for f in fields:
        typ, required, rule = table[f.name]
        assert typ == f.type, f.name
        assert (required == "yes") is f.required, f.name
        assert (required == "curated") is f.curated, f.name
        if f.enum is not None:
            assert re.findall(r"`([^`]+)`", rule) == [str(e) for e in f.enum], f.name
