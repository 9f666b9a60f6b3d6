"""The PRISMA 2020 flow diagram (Page et al. 2021, BMJ 372:n71, Figure 1): its arithmetic,
its counts table, and that every box's text fits inside the box at every saving resolution."""

from __future__ import annotations

import pytest

from alliance_meta.viz.prisma import check_prisma_counts, prisma_flow, prisma_table

# a flow that adds up: 431 - 14 = 417 screened; 417 - 9 = 408 assessed; 408 - 400 = 8 included
COUNTS = {
    "identified": {"database searches": 420, "leads from colleagues and reference lists": 11},
    "duplicates": 14, "screened": 417, "not_retrieved": 9,
    "excluded": {"no-statistic": 252, "not-outcome": 56, "not-convertible": 40, "other": 52},
    "included": {"studies": 8, "samples": 8, "effects": 11},
}


def _fits(fig, dpi: float) -> list[str]:
    fig.set_dpi(dpi)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith("prisma-box")}
    bad = []
    texts = [t for t in ax.texts if (t.get_gid() or "").startswith("prisma-text")]
    assert len(texts) == 9 and len(boxes) == 9
    for t in texts:
        tb = t.get_window_extent(renderer)
        bb = boxes[t.get_gid().replace("text", "box")].get_window_extent(renderer)
        if not (bb.x0 < tb.x0 and tb.x1 < bb.x1 and bb.y0 < tb.y0 and tb.y1 < bb.y1):
            bad.append(f"{t.get_gid()} at {dpi} dpi: text {tb.bounds} box {bb.bounds}")
    return bad


@pytest.mark.parametrize("dpi", [72, 100, 150, 300])
def test_text_fits_in_every_box(dpi):
    fig = prisma_flow(COUNTS, title="PRISMA 2020 flow diagram")
    assert not _fits(fig, dpi)


def test_long_reasons_and_many_sources_still_fit():
    counts = dict(COUNTS)
    counts["identified"] = {f"source number {i} with a long descriptive name": 10 for i in range(6)}
    counts["duplicates"], counts["screened"] = 20, 40
    counts["not_retrieved"] = 2
    counts["excluded"] = {"a reason that a reviewer wrote out at considerable length": 20,
                          "no-statistic": 10}
    assert check_prisma_counts(counts) == []
    fig = prisma_flow(counts)
    assert not _fits(fig, 300)


def test_boxes_show_the_counts():
    fig = prisma_flow(COUNTS)
    text = {t.get_gid(): t.get_text() for t in fig.axes[0].texts if t.get_gid()}
    assert "database searches (n = 420)" in text["prisma-text-identified"]
    assert "(n = 14)" in text["prisma-text-removed"]
    assert "(n = 417)" in text["prisma-text-screened"]
    assert "(n = 408)" in text["prisma-text-assessed"]  # sought 417 - not retrieved 9
    lines = text["prisma-text-excluded"].splitlines()
    assert lines[1].endswith("(n = 252)") and lines[-1].startswith("  other")  # other last
    assert "Effect sizes (n = 11)" in text["prisma-text-included"]


def test_counts_that_do_not_add_up_are_an_error():
    bad = {**COUNTS, "screened": 400}
    problems = check_prisma_counts(bad)
    assert problems[0] == "identified - duplicates = 417 but screened = 400"
    with pytest.raises(ValueError, match="do not add up"):
        prisma_flow(bad)
    with pytest.raises(ValueError, match="missing 'excluded'"):
        prisma_flow({k: v for k, v in COUNTS.items() if k != "excluded"})
    fig = prisma_flow(bad, check=False)  # drawn, with the mismatch written under it
    assert any("do not add up" in t.get_text() for t in fig.axes[0].texts)


def test_counts_table():
    t = prisma_table(COUNTS)
    assert list(t.columns) == ["stage", "box", "n"]
    assert t.loc[t["box"] == "Reports assessed for eligibility", "n"].item() == 408
    assert t.loc[t["stage"] == "Included", "n"].tolist() == [8, 8, 8, 11]
    excluded = t[t["box"].str.startswith("Reports excluded")]
    assert excluded["n"].sum() == 400


def test_the_committed_screening_log_draws():
    # the data floor's counts of studies/screening.csv (alliance_meta.data.prisma_counts)
    from alliance_meta.data import load_screening, load_studies, prisma_counts

    log, effects = load_screening(), load_studies()
    for stream in ("studies", "syntheses"):
        counts = prisma_counts(log, effects, stream=stream)
        assert check_prisma_counts(counts) == []
        table = prisma_table(counts)
        assert table.loc[table["box"] == "Records screened", "n"].item() == counts.screened
        fig = prisma_flow(counts)
        assert not _fits(fig, 150)
        if stream == "studies":  # included studies, samples and effects counted from effects.csv
            assert table.loc[table["box"] == "Effect sizes", "n"].item() == counts.effects
