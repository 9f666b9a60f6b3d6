"""Table 1 of a meta-analysis: the characteristics of the included studies, one row per sample,
labelled author-year from ``references.bib``.

The BibTeX reader is deliberately minimal: it reads ``@type{key, field = {value}, ...}`` entries
(braced or quoted values, nested braces, the common LaTeX accents) and nothing else, which is all
the curated bibliography uses; a full BibTeX parser would be a new dependency for one table.
In-text labels follow APA 7 (section 8.17): one or two authors by surname, three or more as
"First et al."; equal labels of different works get "a", "b" after the year (section 8.19).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import pandas as pd

__all__ = ["parse_bib", "author_year", "study_labels", "table1", "TABLE1_COLUMNS"]

#: (effects column, Table 1 header); columns absent from the data are left out.
TABLE1_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n", "n"),
    ("country", "Country"),
    ("population", "Population"),
    ("diagnosis", "Diagnosis"),
    ("modality", "Modality"),
    ("format", "Format"),
    ("delivery", "Delivery"),
    ("alliance_measure", "Alliance measure"),
    ("alliance_target", "Alliance target"),
    ("alliance_rater", "Alliance rater"),
    ("alliance_timing", "Alliance timing"),
    ("outcome_measure", "Outcome"),
    ("outcome_type", "Outcome type"),
    ("outcome_timing", "Outcome timing"),
    ("design", "Design"),
    ("r_kind", "r kind"),
)

_ACCENTS = {"\"": "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303",
            "c": "\u0327", "v": "\u030c", "=": "\u0304", "u": "\u0306", "H": "\u030b"}
_LETTERS = {"ss": "\u00df", "o": "\u00f8", "O": "\u00d8", "ae": "\u00e6", "AE": "\u00c6",
            "aa": "\u00e5", "AA": "\u00c5", "l": "\u0142", "L": "\u0141", "i": "\u0131"}


def _delatex(s: str) -> str:
    """LaTeX accents and braces to Unicode text (``Reuterski{\\"o}ld`` -> ``Reuterskiöld``)."""
    def accent(m: re.Match) -> str:
        return unicodedata.normalize("NFC", m.group(2) + _ACCENTS[m.group(1)])

    s = re.sub(r"\{?\\([\"'`^~=])\{?([A-Za-z])\}?\}?", accent, s)
    s = re.sub(r"\{?\\([cvuH])[ {]([A-Za-z])\}?\}?", accent, s)
    s = re.sub(r"\{?\\(ss|ae|AE|aa|AA|o|O|l|L|i)\}?(?![A-Za-z])",
               lambda m: _LETTERS[m.group(1)], s)
    s = s.replace("\\&", "&").replace("--", "\u2013").replace("~", " ")
    return re.sub(r"\s+", " ", s.replace("{", "").replace("}", "")).strip()


def _value(text: str, i: int) -> tuple[str, int]:
    """Read a braced, quoted or bare value starting at ``text[i]``; return it and the end."""
    if text[i] == "{":
        depth, j = 0, i
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[i + 1:j], j + 1
            j += 1
        raise ValueError("unbalanced braces in a BibTeX value")
    if text[i] == '"':
        j = text.index('"', i + 1)
        return text[i + 1:j], j + 1
    m = re.match(r"[^,}\s]+", text[i:])
    return (m.group(0) if m else ""), i + (m.end() if m else 0)


def parse_bib(source: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Entries of a BibTeX file (path or text) as ``{key: {field: value, "type": type}}``,
    field names lower-cased, values with LaTeX accents resolved."""
    text = Path(source).read_text(encoding="utf-8") if _is_path(source) else str(source)
    entries: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text):
        if m.group(1).lower() in ("comment", "string", "preamble"):
            continue
        fields = {"type": m.group(1).lower()}
        i = m.end()
        while i < len(text):
            f = re.match(r"\s*(\w[\w-]*)\s*=\s*", text[i:])
            if not f:
                break
            raw, i = _value(text, i + f.end())
            fields[f.group(1).lower()] = _delatex(raw)
            c = re.match(r"\s*,?", text[i:])
            i += c.end() if c else 0
        entries[m.group(2)] = fields
    return entries


def _is_path(source) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return "\n" not in source and "@" not in source and len(source) < 4096


def _surname(author: str) -> str:
    author = author.strip()
    if "," in author:
        return author.split(",", 1)[0].strip()
    parts = author.split()
    # "Ludwig van Beethoven" -> "van Beethoven": lower-case particles belong to the surname
    for j, p in enumerate(parts[:-1]):
        if p[:1].islower():
            return " ".join(parts[j:])
    return parts[-1] if parts else author


def author_year(entry: dict[str, str]) -> tuple[str, str]:
    """(authors as APA cites them in text, year) of one entry: "Miloff et al.", "2020"."""
    raw = entry.get("author") or entry.get("editor") or entry.get("title", "Anonymous")
    names = [_surname(a) for a in re.split(r"\s+and\s+", raw) if a.strip()]
    if len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} & {names[1]}"
    else:
        who = f"{names[0]} et al."
    return who, entry.get("year", "n.d.")


def study_labels(study_ids, bib: dict[str, dict[str, str]]) -> dict[str, str]:
    """``study_id -> "Author et al. (year)"``; ids missing from the bibliography keep their id.
    Equal labels of different studies get a/b suffixes, ordered by title (APA 8.19)."""
    ids = sorted(set(map(str, study_ids)))
    base: dict[str, tuple[str, str]] = {}
    for s in ids:
        if s in bib:
            base[s] = author_year(bib[s])
    groups: dict[tuple[str, str], list[str]] = {}
    for s, wy in base.items():
        groups.setdefault(wy, []).append(s)
    labels = {s: s for s in ids}
    for (who, year), members in groups.items():
        members.sort(key=lambda s: (bib[s].get("title", "").lower(), s))
        for j, s in enumerate(members):
            suffix = chr(ord("a") + j) if len(members) > 1 else ""
            labels[s] = f"{who} ({year}{suffix})"
    return labels


def _join(values: pd.Series) -> str:
    vals = [str(v) for v in values if pd.notna(v) and str(v).strip()]
    return "; ".join(dict.fromkeys(vals))


def table1(effects: pd.DataFrame, bib: dict[str, dict[str, str]] | str | os.PathLike
           ) -> pd.DataFrame:
    """Table 1: one row per sample (in order of label), with its study's author-year label,
    its n (the largest n among its effects: effects of one sample share participants), its
    number of effects, and the coded characteristics (distinct values joined by "; ").
    """
    if not isinstance(bib, dict):
        bib = parse_bib(bib)
    need = {"study_id", "sample_id"}
    missing = need - set(effects.columns)
    if missing:
        raise ValueError(f"table1: the effects have no column(s) {sorted(missing)}")
    labels = study_labels(effects["study_id"], bib)
    samples_per_study = effects.groupby("study_id")["sample_id"].nunique()
    rows = []
    for sid, g in effects.groupby("sample_id", sort=False):
        study = str(g["study_id"].iloc[0])
        label = labels[study]
        if samples_per_study[study] > 1:
            label += f", sample {str(sid).rsplit('_', 1)[-1].lstrip('s')}"
        row: dict = {"Study": label, "study_id": study, "sample_id": str(sid), "k": len(g)}
        for col, head in TABLE1_COLUMNS:
            if col not in g.columns:
                continue
            if col == "n":
                row[head] = int(pd.to_numeric(g["n"], errors="coerce").max())
            else:
                row[head] = _join(g[col])
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    # a characteristic coded for no sample says nothing: leave its column out
    empty = [c for c in out.columns if out[c].astype(str).str.strip().eq("").all()]
    out = out.drop(columns=empty)
    # APA reference order: first author's surname, then one-author works before two before
    # "et al.", then year
    def order(study: str) -> tuple:
        e = bib.get(study)
        if e is None:
            return (study.lower(), 9, "")
        names = [_surname(a) for a in re.split(r"\s+and\s+", e.get("author", "")) if a.strip()]
        return ((names[0] if names else study).lower(), min(len(names), 3), e.get("year", ""))

    keys = out["study_id"].map(order)
    out = out.assign(_k=keys).sort_values(["_k", "Study", "sample_id"], kind="stable")
    return out.drop(columns="_k").reset_index(drop=True)
