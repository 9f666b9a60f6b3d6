"""Command line: ``alliance-meta init | validate | add-study | import | export | run``.

Each command is one function decorated with ``@app.command()``. Every command except ``init``
works on the review that contains the working directory (found upwards, like git) or on
``--project DIR`` (given before or after the command name); see :mod:`.project`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from ..data import (
    Problem,
    StudiesValidationError,
    ValidationReport,
    append_rows,
    validate_screening,
    validate_studies,
    validate_syntheses,
)
from .project import NotAReviewError, Review, find_review, init_review

app = typer.Typer(
    help="alliance-meta: a meta-analysis workbench for alliance-outcome research.",
    no_args_is_help=True,
    add_completion=False,
)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="The review folder (default: the one containing the "
                 "working directory, found upwards by its pipeline.yml)."),
]
_state: dict[str, Path | None] = {"project": None}


@app.callback()
def _main(project: ProjectOpt = None) -> None:
    """alliance-meta: a meta-analysis workbench for alliance-outcome research."""
    _state["project"] = project


def _review(project: Path | None) -> Review:
    try:
        return find_review(project if project is not None else _state["project"])
    except NotAReviewError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _shown(p: Problem) -> str:
    """The problem with its file relative to the working directory when it lies below it."""
    f = Path(p.file)
    if f.is_absolute() and f.is_relative_to(Path.cwd()):
        p = p._replace(file=str(f.relative_to(Path.cwd())))
    return str(p)


def _print_report(report: ValidationReport) -> None:
    for p in report.problems:
        typer.echo(_shown(p))
    typer.echo(
        f"{len(report.errors)} error(s), {len(report.warnings)} warning(s) in {report.n_rows} row(s)."
    )


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="The new review's folder (created if missing).")],
    force: Annotated[bool, typer.Option("--force", help="Rewrite the templates of an existing "
                                        "review (never its effects or bibliography).")] = False,
) -> None:
    """Create a ready review: studies/, notebooks/, pipeline.yml and a README."""
    try:
        review = init_review(directory, force=force)
    except FileExistsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Created the review {review.root}.\nNext: cd {directory}; alliance-meta import "
               "YOUR_DATA.csv (or add-study); alliance-meta run")


@app.command()
def validate(
    path: Annotated[Path | None, typer.Argument(
        help="The studies folder or an effects CSV (default: the review's studies/).")] = None,
    project: ProjectOpt = None,
) -> None:
    """Check effects.csv and references.bib and, for a studies folder, the screening log and
    the published syntheses too; print every problem as file:row: column: message."""
    target = path if path is not None else _review(project).studies
    reports = [validate_studies(target)]
    if Path(target).is_dir():  # a folder holds the screening log and syntheses as well
        reports += [validate_screening(target), validate_syntheses(target)]
    for r in reports:
        _print_report(r)
    raise typer.Exit(0 if all(r.ok for r in reports) else 1)


@app.command("add-study")
def add_study(
    file: Annotated[Path, typer.Argument(help="CSV with the new rows (the codebook's header).")],
    bib: Annotated[
        Path | None, typer.Option(help="BibTeX file with the new study's entry, appended too.")
    ] = None,
    studies: Annotated[
        Path | None, typer.Option(help="The studies folder (default: the review's studies/).")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Validate new rows together with the existing ones, then append them to effects.csv."""
    chosen = project if project is not None else _state["project"]
    try:
        review: Review | None = find_review(chosen)
    except NotAReviewError as e:
        if studies is None or chosen is not None:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        review = None  # rows go to --studies; there is no pipeline to re-run
    target = studies if studies is not None else review.studies  # type: ignore[union-attr]
    try:
        result = append_rows(file, target, bib=bib)
    except StudiesValidationError as e:
        typer.echo("Nothing was added. Fix these problems first:")
        _print_report(e.report)
        raise typer.Exit(1) from None
    typer.echo(f"Added {len(result.added)} row(s) to {target / 'effects.csv'}: {', '.join(result.added)}")
    if result.bib_keys:
        typer.echo(f"Added bibliography entries: {', '.join(result.bib_keys)}")
    for p in result.report.warnings:
        typer.echo(_shown(p))
    _run_pipeline(review, explicit=chosen is not None)


