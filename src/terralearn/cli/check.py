"""`terralearn check`: pre-flight checks of an export's inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli import _inputs as opt
from terralearn.cli._common import Debug, Workspace, console, handle_errors, print_findings
from terralearn.config import CheckConfig
from terralearn.runs import resolve_workspace


@handle_errors
def check(
    raster: opt.Rasters,
    labels: opt.Labels,
    class_field: opt.ClassField = None,
    class_name_field: opt.ClassNameField = None,
    class_value: opt.ClassValue = None,
    label_nodata: opt.LabelNodata = None,
    tile_size: opt.TileSize = None,
    tile_size_x: opt.TileSizeX = None,
    tile_size_y: opt.TileSizeY = None,
    resampling: opt.Resamplings = None,
    buffer_radius: opt.BufferRadius = None,
    mask: opt.Mask = None,
    invalid_geometries: opt.InvalidGeometries = None,
    background_class: opt.BackgroundClass = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the findings as JSON here.")] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Check rasters and labels for the pitfalls of an export; exit non-zero on any error."""
    resolve_workspace(workspace)
    config = CheckConfig.build(**opt.input_settings(
        raster, labels, class_field, class_name_field, class_value, label_nodata, tile_size, tile_size_x, tile_size_y,
        resampling, buffer_radius, mask, invalid_geometries, background_class,
    ))  # fmt: skip
    from terralearn.checks import run_checks
    from terralearn.io.atomic import write_text_atomic

    report = run_checks(config)
    print_findings(report.findings)
    counts = report.as_dict()["counts"]
    console.print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s).")
    if json_out:
        write_text_atomic(json_out, json.dumps(report.as_dict(), indent=2, default=str))
        console.print(f"Findings written to {json_out}")
    if not report.ok:
        raise typer.Exit(1)
