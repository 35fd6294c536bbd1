"""Options shared by every command, and the one place where errors become messages and exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from terralearn.errors import ChecksFailedError, TerraLearnError

console = Console()
err_console = Console(stderr=True)

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}

Workspace = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        envvar="TERRALEARN_WORKSPACE",
        help="Workspace folder holding the run registry and job records (default: the current folder).",
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback of unexpected errors.")]


def print_findings(findings, out=console) -> None:
    """The pre-flight findings as one table (check, export, demo, and refused inputs alike)."""
    from rich.table import Table

    table = Table(title="Pre-flight checks", show_lines=True, expand=True)
    table.add_column("Severity", no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Finding", ratio=3)
    table.add_column("Fix", ratio=2)
    for f in findings:
        table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f.check, f.message, f.fix)
    out.print(table)


def handle_errors(fn):
    """Run a command body; print TerraLearn errors in plain words and exit non-zero, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug"))
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ChecksFailedError as exc:
            print_findings(exc.findings, err_console)
            err_console.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
            err_console.print(f"[bold]Fix:[/] {exc.fix}", highlight=False)
            err_console.print("Nothing was written. Run `terralearn check` with the same inputs to see every finding.")
            raise typer.Exit(exc.exit_code) from None
        except TerraLearnError as exc:
            if debug:
                raise
            err_console.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
            if exc.fix:
                err_console.print(f"[bold]Fix:[/] {exc.fix}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted; nothing was written.")
            raise typer.Exit(130) from None
        except Exception as exc:
            if debug:
                raise
            err_console.print(
                f"[bold red]Unexpected error:[/] {type(exc).__name__}: {exc}\n"
                "Re-run with --debug for the traceback, and report it if the inputs look right.",
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper


def progress_bar(description: str, extra: Callable[[int, int], str] | None = None):
    """A rich progress bar and a ``(done, total)`` callback for stage functions.

    ``extra(done, total)``, when given, is text shown after the counts (e.g. the area done).
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if extra is not None:
        columns.append(TextColumn("{task.fields[extra]}"))
    progress = Progress(
        *columns,
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=not sys.stderr.isatty(),
    )
    task = progress.add_task(description, total=None, extra="")

    def update(done: int, total: int) -> None:
        if extra is None:
            progress.update(task, completed=done, total=total)
        else:
            progress.update(task, completed=done, total=total, extra=extra(done, total))

    return progress, update
