"""A review is a folder: where it is, and how ``alliance-meta init`` makes a new one.

A review holds ``pipeline.yml`` (the runs), ``studies/`` (the data), ``notebooks/`` (the
parameterised notebooks) and, once run, ``outputs/``. Every command works on the review that
contains the working directory, found upwards like git finds a repository, or on ``--project
DIR`` (or ``$ALLIANCE_META_PROJECT``); never on the package's own folder unless one stands in it.

The notebooks, the templates of ``pipeline.yml`` and of the review's README, and the codebook
ship as package data and are read through :mod:`importlib.resources`, so a review can be created
from a non-editable install of a wheel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..data import COLUMNS, schema, write_datapackage
from ..data.schema import PROJECT_ENV, REVIEW_MARKER, review_root

__all__ = ["Review", "NotAReviewError", "find_review", "init_review", "PROJECT_ENV"]

_TEMPLATES = "templates"
_NOTEBOOKS = "notebooks"


class NotAReviewError(FileNotFoundError):
    """Raised when no review contains the working directory and none was named."""


@dataclass(frozen=True)
class Review:
    """The paths of one review folder."""

    root: Path

    @property
    def pipeline(self) -> Path:
        return self.root / REVIEW_MARKER

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    @property
    def notebooks(self) -> Path:
        return self.root / _NOTEBOOKS


def find_review(project: str | os.PathLike | None = None,
                start: str | os.PathLike | None = None) -> Review:
    """The review to work on: ``project`` if given, else ``$ALLIANCE_META_PROJECT``, else the
    nearest folder at or above ``start`` (default: the working directory) holding
    ``pipeline.yml``. Raises :class:`NotAReviewError` with what to do when there is none."""
    if project is not None:
        root = Path(project).resolve()
        if not (root / REVIEW_MARKER).is_file():
            raise NotAReviewError(f"{root} is not a review: it has no {REVIEW_MARKER} "
                                  f"(create one with `alliance-meta init {project}`)")
        return Review(root)
    root = review_root(start)
    if root is None:
        where = Path(start).resolve() if start is not None else Path.cwd()
        raise NotAReviewError(
            f"no review here: neither {where} nor a folder above it holds {REVIEW_MARKER}. "
            "Create one with `alliance-meta init DIR` and work inside it, or pass --project DIR.")
    if not (root / REVIEW_MARKER).is_file():
        raise NotAReviewError(f"${PROJECT_ENV} = {root} has no {REVIEW_MARKER}")
    return Review(root)


def _package_files(package: str, sub: str):
    return resources.files(package).joinpath(sub)


def _copy_tree(src, dest: Path) -> list[Path]:
    """Copy a package-data folder (a Traversable, so it also works from a zip) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for item in sorted(src.iterdir(), key=lambda t: t.name):
        if item.name.startswith((".", "__")):
            continue
        if item.is_dir():
            written += _copy_tree(item, dest / item.name)
        else:
            target = dest / item.name
            target.write_bytes(item.read_bytes())
            written.append(target)
    return written


def init_review(target: str | os.PathLike, *, force: bool = False) -> Review:
    """Create a ready review in ``target`` (created if missing, or empty).

    Writes ``studies/`` (an ``effects.csv`` holding only the codebook's header, ``CODEBOOK.md``,
    an empty ``references.bib``, ``datapackage.json``, and the screening log and syntheses
    tables with their headers), ``pipeline.yml`` (every run of the
    packaged notebooks), ``notebooks/`` (copies of the packaged notebooks and their jupytext
    pairs), ``README.md`` and ``.gitignore``. Refuses a folder that already holds any of them
    unless ``force`` (which overwrites the templates but never an existing ``effects.csv`` or
    ``references.bib``).
    """
    root = Path(target).resolve()
    names = (REVIEW_MARKER, "studies", _NOTEBOOKS, "README.md")
    clash = [n for n in names if (root / n).exists()]
    if clash and not force:
        raise FileExistsError(f"{root} already holds {', '.join(clash)}; choose an empty folder "
                              "(or pass force=True / --force to rewrite the templates)")
    studies = root / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    effects = studies / "effects.csv"
    if not effects.exists():
        effects.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    bib = studies / "references.bib"
    if not bib.exists():
        bib.write_text("", encoding="utf-8")
    # the other tables of the codebook (screening log, published syntheses), header only
    for fields, name in (("SCREENING_FIELDS", "screening.csv"), ("SYNTHESES_FIELDS", "syntheses.csv")):
        cols = [f.name for f in getattr(schema, fields, ())]
        if cols and not (studies / name).exists():
            (studies / name).write_text(",".join(cols) + "\n", encoding="utf-8")
    syn_bib = studies / getattr(schema, "SYNTHESES_BIB_FILE", "syntheses.bib")
    if (studies / "syntheses.csv").exists() and not syn_bib.exists():
        syn_bib.write_text("", encoding="utf-8")
    codebook = _package_files("alliance_meta.data", "CODEBOOK.md")
    (studies / "CODEBOOK.md").write_bytes(codebook.read_bytes())
    write_datapackage(studies)
    _copy_tree(_package_files("alliance_meta.workflow", _NOTEBOOKS), root / _NOTEBOOKS)
    templates = _package_files("alliance_meta.workflow", _TEMPLATES)
    (root / REVIEW_MARKER).write_bytes(templates.joinpath("pipeline.yml").read_bytes())
    readme = templates.joinpath("README.md").read_text(encoding="utf-8")
    (root / "README.md").write_text(readme.replace("{name}", root.name), encoding="utf-8")
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        gitignore.write_bytes(templates.joinpath("gitignore").read_bytes())
    return Review(root)
