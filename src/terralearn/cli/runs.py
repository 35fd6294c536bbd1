"""`terralearn runs`: the table of every training run; `runs compare A B`."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated

import typer
from rich.table import Table

from terralearn.cli._common import Debug, Workspace, console, handle_errors
from terralearn.runs import RUN_COLUMNS, Registry, compare_runs

app = typer.Typer(help="The run table: every training run of the workspace.", no_args_is_help=False)

SHORT = {"training_seconds": "time s", "model_size_mb": "MB", "epochs_set": "ep set", "epochs_run": "epochs",
         "best_epoch": "best", "chip_set_fingerprint": "chips id", "baseline_accuracy": "RF acc", "accuracy": "acc", "status": "status",
         "per_class_iou": "IoU per class", "pixel_size": "px size", "chip_size": "chip", "mean_iou": "mIoU",
         "headline": "score", "map50": "mAP50", "map": "mAP"}  # fmt: skip


COMPACT = [
    "id",
    "name",
    "task",
    "status",
    "epochs_run",
    "training_seconds",
    "headline",
    "accuracy",
    "dice",
    "mean_iou",
    "baseline_accuracy",
]


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("accuracy", "dice", "mean_iou", "baseline_accuracy", "map50", "map") and isinstance(value, float):
        return f"{value:.3f}"
    if key == "per_class_iou":
        vals = json.loads(value) if isinstance(value, str) else value
        return " ".join("-" if v is None else f"{v:.2f}" for v in vals)
    if key == "training_seconds":
        return f"{value:.0f}"
    if key == "created":
        return str(value)[5:16].replace("T", " ")
    return str(value)


def _headline(row: dict) -> str:
    """The run's headline metric with its name (mIoU for pixel runs, mAP50 for detectors): one column ranks all."""
    value, metric = row.get("headline"), row.get("headline_metric")
    if value is None or not metric:
        return "-"
    return f"{SHORT.get(metric, metric)} {value:.3f}"


@app.callback(invoke_without_command=True)
@handle_errors
def runs(
    ctx: typer.Context,
    sort: Annotated[
        str, typer.Option("--sort", help="Column to sort by, e.g. headline (each task's own score), mean_iou or map50.")
    ] = "id",
    descending: Annotated[bool, typer.Option("--desc", help="Sort in descending order.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the table as CSV.")] = False,
    wide: Annotated[bool, typer.Option("--all", help="Show every column (data, sizes, per-class IoU).")] = False,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """List every training run with its data, model and scores."""
    if ctx.invoked_subcommand is not None:
        return
    rows = Registry(workspace).runs(sort, descending)
    if as_json:
        typer.echo(json.dumps([{k: r[k] for k in RUN_COLUMNS} for r in rows], indent=2))
    elif as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buf.getvalue(), nl=False)
    else:
        shown = [c for c in RUN_COLUMNS if c != "package"] if wide else COMPACT
        table = Table(title=f"Runs ({len(rows)})")
        for c in shown:
            table.add_column(SHORT.get(c, c.replace("_", " ")), overflow="fold", min_width=len(SHORT.get(c, c)))
        for r in rows:
            table.add_row(*[_headline(r) if c == "headline" else _fmt(c, r[c]) for c in shown])
        console.print(table)


@app.command("compare")
@handle_errors
def compare(
    a: Annotated[int, typer.Argument(help="First run number.")],
    b: Annotated[int, typer.Argument(help="Second run number.")],
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Show two runs side by side, with the difference of their scores."""
    registry = Registry(workspace)
    ra, rb = registry.run(a), registry.run(b)
    table = Table(title=f"Run {a} vs run {b}")
    table.add_column("")
    table.add_column(f"run {a}")
    table.add_column(f"run {b}")
    table.add_column("b - a")
    for row in compare_runs(ra, rb):
        key, diff = row["key"], row["diff"]
        shown = "" if diff is None else (f"{diff:+.3f}" if isinstance(diff, float) else f"{diff:+d}")
        table.add_row(key.replace("_", " "), _fmt(key, row["a"]), _fmt(key, row["b"]), shown)
    console.print(table)