def _run_pipeline(review: Review | None, explicit: bool) -> None:
    """Re-run what depends on the studies, if the pipeline module exists yet."""
    try:
        pipeline = importlib.import_module("alliance_meta.workflow.pipeline")
    except ModuleNotFoundError as e:
        if e.name != "alliance_meta.workflow.pipeline":
            raise
        typer.echo("The pipeline is not available yet; outputs were not rebuilt.")
        return
    if review is None:
        typer.echo("No review contains the working directory; outputs were not rebuilt.")
        return
    typer.echo("Running the pipeline for what changed ...")
    # without --project the pipeline finds the same review from the working directory
    kw = {"config": review.pipeline} if explicit else {}
    result = pipeline.run_pipeline(only_changed=True, **kw)
    if result is not None:
        typer.echo(str(result))
        if not getattr(result, "ok", True):
            raise typer.Exit(code=1)


def _parse_rename(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise typer.BadParameter(f"{pair!r} is not OLD=NEW", param_hint="--rename")
        out[old.strip()] = new.strip()
    return out


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV, TSV or Excel file of effects coded elsewhere.")],
    rename: Annotated[list[str] | None, typer.Option(
        "--rename", help="OLD=NEW: a column of the file and its codebook name (repeatable), "
        "e.g. --rename Author=study_id --rename N=n --rename r_xy=r")] = None,
    sheet: Annotated[str | None, typer.Option(help="Excel sheet (default: the first).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; write nothing.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Append a dataset coded elsewhere (r + n, yi + vi, or the codebook's columns) to the review.

    Rows get provenance = external (no quote or source needed); every other check applies, and
    nothing is written unless every row passes.
    """
    from ..data.importer import import_effects

    review = _review(project)
    mapping = _parse_rename(rename)
    sheet_arg: str | int | None = int(sheet) if sheet is not None and sheet.isdigit() else sheet
    try:
        rows = import_effects(file, mapping, review.studies, sheet=sheet_arg, dry_run=dry_run)
    except StudiesValidationError as e:
        typer.echo("Nothing was imported. Fix these problems first:")
        _print_report(e.report)
        raise typer.Exit(1) from None
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"Nothing was imported: {e}", err=True)
        raise typer.Exit(1) from None
    verb = "Would import" if dry_run else "Imported"
    typer.echo(f"{verb} {len(rows)} row(s) from {rows['study_id'].nunique()} study(ies) into "
               f"{review.studies / 'effects.csv'}.")
    if rows.attrs.get("ignored_columns"):
        typer.echo("Columns not in the codebook, not imported: "
                   + ", ".join(rows.attrs["ignored_columns"]))
    for w in rows.attrs.get("warnings", []):
        typer.echo(w)
    if not dry_run:
        typer.echo("Next: alliance-meta run")


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="The CSV file to write.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="metafor (yi, vi, ids, moderators "
                                     "and an R script) or csv (all columns, r, yi, vi, weights)."
                                     )] = "metafor",
    project: ProjectOpt = None,
) -> None:
    """Write the review's effects for R's metafor or as a plain CSV."""
    from ..data.export import EXPORT_FORMATS, export_effects

    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(EXPORT_FORMATS)}", param_hint="--format")
    review = _review(project)
    try:
        written = export_effects(out, fmt, review.studies)
    except StudiesValidationError as e:
        typer.echo("Nothing was exported: the studies have errors.")
        _print_report(e.report)
        raise typer.Exit(1) from None
    typer.echo("Wrote " + ", ".join(str(p) for p in written))


def _run(review: Review, *, force: bool, jobs: int | None, only: list[str] | None,
         scheduler: str | None, config: Path | None = None) -> None:
    from .pipeline import run_pipeline

    report = run_pipeline(config or review.pipeline, force=force, jobs=jobs, only=only,
                          scheduler=scheduler)
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
def run(
    force: Annotated[bool, typer.Option("--force", help="Re-run every run, changed or not.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Parallel runs (default: cores).")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run names starting with this.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Pipeline config (default: the review's pipeline.yml).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address for the multiverse runs.")] = None,
    project: ProjectOpt = None,
) -> None:
    """Execute the notebooks of pipeline.yml with papermill: outputs/, tables, figures, site."""
    review = Review(config.resolve().parent) if config is not None else _review(project)
    _run(review, force=force, jobs=jobs, only=only, scheduler=scheduler, config=config)


if __name__ == "__main__":  # pragma: no cover
    app()
