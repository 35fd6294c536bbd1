"""`terralearn train`: train a pixel classifier on a chip set, package it and record the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from terralearn.cli._common import Debug, Workspace, console, err_console, handle_errors
from terralearn.cli._options import given, int_list, option
from terralearn.config import Architecture, DetectorPreset, Device, Loss, Monitor, Refit, TrainConfig, Weights


def print_epoch(row: dict, out=None) -> None:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    best = " best" if row["best_epoch"] == row["epoch"] else ""
    if "map50" in row:  # a detector
        scores = f"loss {fmt(row['train_loss'])}  val mAP50 {fmt(row['map50'])}  mAP {fmt(row['map'])}"
    else:
        scores = (f"loss {fmt(row['train_loss'])} / val {fmt(row['val_loss'])}  acc {fmt(row['accuracy'])}  "
                  f"dice {fmt(row['dice'])}  mIoU {fmt(row['mean_iou'])}")  # fmt: skip
    (out or err_console).print(
        f"epoch {row['epoch']:>3}/{row['epochs']}  {scores}  {row['seconds']:.1f}s{best}",
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
        if "map50" in row:
            scores = f"val mAP50 {row['map50']:.3f}"
        else:
            scores = f"val loss {row['val_loss'] or float('nan'):.3f}  mIoU {row['mean_iou'] or 0:.3f}"
        progress.update(task, completed=row["epoch"], total=row["epochs"], scores=scores)

    return progress, on_epoch


def _score(value) -> str:
    return "-" if value is None else f"{value:.3f}"


@handle_errors
def train(
    chips: Annotated[Path | None, option(TrainConfig, "chips", "--chips")] = None,
    out: Annotated[Path | None, option(TrainConfig, "out", "--out", "-o")] = None,
    model: Annotated[Architecture | None, option(TrainConfig, "model", "--model")] = None,
    time_budget: Annotated[float | None, option(TrainConfig, "time_budget", "--time-budget")] = None,
    folds: Annotated[int | None, option(TrainConfig, "cv_folds", "--folds")] = None,
    candidates: Annotated[
        str | None,
        option(
            TrainConfig,
            "candidates",
            "--candidates",
            help="--model auto: the candidates tried, a comma list of random_forest, cnn_s, cnn_m. "
            "[default: all three]",
        ),
    ] = None,
    steps: Annotated[int | None, option(TrainConfig, "steps", "--steps")] = None,
    backbone: Annotated[str | None, option(TrainConfig, "backbone", "--backbone")] = None,
    weights: Annotated[Weights | None, option(TrainConfig, "weights", "--weights")] = None,
    epochs: Annotated[int | None, option(TrainConfig, "epochs", "--epochs")] = None,
    batch_size: Annotated[int | None, option(TrainConfig, "batch_size", "--batch-size")] = None,
    lr: Annotated[float | None, option(TrainConfig, "learning_rate", "--lr")] = None,
    patience: Annotated[int | None, option(TrainConfig, "patience", "--patience")] = None,
    monitor: Annotated[Monitor | None, option(TrainConfig, "monitor", "--monitor")] = None,
    freeze_backbone: Annotated[bool, option(TrainConfig, "freeze_backbone", "--freeze-backbone")] = False,
    augment: Annotated[
        str | None,
        typer.Option(
            "--augment",
            help="default (flip,rot90,jitter), none, or a comma list of flip,rot90,jitter,noise. [default: default]",
            show_default=False,
        ),
    ] = None,
    chip_size: Annotated[int | None, option(TrainConfig, "chip_size", "--chip-size")] = None,
    loss: Annotated[Loss | None, option(TrainConfig, "loss", "--loss")] = None,
    focal_loss: Annotated[bool, typer.Option("--focal-loss", help="Shorthand for --loss focal.")] = False,
    focal_gamma: Annotated[float | None, option(TrainConfig, "focal_gamma", "--focal-gamma")] = None,
    class_balancing: Annotated[bool, option(TrainConfig, "class_balancing", "--class-balancing")] = False,
    oversample: Annotated[bool, option(TrainConfig, "oversample", "--oversample")] = False,
    mixup: Annotated[float | None, option(TrainConfig, "mixup", "--mixup")] = None,
    ignore_class: Annotated[list[str] | None, option(TrainConfig, "ignore_classes", "--ignore-class")] = None,
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="Skip the random-forest baseline.")] = False,
    trees: Annotated[int | None, option(TrainConfig, "trees", "--trees")] = None,
    no_onnx: Annotated[
        bool, typer.Option("--no-onnx", help="Skip the ONNX export that speeds up classify on a CPU.")
    ] = False,
    detector_preset: Annotated[
        DetectorPreset | None, option(TrainConfig, "detector_preset", "--detector-preset")
    ] = None,
    anchor_sizes: Annotated[
        str | None,
        option(
            TrainConfig,
            "anchor_sizes",
            "--anchor-sizes",
            help="Detection: five anchor sides in pixels, one per feature level, as a comma list (e.g. "
            "8,16,32,64,128). [default: from the chip size]",
        ),
    ] = None,
    refit: Annotated[Refit | None, option(TrainConfig, "refit", "--refit")] = None,
    device: Annotated[Device | None, option(TrainConfig, "device", "--device")] = None,
    seed: Annotated[int | None, option(TrainConfig, "seed", "--seed")] = None,
    name: Annotated[str | None, option(TrainConfig, "name", "--name")] = None,
    overwrite: Annotated[bool, option(TrainConfig, "overwrite", "--overwrite")] = False,
    resume_run: Annotated[
        int | None, option(TrainConfig, "resume", "--resume", help="Continue the interrupted run RUN.")
    ] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Train a pixel classifier (or the random-forest baseline) or a detector, package it and record the run."""
    from terralearn.train import train as run_train

    if resume_run is not None:  # the run's saved settings apply; the other options are not read
        config = TrainConfig.build(resume=resume_run, workspace=workspace)
    else:
        if chips is None or out is None:
            err_console.print("[bold red]Error:[/] --chips and --out are required (or --resume RUN).")
            raise typer.Exit(2)
        kinds = None if augment in (None, "default") else [] if augment == "none" else augment.split(",")
        config = TrainConfig.build(**given(
            chips=chips, out=out, model=model, time_budget=time_budget, cv_folds=folds,
            candidates=candidates.split(",") if candidates else None, steps=steps, backbone=backbone,
            weights=weights, epochs=epochs, batch_size=batch_size, learning_rate=lr, patience=patience,
            monitor=monitor, freeze_backbone=freeze_backbone, augment=kinds, chip_size=chip_size,
            loss="focal" if focal_loss and loss in (None, "ce") else loss, focal_gamma=focal_gamma,
            class_balancing=class_balancing, oversample=oversample, mixup=mixup, ignore_classes=ignore_class,
            baseline=False if no_baseline else None, trees=trees, onnx=False if no_onnx else None, device=device, seed=seed,
            detector_preset=detector_preset, refit=refit, anchor_sizes=int_list(anchor_sizes, "--anchor-sizes", "a comma list of whole numbers",
                                                                 "Write e.g. --anchor-sizes 8,16,32,64,128."),
            name=name,
            overwrite=overwrite, workspace=workspace,
        ))  # fmt: skip
    bar, on_epoch = epoch_bar()
    with bar:
        result = run_train(config, on_epoch=on_epoch)
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
    if result.card.get("task") == "detection":
        line = (f"Run {result.run_id} {result.status}: {result.card['architecture']} on the held-out blocks: "
                f"mAP50 {_score(m['map50'])}, mAP {_score(m['map'])} ({m['val_objects']} objects in "
                f"{m['val_chips']} validation chips)")  # fmt: skip
        if result.card.get("refit"):
            r = result.card["refit"]
            line += f"; then refitted on every chip ({r['chips']} chips, {r['epochs']} epochs)"
        elif result.card.get("refit_note"):
            err_console.print(f"[yellow]Note:[/] {result.card['refit_note']}", highlight=False)
    elif selection:
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
