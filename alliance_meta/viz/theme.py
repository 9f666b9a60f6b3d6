"""One look for every figure, and deterministic saving.

:func:`theme` applies :data:`STYLE` (DejaVu Sans, which ships with matplotlib, small print
sizes, no top/right spines) and the Okabe-Ito colour-blind-safe palette :data:`PALETTE` (Okabe &
Ito 2008, *Color Universal Design*, https://jfly.uni-koeln.de/color/). Figures made here are not
registered with pyplot (no global state, no leaks in loops); notebooks display the returned
Figure, scripts save it with :func:`save_figure`. The private helpers (number formats, text
measurement, the model description) are shared by every figure module.

For Fisher's z (``measure="ZCOR"``) every effect axis is back-transformed to r with tanh, except
the funnel plot, whose symmetry argument needs the analysis scale (it adds an r axis on top).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator
from scipy import special

PALETTE: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
)
INK = "#222222"  # study markers, text
MUTED = "#777777"  # reference lines

STYLE: dict = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.titleweight": "bold",
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.0,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "axes.edgecolor": INK,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "lines.linewidth": 0.9,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": 100.0,
    "savefig.dpi": 300.0,
    "svg.hashsalt": "alliance-meta",  # stable clip-path and glyph ids
    "svg.fonttype": "path",  # text as paths: the SVG looks the same without the font
    "pdf.fonttype": 42,  # embed TrueType subsets: editable text in the PDF
}

_ROW_HEIGHT = 0.2  # inches per forest row (8 pt text is about 0.13 in tall)
_GAP = 0.12  # inches between columns


@contextmanager
def theme(rc: dict | None = None) -> Iterator[None]:
    """Context manager applying the package's figure style (:data:`STYLE`, updated with the
    rcParams in ``rc``, e.g. ``theme({"font.size": 9})``) to everything drawn inside it; the
    global rcParams are restored on exit."""
    with mpl.rc_context({**STYLE, **(rc or {})}):
        yield


# ---------------------------------------------------------------------------------------------
# shared helpers


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _root_figure(ax: Axes) -> Figure:
    fig = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure
    return fig


def _check_ax(ax, who: str) -> None:
    if ax is not None and not isinstance(ax, Axes):
        raise ValueError(f"{who}: ax must be a matplotlib Axes or None, got {type(ax).__name__}")


def _finish(fig: Figure) -> Figure:
    """Create tick objects while the theme is active; later ticks copy the first one's style."""
    for a in fig.axes:
        for child in [a, *a.child_axes]:
            child.xaxis.get_major_ticks()
            child.yaxis.get_major_ticks()
    return fig


def _scale(measure: str, who: str):
    """(transform to display units, axis label, short name) for an effect-size measure."""
    if not isinstance(measure, str):
        raise ValueError(f"{who}: measure must be a string such as 'ZCOR' or 'GEN'")
    if measure == "ZCOR":
        return np.tanh, "Correlation (r)", "r"
    return (lambda x: np.asarray(x, dtype=float)), "Effect size", "Estimate"


def _num(x: float, d: int = 2) -> str:
    if not np.isfinite(x):
        return "NA"
    s = f"{x:.{d}f}"
    if float(s) == 0:
        s = f"{0:.{d}f}"
    return s.replace("-", "\u2212")


def _ci_text(est: float, lb: float, ub: float, d: int = 2) -> str:
    if np.isnan(lb) and np.isnan(ub):
        return _num(est, d)
    return f"{_num(est, d)} [{_num(lb, d)}, {_num(ub, d)}]"


def _pfmt(p: float) -> str:
    if not np.isfinite(p):
        return "p = NA"
    return "p < .001" if p < 0.001 else f"p = {p:.3f}".replace("0.", ".", 1)


def _alpha_text(a: float) -> str:
    """A significance level as journals print it: .10, .05, .01, .001."""
    d = 2 if abs(round(a, 2) - a) < 1e-9 else 3 if abs(round(a, 3) - a) < 1e-9 else 4
    return f"{a:.{d}f}".lstrip("0")


def _crit(level: float) -> float:
    return float(special.ndtri(1 - (1 - level) / 2))


_MEASURER = RendererAgg(10, 10, 72)  # at 72 dpi one pixel is one point


def _text_width(strings: Sequence[str], size: float, weight: str = "normal") -> float:
    """Widest of ``strings`` in inches at font ``size`` (uses the active theme's font)."""
    prop = FontProperties(size=size, weight=weight)
    w = 0.0
    for s in strings:
        if s:
            w = max(w, _MEASURER.get_text_width_height_descent(s, prop, ismath=False)[0])
    return 1.04 * w / 72.0


