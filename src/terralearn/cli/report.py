"""`terralearn report RUN`: the HTML review of a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, handle_errors
from terralearn.cli._options import given, option
from terralearn.config import ReportConfig


@handle_errors
def report(
    run: Annotated[int, typer.Argument(help=ReportConfig.model_fields["run"].description)],
    out: Annotated[Path | None, option(ReportConfig, "out", "--out", "-o")] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Write a self-contained HTML report of a run: curves, per-class scores, confusion matrix, samples."""
    from terralearn.train.report import write_run_report

    path = write_run_report(ReportConfig.build(**given(run=run, out=out, workspace=workspace)))
    console.print(f"Report: {path}")
