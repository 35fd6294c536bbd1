"""`terralearn report RUN`: the HTML review of a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, handle_errors


@handle_errors
def report(
    run: Annotated[int, typer.Argument(help="Run number (see `terralearn runs`).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for report.html and its PNGs.")] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Write a self-contained HTML report of a run: curves, per-class scores, confusion matrix, samples."""
    from terralearn.train.review import write_run_report

    path = write_run_report(run, out, workspace)
    console.print(f"Report: {path}")