def _nice_ticks(lo: float, hi: float) -> np.ndarray:
    t = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    eps = 1e-9 * max(1.0, hi - lo)
    return t[(t >= lo - eps) & (t <= hi + eps)]


def _as_frame(df, cols: Sequence[str], who: str, may_be_nan: Sequence[str] = ()) -> pd.DataFrame:
    """Check a DataFrame for numeric ``cols`` (finite, except NaN allowed in ``may_be_nan``) and
    a label column (``label``, else ``study`` as the sensitivity functions name it); return a
    copy with the labels as strings in ``label``."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{who}: needs a pandas DataFrame, got {type(df).__name__}")
    lab = "label" if "label" in df.columns else "study" if "study" in df.columns else None
    missing = [c for c in cols if c not in df.columns] + (["label"] if lab is None else [])
    if missing:
        raise ValueError(f"{who}: the DataFrame lacks the column(s) {missing}; it needs "
                         f"{list(cols)} and label (or study)")
    if len(df) == 0:
        raise ValueError(f"{who}: the DataFrame has no rows")
    out = df.reset_index(drop=True)
    try:
        vals = out[list(cols)].to_numpy(dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}: columns {list(cols)} must be numeric") from e
    allow = np.array([c in may_be_nan for c in cols])
    bad = np.isinf(vals) | (np.isnan(vals) & ~allow[None, :])
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{who}: column {cols[c]!r} has a missing or infinite value at row {r}")
    out = out.assign(**{c: vals[:, j] for j, c in enumerate(cols)})
    return out.assign(label=out[lab].astype(str))


def _first(x) -> float:
    """A scalar from a float or a length-1 array (result types disagree while stats is
    restructured; the intercept is the first coefficient)."""
    a = np.ravel(np.asarray(x, dtype=float))
    return float(a[0]) if a.size else float("nan")


@dataclass(frozen=True)
class Model:
    """What a figure needs to know about the model that drew it, read from any fitted result
    with ``estimate``, ``ci_lb``, ``ci_ub`` (and ``pi_lb``/``pi_ub`` when it has them): random
    effects, common effect, three-level (``am.three_level``) or CR2-robust (``am.robust``).
    Numbers stay on the analysis scale (yi); ``label`` names the model and its CI type."""

    estimate: float
    ci_lb: float
    ci_ub: float
    pi_lb: float
    pi_ub: float
    level: float
    measure: str
    label: str  # e.g. "three-level REML, t(7) CI"
    short: str  # the pooled row's label, e.g. "Three-level model (REML)"
    ci_kind: str  # "z", "Knapp-Hartung t(15)", "t(7)", "CR2 t(4.3)"
    heterogeneity: str  # one line, or "" when the result carries none
    cautions: tuple[str, ...]
    k: int | None  # effects
    n_clusters: int | None  # samples, for dependence-aware models
    re_model: bool  # a between-study variance is estimated (so a PI is meaningful)
    yi: np.ndarray | None
    vi: np.ndarray | None
    weights: np.ndarray | None  # percent, as metafor's weights()


def _ci_kind(test: str, dfs: float) -> str:
    df = f"{dfs:.3g}" if np.isfinite(dfs) else ""
    if test in ("knha", "KH", "hksj"):
        return f"Knapp\u2013Hartung t({df})" if df else "Knapp\u2013Hartung"
    if test == "t":
        return f"t({df})" if df else "t"
    return "z"


def _three_level_weights(res) -> np.ndarray | None:
    """metafor's ``weights.rma.mv`` (type "diagonal"): diag(W) in percent, W = M^-1 with the
    block-diagonal M = sigma2_between J + diag(sigma2_within + vi) per sample; the diagonal of
    each block's inverse follows from Sherman-Morrison."""
    try:
        sb, sw = float(res.sigma2_between), float(res.sigma2_within)
        v = np.asarray(res.vi, dtype=float)
        cl = pd.Series(np.asarray(res.cluster, dtype=object)).astype(str).to_numpy()
    except (AttributeError, TypeError, ValueError):
        return None
    d = sw + v
    s = pd.Series(1.0 / d).groupby(cl).transform("sum").to_numpy()
    diag = 1.0 / d - (sb / d**2) / (1.0 + sb * s)
    return 100.0 * diag / diag.sum()


