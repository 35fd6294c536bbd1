"""`terralearn train`: train a pixel classifier on a chip set, package it and record the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from terralearn.cli._common import Debug, Workspace, console, err_console, handle_errors
from terralearn.config import Architecture, Device, Loss, Monitor, TrainConfig, Weights

_help = {name: f.description for name, f in TrainConfig.model_fields.items()}


def print_epoch(row: dict, out=None) -> None:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    best = " best" if row["best_epoch"] == row["epoch"] else ""
    (out or err_console).print(
        f"epoch {row['epoch']:>3}/{row['epochs']}  loss {fmt(row['train_loss'])} / val {fmt(row['val_loss'])}  "
        f"acc {fmt(row['accuracy'])}  dice {fmt(row['dice'])}  mIoU {fmt(row['mean_iou'])}  {row['seconds']:.1f}s{best}",
        highlight=False,
        soft_wrap=True,
    )


_STAGES = {"cv": "cross-validating", "timing": "timing the networks", "refit": "refitting on every label",
           "scored": "cross-validating"}  # fmt: skip


def print_selection(event: dict, out=None) -> None:
    """One line per step of the model selection (``--model auto``)."""
    from terralearn.train.select import describe

    text = describe(event)
    if text:
        (out or err_console).print(text, highlight=False, soft_wrap=True)


def print_progress(row: dict, out=None) -> None:
    """An epoch's line, or a step of the model selection."""
    (print_selection if "stage" in row else print_epoch)(row, out)


