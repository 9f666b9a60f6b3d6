"""Command line: ``alliance-meta validate``, ``alliance-meta add-study``, ``alliance-meta run``.

Each command is one function decorated with ``@app.command()``; adding a command (``run``) is adding
one such function.
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
    studies_dir,
    validate_studies,
)

app = typer.Typer(
    help="alliance-meta: a meta-analysis workbench for alliance-outcome research.",
    no_args_is_help=True,
    add_completion=False,
)

PathArg = Annotated[
    Path | None,
    typer.Argument(help="The studies folder or an effects CSV (default: the repository's studies/)."),
]


@app.callback()
def _main() -> None:
    """alliance-meta: a meta-analysis workbench for alliance-outcome research."""


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
def validate(path: PathArg = None) -> None:
    """Check effects.csv and references.bib; print every problem as file:row: column: message."""
    report = validate_studies(path)
    _print_report(report)
    raise typer.Exit(0 if report.ok else 1)


@app.command("add-study")
def add_study(
    file: Annotated[Path, typer.Argument(help="CSV with the new rows (the codebook's header).")],
    bib: Annotated[
        Path | None, typer.Option(help="BibTeX file with the new study's entry, appended too.")
    ] = None,
    studies: Annotated[
        Path | None, typer.Option(help="The studies folder (default: the repository's studies/).")
    ] = None,
) -> None:
    """Validate new rows together with the existing ones, then append them to effects.csv."""
    try:
        result = append_rows(file, studies, bib=bib)
    except StudiesValidationError as e:
        typer.echo("Nothing was added. Fix these problems first:")
        _print_report(e.report)
        raise typer.Exit(1) from None
    target = studies_dir(studies)
    typer.echo(f"Added {len(result.added)} row(s) to {target / 'effects.csv'}: {', '.join(result.added)}")
    if result.bib_keys:
        typer.echo(f"Added bibliography entries: {', '.join(result.bib_keys)}")
    for p in result.report.warnings:
        typer.echo(_shown(p))
    _run_pipeline()


def _run_pipeline() -> None:
    """Re-run what depends on the studies, if the pipeline module exists yet."""
    try:
        pipeline = importlib.import_module("alliance_meta.workflow.pipeline")
    except ModuleNotFoundError as e:
        if e.name != "alliance_meta.workflow.pipeline":
            raise
        typer.echo("The pipeline is not available yet; outputs were not rebuilt.")
        return
    typer.echo("Running the pipeline for what changed ...")
    result = pipeline.run_pipeline(only_changed=True)
    if result is not None:
        typer.echo(str(result))
        if not getattr(result, "ok", True):
            raise typer.Exit(code=1)


@app.command()
def run(
    force: Annotated[bool, typer.Option("--force", help="Re-run every run, changed or not.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Parallel runs (default: cores).")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run names starting with this.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Pipeline config (default: pipeline.yml).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address for the multiverse runs.")] = None,
) -> None:
    """Execute the notebooks of pipeline.yml with papermill: outputs/, tables, figures, site."""
    from .pipeline import run_pipeline

    report = run_pipeline(config, force=force, jobs=jobs, only=only, scheduler=scheduler)
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(code=1)


if __name__ == "__main__":  # pragma: no cover
    app()