def _model(res, who: str, model_label: str | None = None, need_studies: bool = False) -> Model:
    """Read ``res`` as a :class:`Model` (see there); ``model_label`` replaces the generated
    description. Raises a ValueError naming ``who`` when ``res`` is not a one-coefficient fit."""
    if isinstance(res, Model):
        return res if model_label is None else replace(res, label=model_label)
    missing = [a for a in ("estimate", "ci_lb", "ci_ub") if not hasattr(res, a)]
    if missing:
        raise ValueError(f"{who}: needs a fitted model with estimate, ci_lb and ci_ub (from "
                         f"random_effects, three_level or robust), got {type(res).__name__}")
    if np.size(res.ci_lb) != 1:
        raise ValueError(f"{who}: needs a model without moderators (one pooled estimate); this "
                         f"one has {np.size(res.ci_lb)} coefficients")
    est, lb, ub = _first(res.estimate), _first(res.ci_lb), _first(res.ci_ub)
    pi_lb = _first(getattr(res, "pi_lb", np.nan))
    pi_ub = _first(getattr(res, "pi_ub", np.nan))
    level = float(getattr(res, "level", 0.95))
    measure = str(getattr(res, "measure", "GEN"))
    method = str(getattr(res, "method", ""))
    test = str(getattr(res, "test", "z"))
    dfs = _first(getattr(res, "dfs", np.inf))
    k = getattr(res, "k", None)
    yi = getattr(res, "yi", None)
    vi = getattr(res, "vi", None)
    if k is None and yi is not None:
        k = int(np.size(yi))
    n_clusters = getattr(res, "n_clusters", None)
    weights = None
    cautions: list[str] = []
    tau2_zero = False
    if hasattr(res, "sigma2_between"):  # three-level model
        kind = _ci_kind(test, dfs)
        label = f"three-level {method}, {kind} CI"
        short = f"Three-level model ({method})"
        sb, sw = float(res.sigma2_between), float(res.sigma2_within)
        het = (f"\u03c3\u00b2 between = {sb:.4f}, within = {sw:.4f}; I\u00b2 = "
               f"{float(res.I2_between):.1f}% / {float(res.I2_within):.1f}%")
        if hasattr(res, "QE"):
            het += f"; Q({int(k) - 1}) = {float(res.QE):.2f}, {_pfmt(float(res.QE_p))}"
        re_model, tau2_zero = True, sb + sw <= 1e-10
        weights = getattr(res, "weights", None)
        weights = _three_level_weights(res) if weights is None else weights
    elif type(res).__name__.startswith("Robust") or (
            hasattr(res, "n_clusters") and hasattr(res, "model") and not hasattr(res, "tau2")):
        # CR2 cluster-robust
        df = _first(getattr(res, "df", getattr(res, "dfs", np.inf)))
        kind = f"CR2 t({df:.3g})"
        base = str(getattr(res, "model", "model"))
        label = f"CR2-robust {base}, {kind} CI"
        short = "CR2-robust model"
        het, re_model = "", False
        yi = vi = None
        k = None
    elif hasattr(res, "tau2"):  # random or common effect
        re_model = method != "FE"
        kind = _ci_kind(test, dfs)
        label = (f"random-effects {method}, {kind} CI" if re_model else f"common-effect, {kind} CI")
        short = f"Random-effects model ({method})" if re_model else "Common-effect model"
        q = f"Q({int(k) - 1}) = {float(res.Q):.2f}, {_pfmt(float(res.Q_p))}"
        het = (f"\u03c4\u00b2 = {float(res.tau2):.4f}, I\u00b2 = {float(res.I2):.1f}%, {q}"
               if re_model else f"I\u00b2 = {float(res.I2):.1f}%, {q}")
        tau2_zero = re_model and float(res.tau2) <= 1e-10
        weights = getattr(res, "weights", None)
    else:
        kind, het, re_model = "", "", np.isfinite(pi_lb)
        label, short = "pooled model", "Pooled estimate"
    if k is not None and k < 5:
        cautions.append(f"Caution: k = {k} effects (< 5); the between-study variance and the "
                        "prediction interval are imprecise.")
    if n_clusters is not None and int(n_clusters) < 5:
        cautions.append(f"Caution: {int(n_clusters)} samples (< 5); dependence-aware "
                        "intervals rest on very few clusters.")
    has_pi = np.isfinite(pi_lb) and np.isfinite(pi_ub)
    if has_pi and (tau2_zero or (np.isclose(pi_lb, lb, atol=1e-10)
                                 and np.isclose(pi_ub, ub, atol=1e-10))):
        cautions.append("The prediction interval equals the CI because the between-study "
                        "variance is estimated as 0.")
    return Model(
        estimate=est, ci_lb=lb, ci_ub=ub, pi_lb=pi_lb, pi_ub=pi_ub, level=level,
        measure=measure, label=model_label if model_label is not None else label, short=short,
        ci_kind=kind, heterogeneity=het, cautions=tuple(cautions),
        k=None if k is None else int(k), n_clusters=None if n_clusters is None else int(n_clusters),
        re_model=bool(re_model),
        yi=None if yi is None else np.asarray(yi, dtype=float).ravel(),
        vi=None if vi is None else np.asarray(vi, dtype=float).ravel(),
        weights=None if weights is None else np.asarray(weights, dtype=float).ravel(),
    )