def epoch_bar():
    """A progress bar over epochs showing the losses and the scores, plus one line per epoch above it."""
    progress = Progress(
        TextColumn("[bold]Training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[scores]}"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
    )
    task = progress.add_task("train", total=None, scores="")

    def on_epoch(row: dict) -> None:
        out = progress.console if progress.live.is_started else err_console
        if "stage" in row:  # --model auto: the selection's steps
            print_selection(row, out)
            progress.update(task, scores=_STAGES.get(row["stage"], ""))
            return
        print_epoch(row, out)
        progress.update(task, completed=row["epoch"], total=row["epochs"],
                        scores=f"val loss {row['val_loss'] or float('nan'):.3f}  mIoU {row['mean_iou'] or 0:.3f}")  # fmt: skip

    return progress, on_epoch


@handle_errors
def train(
    chips: Annotated[Path | None, typer.Option("--chips", help=_help["chips"])] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help=_help["out"])] = None,
    model: Annotated[Architecture, typer.Option("--model", help=_help["model"])] = "auto",
    time_budget: Annotated[float, typer.Option("--time-budget", help=_help["time_budget"])] = 600.0,
    folds: Annotated[int, typer.Option("--folds", help=_help["cv_folds"])] = 3,
    backbone: Annotated[str, typer.Option("--backbone", help=_help["backbone"])] = "resnet18",
    weights: Annotated[Weights, typer.Option("--weights", help=_help["weights"])] = "auto",
    epochs: Annotated[int, typer.Option("--epochs", help=_help["epochs"])] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size", help=_help["batch_size"])] = 16,
    lr: Annotated[float | None, typer.Option("--lr", help=_help["learning_rate"])] = None,
    patience: Annotated[int, typer.Option("--patience", help=_help["patience"])] = 10,
    monitor: Annotated[Monitor, typer.Option("--monitor", help=_help["monitor"])] = "mean_iou",
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help=_help["freeze_backbone"])] = False,
    augment: Annotated[
        str,
        typer.Option(
            "--augment", help="default (flip,rot90,jitter), none, or a comma list of flip,rot90,jitter,noise."
        ),
    ] = "default",
    chip_size: Annotated[int | None, typer.Option("--chip-size", help=_help["chip_size"])] = None,
    loss: Annotated[Loss, typer.Option("--loss", help=_help["loss"])] = "ce",
    focal_loss: Annotated[bool, typer.Option("--focal-loss", help="Shorthand for --loss focal.")] = False,
    focal_gamma: Annotated[float, typer.Option("--focal-gamma", help=_help["focal_gamma"])] = 2.0,
    class_balancing: Annotated[bool, typer.Option("--class-balancing", help=_help["class_balancing"])] = False,
    oversample: Annotated[bool, typer.Option("--oversample", help=_help["oversample"])] = False,
    mixup: Annotated[float, typer.Option("--mixup", help=_help["mixup"])] = 0.0,
    ignore_class: Annotated[list[str] | None, typer.Option("--ignore-class", help=_help["ignore_classes"])] = None,
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="Skip the random-forest baseline.")] = False,
    trees: Annotated[int, typer.Option("--trees", help=_help["trees"])] = 100,
    device: Annotated[Device, typer.Option("--device", help=_help["device"])] = "auto",
    seed: Annotated[int, typer.Option("--seed", help=_help["seed"])] = 0,
    name: Annotated[str | None, typer.Option("--name", help=_help["name"])] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_help["overwrite"])] = False,
    resume_run: Annotated[int | None, typer.Option("--resume", help="Continue the interrupted run RUN.")] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Train a pixel classifier (or the random-forest baseline), package it and record the run."""
    from terralearn.train import resume
    from terralearn.train import train as run_train

    bar, on_epoch = epoch_bar()
    if resume_run is not None:
        with bar:
            result = resume(resume_run, workspace, on_epoch=on_epoch)
    else:
        if chips is None or out is None:
            err_console.print("[bold red]Error:[/] --chips and --out are required (or --resume RUN).")
            raise typer.Exit(2)
        kinds = {"default": ["flip", "rot90", "jitter"], "none": []}.get(augment)
        config = TrainConfig.build(
            chips=chips, out=out, model=model, time_budget=time_budget, cv_folds=folds, backbone=backbone, weights=weights, epochs=epochs,
            batch_size=batch_size, learning_rate=lr, patience=patience, monitor=monitor,
            freeze_backbone=freeze_backbone, augment=kinds if kinds is not None else augment.split(","),
            chip_size=chip_size, loss="focal" if focal_loss and loss == "ce" else loss, focal_gamma=focal_gamma,
            class_balancing=class_balancing, oversample=oversample, mixup=mixup, ignore_classes=ignore_class or [],
            baseline=not no_baseline, trees=trees, device=device, seed=seed, name=name, overwrite=overwrite,
        )  # fmt: skip
        with bar:
            result = run_train(config, workspace, on_epoch=on_epoch)
    if result.weights_note:
        err_console.print(f"[yellow]Note:[/] {result.weights_note}")
    for w in result.warnings:
        err_console.print(f"[bold yellow]Warning:[/] {w['message']}\n  [bold]Fix:[/] {w['fix']}", highlight=False)
    if result.package is None:
        console.print(f"Run {result.run_id} was interrupted before the first epoch ended; nothing was packaged. "
                      f"Resume with `terralearn train --resume {result.run_id}`.")  # fmt: skip
        raise typer.Exit(130)
    m = result.metrics
    selection = result.card.get("selection")
    if selection:
        console.print(selection["reason"], highlight=False, soft_wrap=True)
        line = (f"Run {result.run_id} {result.status}: chose {selection['chosen']}; cross-validated on held-out "
                f"polygons: accuracy {m['accuracy']:.1%}, Dice {m['dice']:.3f}, mIoU {m['mean_iou']:.3f}")  # fmt: skip
    else:
        line = (f"Run {result.run_id} {result.status}: validation accuracy {m['accuracy']:.1%}, "
                f"Dice {m['dice']:.3f}, mIoU {m['mean_iou']:.3f}")  # fmt: skip
    if result.baseline:
        line += f" (random forest: accuracy {result.baseline['accuracy']:.1%}, mIoU {result.baseline['mean_iou']:.3f})"
    console.print(line + f" in {result.seconds:.0f} s.", highlight=False)
    console.print(f"Model package: {result.package} (and {result.package}.zip)\nRun folder:    {result.run_dir}\n"
                  f"Report:        {result.report}", highlight=False)  # fmt: skip
    if result.status == "interrupted":
        console.print(f"Interrupted: the best model so far is packaged. Resume with `terralearn train --resume "
                      f"{result.run_id}`.")  # fmt: skip
        raise typer.Exit(130)
