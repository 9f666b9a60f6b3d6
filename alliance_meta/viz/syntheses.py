"""Forest of published pooled estimates, grouped by population, with this review's estimates
beside the matching groups and second-order summaries at the bottom (notebook 07)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .theme import INK, MUTED, PALETTE, _finish, _new_figure, _text_width, theme

__all__ = ["syntheses_forest"]

_ROW = 0.17  # inches per row


def _ci(r: float, lb: float, ub: float) -> str:
    def f(x: float) -> str:
        s = f"{x:.2f}".replace("-0.00", "0.00")
        return s.replace("0.", ".", 1).replace("-", "\u2212")

    if not np.isfinite(r):
        return ""
    return f"{f(r)} [{f(lb)}, {f(ub)}]" if np.isfinite(lb) and np.isfinite(ub) else f(r)


def syntheses_forest(published: pd.DataFrame, ours: pd.DataFrame | None = None,
                     summaries: Sequence[tuple[str, float, float, float, float, float]] = (),
                     selected: Sequence[bool] | None = None, title: str | None = None,
                     note: str = "") -> Figure:
    """One row per published estimate (columns ``population``, ``label``, ``metric``, ``r``,
    ``r_ci_lb``, ``r_ci_ub``; rows without r are skipped), grouped by population in order of
    appearance; a d/g/z estimate is drawn as an open diamond (converted to r), an r as a
    square; ``selected`` rows (e.g. the second-order selection) are filled, others open.
    ``ours`` (``population``, ``r``, ``r_ci_lb``, ``r_ci_ub``, ``subset``) adds a coloured row
    "This review" under each matching population. ``summaries`` are (label, r, ci_lb, ci_ub,
    pi_lb, pi_ub) drawn as diamonds (with their PI as a thin line) at the bottom."""
    pub = published.reset_index(drop=True)
    sel = np.zeros(len(pub), bool) if selected is None else np.asarray(selected, bool)
    keep = pub["r"].notna().to_numpy()
    pub, sel = pub[keep].reset_index(drop=True), sel[keep]
    rows: list[tuple[str, str, dict]] = []  # (kind, text, values)
    for pop in pd.unique(pub["population"]):
        rows.append(("head", str(pop), {}))
        for i in np.flatnonzero((pub["population"] == pop).to_numpy()):
            p = pub.iloc[i]
            rows.append(("est", str(p["label"]), {
                "r": p["r"], "lb": p["r_ci_lb"], "ub": p["r_ci_ub"],
                "conv": str(p["metric"]) != "r", "sel": bool(sel[i]),
                "right": _ci(p["r"], p["r_ci_lb"], p["r_ci_ub"])
                + (f"  ({p['metric']} = {p['estimate']:g})" if str(p["metric"]) != "r" else "")}))
        if ours is not None:
            for _, o in ours[(ours["population"] == pop) & ours["r"].notna()].iterrows():
                rows.append(("ours", f"This review: {o['subset']}", {
                    "r": o["r"], "lb": o["r_ci_lb"], "ub": o["r_ci_ub"],
                    "right": _ci(o["r"], o["r_ci_lb"], o["r_ci_ub"])}))
    if summaries:
        rows.append(("head", "Second-order summaries (random effects on Fisher's z)", {}))
        for lab, r, lb, ub, plb, pub_ in summaries:
            rows.append(("sum", lab, {"r": r, "lb": lb, "ub": ub, "plb": plb, "pub": pub_,
                                      "right": _ci(r, lb, ub)}))
    labels = [t for _, t, _ in rows]
    w_lab = min(_text_width(labels, 6.5) + 0.15, 5.2)
    w_plot, w_right = 2.6, 1.6
    n = len(rows)
    foot = 0.45 + (0.15 if note else 0.0)
    height = 0.35 + n * _ROW + foot + (0.25 if title else 0.0)
    width = w_lab + w_plot + w_right
    with theme():
        fig = _new_figure(width, height)
        ax = fig.add_axes((w_lab / width, foot / height, w_plot / width, n * _ROW / height))
        ax.set_ylim(n - 0.5, -0.5)
        ax.axvline(0, color=MUTED, lw=0.6, zorder=0, gid="null_line")
        for j, (kind, text, v) in enumerate(rows):
            y = fig.transFigure.inverted().transform(ax.transData.transform((0, j)))[1]
            weight = "bold" if kind in ("head", "sum") else "normal"
            fig.text(0.08 / width, y, text[:95], fontsize=6.5, va="center", ha="left",
                     weight=weight, color=PALETTE[1] if kind == "ours" else INK)
            if kind == "head":
                continue
            fig.text((w_lab + w_plot + 0.1) / width, y, v["right"], fontsize=6.5, va="center",
                     ha="left", color=PALETTE[1] if kind == "ours" else INK)
            if np.isfinite(v["lb"]) and np.isfinite(v["ub"]):
                ax.plot([v["lb"], v["ub"]], [j, j], color=INK, lw=0.9, zorder=2)
            if kind == "sum":
                if np.isfinite(v["plb"]) and np.isfinite(v["pub"]):
                    ax.plot([v["plb"], v["pub"]], [j, j], color=INK, lw=0.6, zorder=1,
                            gid="prediction_interval")
                ax.fill([v["lb"], v["r"], v["ub"], v["r"]], [j, j - 0.3, j, j + 0.3],
                        color=INK, zorder=3, gid="summary")
            elif kind == "ours":
                ax.plot([v["r"]], [j], marker="o", ms=5, color=PALETTE[1], zorder=3, gid="ours")
            else:
                ax.plot([v["r"]], [j], marker="D" if v["conv"] else "s", ms=4,
                        mfc=INK if v["sel"] else "white", mec=INK, zorder=3,
                        gid="selected" if v["sel"] else "estimate")
        ax.set_yticks([])
        ax.set_xlim(-0.6, 0.8)
        ax.set_xlabel("Correlation r (d, g and z converted to r)")
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        legend = ("\u25a0 r as printed   \u25c6 converted to r   filled: in the second-order "
                  "selection   \u25cf this review (headline model)")
        fig.text(0.08 / width, 0.04 / height, legend + ("\n" + note if note else ""),
                 fontsize=6.0, color="#444444", va="bottom")
        if title:
            fig.text(0.08 / width, 1 - 0.08 / height, title, fontsize=9, weight="bold",
                     va="top")
        return _finish(fig)
