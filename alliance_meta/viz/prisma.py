"""PRISMA 2020 flow diagram (Page et al. 2021, BMJ 372:n71, doi:10.1136/bmj.n71, Figure 1: the
template for new systematic reviews that searched databases, registers and other sources).

Drawn from :func:`alliance_meta.data.prisma_counts` (a ``PrismaCounts``, read by attribute) or
from a counts dict of this shape (``stream`` "syntheses" names the included units
meta-analyses and pooled estimates; sources and reasons with n = 0 are left out):

.. code-block:: python

    {
      "identified": {"database searches": 420, "leads from colleagues": 11},  # per source
      "duplicates": 14,            # records removed before screening
      "screened": 417,             # records screened
      "screen_excluded": 0,        # records excluded at title/abstract (optional, default 0)
      "sought": 417,               # reports sought for retrieval (optional: screened - excluded)
      "not_retrieved": 9,          # reports not retrieved
      "assessed": 408,             # reports assessed for eligibility (optional)
      "excluded": {"no-statistic": 252, "not-outcome": 56},  # reports excluded, by reason
      "included": {"studies": 10, "reports": 10, "samples": 10, "effects": 13},
    }

The arithmetic of the flow is checked before drawing (identified - duplicates = screened,
screened - excluded = sought, sought - not retrieved = assessed, assessed - excluded by reason =
included reports; ``reports`` defaults to ``studies``), and a mismatch is an error naming the
boxes. Every box is sized from its measured text, so the text always fits (tests check the
rendered extents).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from .theme import INK, MUTED, _new_figure, theme

__all__ = ["prisma_flow", "prisma_table", "check_prisma_counts", "REASON_LABELS"]

#: Reader-facing wording of the screening log's reason codes (others: hyphens become spaces).
REASON_LABELS: dict[str, str] = {
    "no-statistic": "no alliance\u2013outcome statistic reported",
    "not-outcome": "outcome not a treatment outcome",
    "not-convertible": "statistic not convertible to r",
    "not-alliance": "alliance not measured",
    "repeated-measures": "only within-person (repeated-measures) effects",
    "n-unclear": "sample size unclear",
    "sign-unclear": "direction of effect unclear",
    "subgroup-only": "subgroup effects only",
    "not-primary": "not a primary study",
    "partial-without-df": "partial effect without df",
    "reverse-direction": "only earlier change predicting later alliance",
    "overlapping-sample": "another report or overlapping sample",
    "other": "other reasons",
}

_PAD = 0.09  # inches between a box's edge and its text
_VGAP = 0.32  # inches between rows (room for the arrow)
_HGAP = 0.45  # inches between the main column and the side column
_STAGE_W = 0.28  # width of the stage bars on the left
_FONT = 7.5
_MEASURE_DPI = (72, 100, 150, 200, 300)


def _label_height(fig: Figure, label: str) -> float:
    t = fig.text(0, 0, label, fontsize=_FONT, fontweight="bold")
    w = max(t.get_window_extent(r, dpi=dpi).width / dpi for dpi, r in _renderers())
    t.remove()
    return w * 1.02 + 2 * _PAD


def _renderers() -> list[tuple[float, RendererAgg]]:
    # small canvases: measuring text needs the font rasteriser at a dpi, not a full page
    return [(dpi, RendererAgg(10, 10, dpi)) for dpi in _MEASURE_DPI]


def _n(x) -> str:
    return f"{int(x):,}"


#: Reader-facing wording of the screening log's ``found_via`` codes.
SOURCE_LABELS: dict[str, str] = {
    "search": "searches of the stored pages",
    "lead": "lists of leads",
    "citation": "citation searching",
}


def _from_object(counts) -> dict:
    """The data floor's ``PrismaCounts`` (alliance_meta.data.prisma_counts) as a counts dict."""
    inc = {"reports": int(counts.included), "studies": int(counts.studies
                                                           if counts.studies is not None
                                                           else counts.included)}
    for key in ("samples", "effects"):
        if getattr(counts, key, None) is not None:
            inc[key] = int(getattr(counts, key))
    return {"stream": getattr(counts, "stream", "studies"),
            "identified": dict(counts.identified), "duplicates": counts.duplicates,
            "screened": counts.screened, "sought": counts.sought,
            "not_retrieved": counts.not_retrieved, "assessed": counts.assessed,
            "excluded": dict(counts.excluded), "included": inc}


def _complete(counts) -> dict:
    c = dict(counts) if isinstance(counts, Mapping) else _from_object(counts)
    for key in ("identified", "duplicates", "screened", "not_retrieved", "excluded", "included"):
        if key not in c:
            raise ValueError(f"prisma counts: missing {key!r} (see alliance_meta.viz.prisma)")
    # a source or reason that yielded nothing is not a line of the diagram
    c["identified"] = {SOURCE_LABELS.get(str(k), str(k)): int(v)
                       for k, v in dict(c["identified"]).items() if int(v)}
    c["excluded"] = {str(k): int(v) for k, v in dict(c["excluded"]).items() if int(v)}
    c.setdefault("stream", "studies")
    inc = {str(k): int(v) for k, v in dict(c["included"]).items()}
    if "studies" not in inc:
        raise ValueError("prisma counts: included needs 'studies'")
    inc.setdefault("reports", inc["studies"])
    c["included"] = inc
    c["screen_excluded"] = int(c.get("screen_excluded", 0))
    c.setdefault("sought", int(c["screened"]) - c["screen_excluded"])
    c.setdefault("assessed", int(c["sought"]) - int(c["not_retrieved"]))
    for key in ("duplicates", "screened", "sought", "not_retrieved", "assessed"):
        c[key] = int(c[key])
    return c


