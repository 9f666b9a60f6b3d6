"""The site a reader browses: ``outputs/site/*.html``, hand-written HTML built after every run.

Pages: ``index.html`` (the headline model's r, CI, PI, tau^2, I^2, k, samples, N; the caution
while the curated set is small; what changed since the last data change; the published
syntheses beside ours; every run's headline), ``dataset.html`` (Table 1, the PRISMA 2020 flow
diagram and its counts), ``syntheses.html`` (every published pooled estimate) and one page per
run (its APA methods and results text from ``report.md``, captioned figures, APA tables with the
full-precision CSV beside each, its parameters and its executed notebook). Every page shows the
package version and the commit and date of the last data change, and a navigation bar.

Why hand-written HTML and not Quarto (``quarto-cli``) or another generator: the site must build
offline (Quarto pulls a Pandoc/Deno runtime of ~100 MB and, for notebooks, a Jupyter kernel),
be byte-deterministic (no build timestamps, no random ids, no search index that changes with
the tool's version) so that a git diff of ``outputs/`` shows what the data changed, and cost
next to nothing on a no-op ``alliance-meta run`` (this build reads small CSV/JSON files and takes
well under a second; a Quarto render of nine pages takes several). The numbers need no
templating engine: they are formatted by :mod:`.apa` and :mod:`.report`, the same code that
writes the paragraphs, so site, report and tables cannot disagree.

Contracts read here (written by the runs, see :mod:`.report`): ``<run>/headline.json``,
``<run>/report.md``, ``<run>/figures/captions.json`` and ``<run>/tables/captions.json``
(``{stem: {"caption": ..., "model": ...}}``; a figure without one is captioned by its file
stem); figures and tables whose names start with ``prisma`` (any run, e.g. 01_dataset's
``prisma.svg`` and ``prisma_counts.csv``) go to the dataset page; and ``studies/syntheses.csv``
(with ``studies/syntheses.bib`` for author-year labels). The site keeps ``outputs/site/history.json``: one headline per
distinct data state, so "what changed" survives re-runs.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from .apa import fmt_ci, fmt_int, fmt_num, fmt_pct, fmt_r, fmt_var
from .history import (
    HISTORY,
    BuildInfo,
    _analysed_files,
    _nan,
    _studies,
    _update_history,
    _write,
    build_info,
    changes_html,
)
from .published import demonstration_caution, read_syntheses
from .report import HEADLINE_FILE, SMALL_K, read_captions
from .table1 import parse_bib, table1

__all__ = ["build_site", "headline_run", "load_headline", "build_info", "HISTORY"]

_MAX_TABLE_ROWS = 40

_CSS = """body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;max-width:72em;margin:0 auto;
padding:0 1em 2em;color:#222;line-height:1.45}
nav{position:sticky;top:0;background:#f4f6f8;border-bottom:1px solid #ccd;padding:.4em .6em;
margin:0 -1em 1em;font-size:.9em}nav a{margin-right:.9em;text-decoration:none;color:#0b5394}
nav a.here{font-weight:bold;color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;
margin-top:1.6em}.caution{border-left:4px solid #D55E00;background:#fdf1e8;padding:.6em 1em}
.headline{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1.2em;
background:#f4f8fb;border:1px solid #cfdde8;padding:.8em 1em}.headline dt{font-weight:bold}
.headline dd{margin:0}figure{display:inline-block;margin:.6em;vertical-align:top;
max-width:34em}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em}
.apa-wrap{overflow-x:auto;max-width:100%}table.apa{border-collapse:collapse;margin:.8em 0;font-size:.88em}table.apa caption{
text-align:left;padding-bottom:.3em}table.apa thead th{border-top:2px solid #222;
border-bottom:1px solid #222;padding:.25em .6em;text-align:left;font-weight:normal}
table.apa td{padding:.2em .6em;vertical-align:top}table.apa td:first-child{min-width:9em}table.apa td.num{text-align:right;
white-space:nowrap}table.apa tbody tr:last-child td{border-bottom:2px solid #222}
.table-note{font-size:.82em;margin-top:-.4em;max-width:60em}dl.params{display:grid;
grid-template-columns:max-content 1fr;gap:.1em 1em}dl.params dt{font-family:monospace}
dl.params dd{margin:0}footer{margin-top:3em;border-top:1px solid #ccc;font-size:.8em;
color:#555}blockquote{border-left:3px solid #ccc;margin-left:0;padding-left:1em;color:#444}
"""


# ---------------------------------------------------------------------------------------------
# reading what the runs wrote


def _runs(cfg) -> list:
    return [r for r in cfg.runs if (cfg.output_dir / r.name).is_dir()]


def headline_run(cfg) -> str | None:
    """The run whose model is the headline: ``cfg.headline`` if the config names one, else the
    run called ``02_pooled-all``, else the first run that wrote a headline.json."""
    named = getattr(cfg, "headline", None)
    names = [r.name for r in _runs(cfg)]
    if named and named in names:
        return named
    if "02_pooled-all" in names:
        return "02_pooled-all"
    for n in names:
        if (cfg.output_dir / n / HEADLINE_FILE).exists():
            return n
    return None


def load_headline(run_dir: Path) -> dict[str, Any] | None:
    """A run's headline: its headline.json, or (runs that predate it) the first row of its
    tables/pooled.csv, read with the same field names."""
    p = run_dir / HEADLINE_FILE
    if p.exists():
        d = json.loads(p.read_text(encoding="utf-8"))
        return {k: (float("nan") if v is None else v) for k, v in d.items()}
    csv = run_dir / "tables" / "pooled.csv"
    if not csv.exists():
        return None
    df = pd.read_csv(csv)
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    return {"model": row.get("model", ""), "k": row.get("k"), "n_samples": row.get("n_samples"),
            "n_studies": float("nan"), "N": float("nan"), "r": row.get("r"),
            "r_ci_lb": row.get("r_ci_lb"), "r_ci_ub": row.get("r_ci_ub"),
            "r_pi_lb": row.get("r_pi_lb"), "r_pi_ub": row.get("r_pi_ub"),
            "tau2": row.get("tau2"), "I2": row.get("I2"), "estimate": row.get("estimate"),
            "cautions": []}


# ---------------------------------------------------------------------------------------------
# page pieces


def _page(title: str, here: str, nav: list[tuple[str, str]], body: list[str],
          info: BuildInfo) -> str:
    here_cls = ' class="here"'
    links = " ".join(
        f'<a href="{html.escape(href)}"{here_cls if href == here else ""}>'
        f"{html.escape(label)}</a>" for label, href in nav)
    dirty = " plus uncommitted changes" if info.dirty else ""
    foot = (f"<footer>Built by alliance-meta {html.escape(info.version)} from the data of commit "
            f"<code>{html.escape(info.commit)}</code> ({html.escape(info.date)}){dirty}. "
            "Every number is computed by the package from <code>studies/</code>; nothing is "
            "typed by hand.</footer>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)} \u2013 alliance-meta</title>",
        '<link rel="stylesheet" href="style.css">', "</head><body>",
        f"<nav>{links}</nav>", *body, foot, "</body></html>", ""])


def _r_ci(h: dict, lo: str = "r_ci_lb", hi: str = "r_ci_ub") -> str:
    return "" if _nan(h.get(lo)) or _nan(h.get(hi)) else fmt_ci(h[lo], h[hi])


def _headline_block(h: dict, run: str) -> str:
    pi = _r_ci(h, "r_pi_lb", "r_pi_ub") or "not available for this model"
    rows = [("r", f"{fmt_r(h['r'])}, 95% CI {_r_ci(h)}"), ("95% prediction interval", pi)]
    if not _nan(h.get("sigma2_between")):
        rows.append(("\u03c3\u00b2 between / within samples",
                     f"{fmt_var(h['sigma2_between'])} / {fmt_var(h['sigma2_within'])}"))
        rows.append(("I\u00b2 between / within samples",
                     f"{fmt_pct(h['I2_between'])}% / {fmt_pct(h['I2_within'])}%"))
    else:
        tci = "" if _nan(h.get("tau2_ci_lb")) else \
            f", 95% CI {fmt_ci(h['tau2_ci_lb'], h['tau2_ci_ub'], fmt_var)}"
        rows.append(("\u03c4\u00b2", fmt_var(h.get("tau2")) + tci))
        rows.append(("I\u00b2", f"{fmt_pct(h.get('I2'))}%"))
    counts = f"{fmt_int(h['k'])} effects, {fmt_int(h['n_samples'])} samples"
    if not _nan(h.get("n_studies")):
        counts += f", {fmt_int(h['n_studies'])} studies"
    rows.append(("k", counts))
    rows.append(("N", fmt_int(h["N"]) if not _nan(h.get("N")) else "not available"))
    rows.append(("model", f"{h.get('model', '')} (run <a href=\"{html.escape(run)}.html\">"
                          f"{html.escape(run)}</a>)"))
    dl = "".join(f"<dt>{'<i>r</i>' if k == 'r' else html.escape(k)}</dt>"
                 f"<dd>{v if k == 'model' else html.escape(v)}</dd>" for k, v in rows)
    cautions = "".join(f"<p>{html.escape(c)}</p>" for c in h.get("cautions") or [])
    return f'<dl class="headline">{dl}</dl>{cautions}'


def _caution(h: dict, syn: pd.DataFrame | None) -> str:
    text = demonstration_caution(h, syn)
    if not text:
        return ""
    head, _, rest = text.partition(". ")
    return (f'<div class="caution"><p><b>{html.escape(head)}.</b> {html.escape(rest)}</p>'
            "</div>")


def _syn_label(row) -> str:
    return str(row.get("label") or row.get("synthesis_id", ""))


def _syntheses_table(syn: pd.DataFrame, h: dict | None, compact: bool) -> str:
    df = syn.copy()
    for c in ("estimate", "ci_lb", "ci_ub", "k", "n"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    if compact and "estimate_id" in df:
        df = df.groupby("synthesis_id", sort=False).head(1)  # each synthesis's first estimate
    df["Source"] = df.apply(_syn_label, axis=1)
    cols = [c for c in ("population", "Source", "construct", "subgroup", "metric", "estimate",
                        "ci_lb", "ci_ub", "k", "k_unit", "n", "model") if c in df]
    if compact:
        cols = [c for c in cols if c not in ("subgroup", "n", "model")]
    out = df[cols].sort_values([c for c in ("population", "Source") if c in cols], kind="stable")
    if h is not None:
        ours = {"population": "this review (demonstration)", "Source": "alliance-meta",
                "construct": "alliance", "subgroup": "headline model", "metric": "r",
                "estimate": h["r"], "ci_lb": h["r_ci_lb"], "ci_ub": h["r_ci_ub"], "k": h["k"],
                "k_unit": "effects", "n": h.get("N"), "model": h.get("model", "")}
        out = pd.concat([pd.DataFrame([{c: ours.get(c) for c in cols}]), out], ignore_index=True)
    # correlations without a leading zero; d and other metrics can exceed 1 and keep it
    is_r = out["metric"].astype(str).eq("r") if "metric" in out else pd.Series(True, out.index)

    def fmt(x, r: bool) -> str:
        return "" if _nan(x) else (fmt_r(x) if r else fmt_num(x))

    out["estimate"] = [fmt(x, r) for x, r in zip(out["estimate"], is_r, strict=True)]
    if "ci_lb" in out:
        out["ci"] = ["" if _nan(a) or _nan(b) else f"[{fmt(a, r)}, {fmt(b, r)}]"
                     for a, b, r in zip(out["ci_lb"], out["ci_ub"], is_r, strict=True)]
        out = out.drop(columns=["ci_lb", "ci_ub"])
        out.insert(out.columns.get_loc("estimate") + 1, "ci", out.pop("ci"))
    from .apa import apa_table

    return apa_table(out, title="Published pooled estimates beside this review's headline",
                     kinds={"estimate": "text", "ci": "text"},
                     headers={"estimate": "Estimate", "ci": "95% CI", "population": "Population",
                              "construct": "Construct", "metric": "Metric",
                              "k_unit": "k unit", "subgroup": "Estimate of",
                              "model": "Model"},
                     note="Estimates as printed by each source (metric r, d or other); "
                          "d is not converted here.")


def _md_section(md: str, title: str) -> str:
    """The body of one ``## title`` section of a report.md ("" if it has none)."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", md, flags=re.M | re.S)
    return m.group(1).strip() if m else ""


def _md_to_html(md: str) -> str:
    """The small Markdown subset report.md uses: headings, paragraphs, quotes, bullet lists."""
    out, para, items = [], [], []

    def flush() -> None:
        if para:
            out.append(f"<p>{html.escape(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in md.splitlines():
        m = re.match(r"^(#{1,4})\s+(.*)$", line)
        if m:
            flush()
            level = min(len(m.group(1)) + 1, 4)  # the page has its own h1
            out.append(f"<h{level}>{html.escape(m.group(2))}</h{level}>")
        elif line.startswith("> "):
            flush()
            out.append(f"<blockquote>{html.escape(line[2:])}</blockquote>")
        elif line.startswith("- "):
            if para:
                flush()
            items.append(line[2:])
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
    flush()
    return "\n".join(out)


def _figures(run_dir: Path, run: str, prefix: str = "") -> list[str]:
    figdir = run_dir / "figures"
    caps = read_captions(figdir)
    # natural order: forest_page2 before forest_page10
    stems = sorted({p.stem for p in figdir.glob(f"{prefix}*.png")}
                   | {p.stem for p in figdir.glob(f"{prefix}*.svg")},
                   key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])
    out = []
    for i, stem in enumerate(stems, 1):
        img = next(figdir / f"{stem}.{e}" for e in ("svg", "png") if (figdir / f"{stem}.{e}")
                    .exists())
        cap = caps.get(stem, {})
        text = cap.get("caption") or stem.replace("_", " ")
        model = f" Model: {cap['model']}." if cap.get("model") else ""
        alt = text if cap.get("caption") else f"figure {stem}"
        links = " ".join(f'<a href="../{html.escape(run)}/figures/{stem}.{e}">{e.upper()}</a>'
                         for e in ("svg", "png", "pdf") if (figdir / f"{stem}.{e}").exists())
        out.append(
            f'<figure><a href="../{html.escape(run)}/figures/{html.escape(img.name)}">'
            f'<img src="../{html.escape(run)}/figures/{html.escape(img.name)}" '
            f'alt="{html.escape(alt)}"></a><figcaption><b>Figure {i}.</b> {html.escape(text)}'
            f"{html.escape(model)} {links}</figcaption></figure>")
    return out


def _tables(run_dir: Path, run: str, prefix: str = "") -> list[str]:
    from .apa import apa_table

    tdir = run_dir / "tables"
    caps = read_captions(tdir)
    out = []
    files = sorted([*tdir.glob(f"{prefix}*.csv"), *tdir.glob(f"{prefix}*.csv.gz")])
    for i, p in enumerate(files, 1):
        try:
            df = pd.read_csv(p)  # a .csv.gz too (a table of thousands of rows)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        stem = p.name.split(".csv")[0]
        cap = caps.get(stem, {})
        note = " ".join(x for x in (cap.get("model") and f"Model: {cap['model']}.",) if x)
        out.append(apa_table(df, number=i, title=cap.get("caption") or stem.replace("_", " "),
                             note=note, max_rows=_MAX_TABLE_ROWS,
                             csv_href=f"../{run}/tables/{p.name}"))
    return out


def _params(params: dict) -> str:
    if not params:
        return "<p>Default parameters of the notebook.</p>"
    items = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
                    for k, v in sorted(params.items()))
    return f'<dl class="params">{items}</dl>'


# ---------------------------------------------------------------------------------------------
# pages


def _run_summary(cfg, run: str) -> str:
    h = load_headline(cfg.output_dir / run)
    if h is None or _nan(h.get("r")):
        return ""
    pi = _r_ci(h, "r_pi_lb", "r_pi_ub")
    tau = fmt_var(h.get("tau2")) if not _nan(h.get("tau2")) else "\u2013"
    return (f"r = {fmt_r(h['r'])}, 95% CI {_r_ci(h)}" + (f", PI {pi}" if pi else "")
            + f", \u03c4\u00b2 = {tau}, I\u00b2 = {fmt_pct(h.get('I2'))}%, k = {fmt_int(h['k'])}"
            + (f" ({fmt_int(h['n_samples'])} samples)" if not _nan(h.get("n_samples")) else ""))


def _dataset_page(cfg, site: Path) -> list[str]:
    from .apa import apa_table

    body = ["<h1>The dataset</h1>"]
    effects, bib = _analysed_files(cfg)
    if effects.exists() and bib.exists():
        df = pd.read_csv(effects, dtype=str, keep_default_na=False)
        t1 = table1(df, parse_bib(bib)).drop(columns=["study_id", "sample_id"])
        t1["n"] = pd.to_numeric(t1["n"])
        _write(site / "table1.csv", t1.to_csv(index=False, lineterminator="\n"))
        body.append(apa_table(t1, number=1, title="Characteristics of the included samples",
                              kinds={"n": "int", "k": "int"},
                              note="One row per independent sample; n is the sample's largest "
                                   "analysed n, k its number of effects. Labels from "
                                   "studies/references.bib.", csv_href="table1.csv"))
    body.append("<h2>PRISMA 2020 flow diagram</h2>")
    found = False
    for r in _runs(cfg):
        d = cfg.output_dir / r.name
        figs = _figures(d, r.name, prefix="prisma")
        if not figs:
            continue
        found = True
        body.extend(figs)
        for t in _tables(d, r.name, prefix="prisma"):
            body.append(t)
    if not found:
        body.append("<p>No run drew the flow diagram yet (a figure named <code>prisma</code>, "
                    "drawn from <code>studies/screening.csv</code>).</p>")
    return body


def build_site(cfg) -> Path:
    """Build ``<output_dir>/site/`` from the runs' outputs (see the module docstring); returns
    the path of ``index.html``. Offline (relative links only), deterministic, and it rewrites
    only the files whose content changed."""
    out = cfg.output_dir
    site = out / "site"
    site.mkdir(parents=True, exist_ok=True)
    info = build_info(cfg)
    runs = _runs(cfg)
    nav = [("Home", "index.html"), ("Dataset", "dataset.html")]
    syn = read_syntheses(_studies(cfg))
    if syn is not None:
        nav.append(("Published syntheses", "syntheses.html"))
    nav += [(r.name, f"{r.name}.html") for r in runs]
    _write(site / "style.css", _CSS)

    main = headline_run(cfg)
    h = load_headline(out / main) if main else None
    hist = _update_history(site, info, h, cfg, main)

    body = ["<h1>alliance-meta: the alliance\u2013outcome association</h1>"]
    if h is not None:
        body.append(_caution(h, syn))
        body.append("<h2>Headline</h2>")
        body.append(_headline_block(h, main))
        body.extend(_figures(out / main, main))
        rep = out / main / "report.md"
        results = _md_section(rep.read_text(encoding="utf-8"), "Results") if rep.exists() else ""
        if results:
            body.append("<h2>Results</h2>")
            body.append(_md_to_html(results))
            body.append(f'<p>Method, results and references: <a href="{html.escape(main)}.html">'
                        f"{html.escape(main)}</a>.</p>")
    else:
        body.append("<p>No pooled run has been executed yet: run <code>alliance-meta run</code>."
                    "</p>")
    body.append("<h2>What changed</h2>")
    body.append(changes_html(hist))
    if syn is not None:
        body.append("<h2>Beside the published syntheses</h2>")
        body.append(_syntheses_table(syn, h, compact=True))
        body.append('<p>All pooled estimates: <a href="syntheses.html">published syntheses</a>.'
                    "</p>")
    body.append("<h2>Runs</h2><ul>")
    for r in runs:
        summary = _run_summary(cfg, r.name)
        nb = out / r.name / "notebook.html"
        nb_link = f' (<a href="../{html.escape(r.name)}/notebook.html">notebook</a>)' \
            if nb.exists() else ""
        body.append(f'<li><a href="{html.escape(r.name)}.html">{html.escape(r.name)}</a>'
                    f"{nb_link}{': ' + html.escape(summary) if summary else ''}</li>")
    body.append("</ul>")
    _write(site / "index.html", _page("Home", "index.html", nav, body, info))
    _write(site / "dataset.html", _page("Dataset", "dataset.html", nav, _dataset_page(cfg, site),
                                        info))
    if syn is not None:
        _write(site / "syntheses.html", _page(
            "Published syntheses", "syntheses.html", nav,
            ["<h1>Published syntheses</h1>", _syntheses_table(syn, h, compact=False)], info))
    for r in runs:
        _write(site / f"{r.name}.html", _page(r.name, f"{r.name}.html", nav,
                                              _run_page(cfg, r), info))
    return site / "index.html"


def _run_page(cfg, run) -> list[str]:
    d = cfg.output_dir / run.name
    body = [f"<h1>{html.escape(run.name)}</h1>", _params(run.parameters)]
    if (d / "notebook.html").exists():
        body.append(f'<p>Executed notebook: <a href="../{html.escape(run.name)}/notebook.html">'
                    f"{html.escape(run.notebook.name)}</a>.</p>")
    h = load_headline(d)
    if h is not None and (d / HEADLINE_FILE).exists() and h.get("n_samples", 0) < SMALL_K:
        body.append(f'<div class="caution"><p>Fewer than {SMALL_K} samples: read this run\'s '
                    "heterogeneity and prediction interval with caution.</p></div>")
    if (d / "report.md").exists():
        body.append(_md_to_html((d / "report.md").read_text(encoding="utf-8")))
    figs = _figures(d, run.name)
    if figs:
        body.append("<h2>Figures</h2>")
        body.extend(figs)
    tabs = _tables(d, run.name)
    if tabs:
        body.append("<h2>Tables</h2>")
        body.extend(tabs)
    return body