def _integer_ticks(axis) -> None:
    """Counts and years have integer ticks only (no "2012.5", no "1.5 studies")."""
    axis.set_major_locator(MaxNLocator(integer=True, nbins="auto"))


def _wrap(text: str, width_in: float, size: float) -> str:
    """Break ``text`` at spaces so that each line fits ``width_in`` inches at ``size`` pt."""
    words, lines, cur = text.split(" "), [], ""
    for w in words:
        trial = f"{cur} {w}" if cur else w
        if cur and _text_width([trial], size) > width_in:
            lines.append(cur)
            cur = w
        else:
            cur = trial
    lines.append(cur)
    return "\n".join(lines)




# ---------------------------------------------------------------------------------------------
# saving


_METADATA = {
    "svg": {"Date": None},  # no time stamp (matplotlib adds today's date otherwise)
    "pdf": {"CreationDate": None},  # no time stamp in the info dictionary
    "png": {},  # matplotlib's PNG carries only 'Software' (its version), no date
}


def _png_dpi(fig: Figure, dpi: float, max_side: int | None) -> float:
    if max_side is None:
        return dpi
    side_in = float(max(fig.get_size_inches()))
    return float(max(72.0, min(dpi, np.floor(max_side / side_in))))


def save_figure(
    fig: Figure,
    path_stem: str | os.PathLike,
    formats: Sequence[str] = ("svg", "png", "pdf"),
    *,
    dpi: float = 300,
    max_png_side: int | None = 4000,
) -> dict[str, Path]:
    """Write ``fig`` as ``<path_stem>.<fmt>`` for each format (svg, png, pdf) and return the
    paths by format.

    The PNG is written at ``dpi`` unless its longer side would exceed ``max_png_side`` pixels
    (a tall forest plot); then its dpi is lowered to fit (never below 72), so raster files stay
    small while SVG and PDF keep every row sharp. ``max_png_side=None`` turns this off.

    Output is deterministic: the same figure gives byte-identical files (fixed
    ``svg.hashsalt``, no date in SVG or PDF metadata, text as paths in SVG, TrueType subsets in
    PDF). Each file is first written to a temporary file beside its target, and all are moved
    into place only when every format has been written, so a failure leaves no partial files.
    """
    who = "save_figure"
    if not isinstance(fig, Figure):
        raise ValueError(f"{who}: needs a matplotlib Figure, got {type(fig).__name__}")
    if isinstance(formats, str):
        formats = (formats,)
    fmts = [str(x).lower().lstrip(".") for x in formats]
    if not fmts:
        raise ValueError(f"{who}: formats is empty; give one or more of svg, png, pdf")
    if max_png_side is not None and (not isinstance(max_png_side, (int, np.integer))
                                     or max_png_side < 100):
        raise ValueError(f"{who}: max_png_side must be an integer >= 100 or None")
    bad = [x for x in fmts if x not in _METADATA]
    if bad:
        raise ValueError(f"{who}: unsupported format(s) {bad}; use svg, png or pdf")
    if len(set(fmts)) != len(fmts):
        raise ValueError(f"{who}: formats lists a format twice: {fmts}")
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in _METADATA:
        raise ValueError(f"{who}: give the path without extension (got {str(stem)!r}); the "
                         "extension is added per format")
    if not stem.name:
        raise ValueError(f"{who}: path_stem needs a file name")
    stem.parent.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    temps: list[tuple[str, str]] = []
    try:
        with mpl.rc_context({k: STYLE[k] for k in ("svg.hashsalt", "svg.fonttype", "pdf.fonttype")}):
            for fmt in fmts:
                tmp = str(stem.with_name(f".{stem.name}.{fmt}.{uuid.uuid4().hex}.tmp"))
                temps.append((fmt, tmp))
                fig.savefig(tmp, format=fmt, dpi=_png_dpi(fig, dpi, max_png_side) if fmt == "png"
                            else dpi, metadata=_METADATA[fmt])
        for fmt, tmp in temps:
            target = stem.with_name(f"{stem.name}.{fmt}")
            os.replace(tmp, target)
            done[fmt] = target
    except BaseException:
        for _, tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    return done