def check_prisma_counts(counts) -> list[str]:
    """The arithmetic mismatches of a counts dict (empty when the flow adds up)."""
    c = _complete(counts)
    out = []
    ident = sum(c["identified"].values())
    checks = [
        (ident - c["duplicates"], c["screened"], "identified - duplicates", "screened"),
        (c["screened"] - c["screen_excluded"], c["sought"], "screened - excluded", "sought"),
        (c["sought"] - c["not_retrieved"], c["assessed"], "sought - not retrieved", "assessed"),
        (c["assessed"] - sum(c["excluded"].values()), c["included"]["reports"],
         "assessed - excluded", "included reports"),
    ]
    for got, want, lhs, rhs in checks:
        if got != want:
            out.append(f"{lhs} = {got:,} but {rhs} = {want:,}")
    return out


def prisma_table(counts) -> pd.DataFrame:
    """The counts of the flow diagram as a tidy table (stage, box, n), in diagram order."""
    c = _complete(counts)
    rows = [("Identification", f"Records identified: {src}", n)
            for src, n in c["identified"].items()]
    rows += [("Identification", "Duplicate records removed", c["duplicates"]),
             ("Screening", "Records screened", c["screened"]),
             ("Screening", "Records excluded", c["screen_excluded"]),
             ("Screening", "Reports sought for retrieval", c["sought"]),
             ("Screening", "Reports not retrieved", c["not_retrieved"]),
             ("Screening", "Reports assessed for eligibility", c["assessed"])]
    rows += [("Screening", f"Reports excluded: {REASON_LABELS.get(r, r.replace('-', ' '))}", n)
             for r, n in _reasons(c)]
    inc = c["included"]
    units = _units(c)
    rows += [("Included", f"{units['studies']} included in review", inc["studies"]),
             ("Included", "Reports of included studies", inc["reports"])]
    for key in ("samples", "effects"):
        if key in inc:
            rows.append(("Included", units[key], inc[key]))
    return pd.DataFrame(rows, columns=["stage", "box", "n"])


def _units(c: dict) -> dict[str, str]:
    if c.get("stream") == "syntheses":
        return {"studies": "Meta-analyses", "samples": "Samples", "effects": "Pooled estimates"}
    return {"studies": "Studies", "samples": "Independent samples", "effects": "Effect sizes"}


def _reasons(c: dict) -> list[tuple[str, int]]:
    # largest first; "other" last, as in PRISMA's own examples
    return sorted(c["excluded"].items(), key=lambda kv: (kv[0] == "other", -kv[1], kv[0]))


def _box_texts(c: dict) -> dict[str, str]:
    ident = "\n".join(f"  {src} (n = {_n(n)})" for src, n in c["identified"].items())
    reasons = "\n".join(f"  {REASON_LABELS.get(r, r.replace('-', ' '))} (n = {_n(n)})"
                        for r, n in _reasons(c))
    inc = c["included"]
    units = _units(c)
    included = f"{units['studies']} included in review\n(n = {_n(inc['studies'])})"
    if inc["reports"] != inc["studies"]:
        included += f"\nReports of included studies\n(n = {_n(inc['reports'])})"
    if "samples" in inc:
        included += f"\n{units['samples']} (n = {_n(inc['samples'])})"
    if "effects" in inc:
        included += f"\n{units['effects']} (n = {_n(inc['effects'])})"
    return {
        "identified": f"Records identified from:\n{ident}",
        "removed": f"Records removed before screening:\n  duplicate records (n = "
                   f"{_n(c['duplicates'])})",
        "screened": f"Records screened\n(n = {_n(c['screened'])})",
        "screen_excluded": f"Records excluded\n(n = {_n(c['screen_excluded'])})",
        "sought": f"Reports sought for retrieval\n(n = {_n(c['sought'])})",
        "not_retrieved": f"Reports not retrieved\n(n = {_n(c['not_retrieved'])})",
        "assessed": f"Reports assessed for eligibility\n(n = {_n(c['assessed'])})",
        "excluded": f"Reports excluded:\n{reasons}" if reasons else "Reports excluded\n(n = 0)",
        "included": included,
    }


_ROWS = [("identified", "removed"), ("screened", "screen_excluded"), ("sought", "not_retrieved"),
         ("assessed", "excluded"), ("included", None)]
_STAGES = [("Identification", 0, 0), ("Screening", 1, 3), ("Included", 4, 4)]


