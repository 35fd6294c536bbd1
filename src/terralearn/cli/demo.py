"""`terralearn demo`: the whole workflow on the built-in sample scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, handle_errors, print_findings, progress_bar
from terralearn.cli._options import given, option
from terralearn.cli.train import print_progress
from terralearn.config import DemoConfig
from terralearn.runs import Registry


@handle_errors
def demo(
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the demo outputs (default WORKSPACE/demo).")
    ] = None,
    seed: Annotated[int | None, option(DemoConfig, "seed", "--seed")] = None,
    steps: Annotated[int | None, option(DemoConfig, "steps", "--steps")] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Run the workflow on the built-in sample: scene, checks, chips, training, report, map, evaluation."""
    from terralearn.demo import run_demo

    registry = Registry(workspace)
    config = DemoConfig.build(
        **given(folder=out or registry.root / "demo", seed=seed, steps=steps, workspace=registry.root)
    )
    bar, update = progress_bar("Exporting chips")
    with bar:
        result = run_demo(config, progress=update, on_epoch=print_progress)  # records the chip set and the runs
    print_findings(result.findings)
    ex = result.export
    tr = result.train
    m = ex.manifest
    console.print(
        f"\n[bold]Sample scene[/]  {result.scene.raster}\n"
        f"[bold]Labels[/]        {result.scene.labels}\n"
        f"[bold]Chips[/]         {ex.out}  ({ex.chips} chips: {ex.train_chips} train, {ex.val_chips} validation, "
        f"{m['band_count']} bands, {len(m['classes'])} classes, split by {m['split']['method']})\n"
        f"[bold]Manifest[/]      {ex.out / 'manifest.json'}\n"
        f"[bold]Chip index[/]    {ex.out / 'tiles.gpkg'} (open in QGIS to see every chip's footprint and split)\n"
        f"[bold]Model[/]         {tr.package}  ({_model_line(tr)})\n"
        f"[bold]Report[/]        {tr.report}\n"
        f"[bold]Map[/]           {result.classify.out}  (QGIS style {result.classify.qml.name}; "
        f"{result.classify.seconds:.1f} s)\n"
        f"[bold]Evaluation[/]    {result.evaluate.report}  (whole map against the truth: overall accuracy "
        f"{result.evaluate.metrics['overall_accuracy']:.1%}, kappa {result.evaluate.metrics['kappa']:.3f}, "
        f"mIoU {result.evaluate.metrics['mean_iou']:.3f})\n"
        f"[bold]Registry[/]      {registry.path}  (terralearn runs --workspace {registry.root})\n"
        f"[bold]In a browser[/]  terralearn ui --workspace {registry.root}  (the same workflow, no code: "
        "open the address it prints)",
        highlight=False,
    )
    if result.forest_evaluate is not None:
        print_comparison(result.evaluate.metrics, result.forest_evaluate.metrics, tr.card["architecture"])


def print_comparison(chosen: dict, forest: dict, name: str) -> None:
    """Where the shipped network helps, class by class, against the forest on the same chips (whole map)."""
    from terralearn.demo import compare_maps

    console.print(
        f"\n[bold]Where the network helps[/] (whole map against the truth; {name} vs the random forest trained on "
        f"the same chips): overall accuracy {chosen['overall_accuracy']:.1%} vs {forest['overall_accuracy']:.1%}, "
        f"mIoU {chosen['mean_iou']:.3f} vs {forest['mean_iou']:.3f}",
        highlight=False,
    )
    for row in compare_maps(chosen, forest):
        word = "helps" if row["gain"] >= 0.01 else "worse" if row["gain"] <= -0.01 else "same"
        console.print(f"  {row['name']:<14} IoU {row['iou']:.2f} vs {row['forest_iou']:.2f}  "
                      f"({row['gain']:+.2f}, {word})", highlight=False)  # fmt: skip


def _model_line(tr) -> str:
    m = tr.metrics
    sel = tr.card.get("selection")
    text = f"run {tr.run_id}: "
    text += f"chose {sel['chosen']}, cross-validated" if sel else "validation"
    text += f" accuracy {m['accuracy']:.1%}, Dice {m['dice']:.3f}, mIoU {m['mean_iou']:.3f}"
    if sel:
        forest = next((r for r in sel["leaderboard"] if r["candidate"] == "random_forest"), None)
        if forest and forest.get("accuracy") is not None and sel["chosen"] != "random_forest":
            text += f"; random forest {forest['accuracy']:.1%} / mIoU {forest['mean_iou']:.3f}"
    elif tr.baseline:
        text += f"; random forest {tr.baseline['accuracy']:.1%} / mIoU {tr.baseline['mean_iou']:.3f}"
    return text
