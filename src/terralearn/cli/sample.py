"""`terralearn sample`: write the built-in sample scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, handle_errors
from terralearn.runs import resolve_workspace


@handle_errors
def sample(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample scene into.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generator (same seed, same scene).")] = 42,
    size: Annotated[int, typer.Option("--size", min=64, help="Raster width and height in pixels.")] = 512,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Write the built-in sample scene: a 6-band image, label polygons and a full truth map."""
    resolve_workspace(workspace)
    from terralearn.sample import make_sample

    scene = make_sample(out, seed=seed, size=size)
    console.print(f"Image:  {scene.raster}\nLabels: {scene.labels} (class field '{scene.class_field}', "
                  f"names in '{scene.class_name_field}')\nTruth:  {scene.truth}")  # fmt: skip