def prisma_flow(counts, *, title: str = "", check: bool = True) -> Figure:
    """The PRISMA 2020 flow diagram of a counts dict (see the module docstring) or of the data
    floor's ``PrismaCounts`` (``alliance_meta.data.prisma_counts(...)``) as a Figure.

    Boxes carry ``gid`` ``prisma-box-<name>`` and their text ``prisma-text-<name>`` (names:
    identified, removed, screened, screen_excluded, sought, not_retrieved, assessed, excluded,
    included), so tests and readers can find them. ``check=False`` draws a flow whose
    arithmetic does not add up (the mismatches are then listed under the diagram).
    """
    c = _complete(counts)
    problems = check_prisma_counts(c)
    if problems and check:
        raise ValueError("prisma_flow: the counts do not add up: " + "; ".join(problems))
    texts = _box_texts(c)
    with theme({"font.size": _FONT}):
        fig = _new_figure(6.0, 6.0)
        # measure each text as it will be drawn, then size the boxes around it; Agg's hinting
        # makes text widths grow a little faster than the dpi, so measure at every dpi a
        # figure is saved at and keep the widest
        size: dict[str, tuple[float, float]] = {}
        for name, s in texts.items():
            t = fig.text(0, 0, s, fontsize=_FONT, linespacing=1.3)
            w = h = 0.0
            for dpi, renderer in _renderers():
                bb = t.get_window_extent(renderer, dpi=dpi)
                w, h = max(w, bb.width / dpi), max(h, bb.height / dpi)
            size[name] = (w * 1.02 + 2 * _PAD, h * 1.02 + 2 * _PAD)
            t.remove()
        # a stage bar's rotated label needs the bar to be at least as tall as the label
        label_h = {lab: _label_height(fig, lab) for lab, _, _ in _STAGES}
        main_w = max(size[m][0] for m, _ in _ROWS)
        side_w = max(size[s][0] for _, s in _ROWS if s)
        heights = [max(size[m][1], size[s][1] if s else 0) for m, s in _ROWS]
        for lab, first, last in _STAGES:
            span = sum(heights[first:last + 1]) + _VGAP * (last - first)
            if span < label_h[lab]:
                heights[first] += label_h[lab] - span
        title_h = 0.35 if title else 0.1
        foot = 0.3 if problems else 0.1
        H = sum(heights) + _VGAP * (len(_ROWS) - 1) + title_h + foot
        x_main = _STAGE_W + 0.15
        x_side = x_main + main_w + _HGAP
        W = x_side + side_w + 0.1
        fig.set_size_inches(W, H)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, W)
        ax.set_ylim(0, H)
        ax.axis("off")
        if title:
            ax.text(W / 2, H - 0.08, title, ha="center", va="top", fontsize=_FONT + 1.5,
                    fontweight="bold", color=INK)
        y = H - title_h
        centres: dict[str, tuple[float, float, float, float]] = {}  # x0, y0, w, h
        row_top = []
        for (m, s), h in zip(_ROWS, heights, strict=True):
            row_top.append(y)
            for name, x0, w in ((m, x_main, main_w), (s, x_side, side_w)):
                if name is None:
                    continue
                bh = size[name][1] if name != m else h
                y0 = y - (h + bh) / 2 if name != m else y - h
                ax.add_patch(Rectangle((x0, y0), w, bh, facecolor="white", edgecolor=INK,
                                       linewidth=0.7, gid=f"prisma-box-{name}"))
                ax.text(x0 + _PAD, y0 + bh - _PAD, texts[name], ha="left", va="top",
                        fontsize=_FONT, linespacing=1.3, color=INK, gid=f"prisma-text-{name}")
                centres[name] = (x0, y0, w, bh)
            y -= h + _VGAP
        arrow = dict(arrowstyle="-|>", mutation_scale=8, color=INK, linewidth=0.7,
                     shrinkA=0, shrinkB=0)
        for (m, s), (m2, _) in zip(_ROWS[:-1], _ROWS[1:], strict=True):
            x0, y0, w, _ = centres[m]
            x1, y1, w1, h1 = centres[m2]
            ax.add_patch(FancyArrowPatch((x0 + w / 2, y0), (x1 + w1 / 2, y1 + h1), **arrow))
            sx, sy, _, sh = centres[s]
            ax.add_patch(FancyArrowPatch((x0 + w, sy + sh / 2), (sx, sy + sh / 2), **arrow))
        for label, first, last in _STAGES:
            top = row_top[first]
            bottom = row_top[last] - heights[last]
            ax.add_patch(Rectangle((0.05, bottom), _STAGE_W - 0.05, top - bottom,
                                   facecolor="#DCE9F5", edgecolor="none"))
            ax.text(0.05 + (_STAGE_W - 0.05) / 2, (top + bottom) / 2, label, rotation=90,
                    ha="center", va="center", fontsize=_FONT, fontweight="bold", color=INK)
        if problems:
            ax.text(x_main, 0.02, "Counts do not add up: " + "; ".join(problems), fontsize=6,
                    color=MUTED, va="bottom")
    return fig
