"""`terralearn export`: write training chips from rasters and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli import _inputs as opt
from terralearn.cli._common import Debug, Workspace, console, handle_errors, print_findings, progress_bar
from terralearn.cli._options import given, option
from terralearn.config import ChipFormat, ExportConfig, OutputTiles, SplitMethod, TaskName
from terralearn.runs import resolve_workspace

E = ExportConfig


@handle_errors
def export(
    raster: opt.Rasters,
    labels: opt.Labels,
    out: Annotated[Path, option(E, "out", "--out", "-o")],
    task: Annotated[TaskName | None, option(E, "task", "--task")] = None,
    class_field: opt.ClassField = None,
    class_name_field: opt.ClassNameField = None,
    class_value: opt.ClassValue = None,
    label_nodata: opt.LabelNodata = None,
    tile_size: opt.TileSize = None,
    tile_size_x: opt.TileSizeX = None,
    tile_size_y: opt.TileSizeY = None,
    stride: Annotated[int | None, typer.Option("--stride", help="Step between chips, both axes.")] = None,
    stride_x: Annotated[int | None, option(E, "stride_x", "--stride-x")] = None,
    stride_y: Annotated[int | None, option(E, "stride_y", "--stride-y")] = None,
    output_tiles: Annotated[OutputTiles | None, option(E, "output_tiles", "--output-tiles")] = None,
    min_polygon_overlap: Annotated[
        float | None, option(E, "min_polygon_overlap_ratio", "--min-polygon-overlap")
    ] = None,
    max_nodata: Annotated[float | None, option(E, "max_nodata_fraction", "--max-nodata")] = None,
    min_visible: Annotated[float | None, option(E, "min_visible", "--min-visible")] = None,
    empty_ratio: Annotated[float | None, option(E, "empty_ratio", "--empty-ratio")] = None,
    border_width: Annotated[int | None, option(E, "border_width", "--border-width")] = None,
    interior_erosion: Annotated[int | None, option(E, "interior_erosion", "--interior-erosion")] = None,
    metadata_format: Annotated[ChipFormat | None, option(E, "metadata_format", "--format")] = None,
    split: Annotated[SplitMethod | None, option(E, "split", "--split")] = None,
    val_fraction: Annotated[float | None, option(E, "val_fraction", "--val-fraction")] = None,
    block_size: Annotated[int | None, option(E, "block_size", "--block-size")] = None,
    seed: Annotated[int | None, option(E, "seed", "--seed")] = None,
    resampling: opt.Resamplings = None,
    buffer_radius: opt.BufferRadius = None,
    mask: opt.Mask = None,
    invalid_geometries: opt.InvalidGeometries = None,
    background_class: opt.BackgroundClass = False,
    no_compress: Annotated[bool, option(E, "compress", "--no-compress", help="Write chips uncompressed.")] = False,
    overwrite: Annotated[bool, option(E, "overwrite", "--overwrite")] = False,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Export training chips (image + label mask; image + boxes with --task detection; image + instance masks
    with --task instances) with a spatially honest train/validation split."""
    root = resolve_workspace(workspace)
    config = ExportConfig.build(
        **opt.input_settings(
            raster, labels, class_field, class_name_field, class_value, label_nodata, tile_size, tile_size_x, tile_size_y,
            resampling, buffer_radius, mask, invalid_geometries, background_class,
        ),
        **given(
            out=out, task=task, min_visible=min_visible, empty_ratio=empty_ratio, border_width=border_width,
            interior_erosion=interior_erosion, stride_x=stride_x or stride, stride_y=stride_y or stride, output_tiles=output_tiles,
            min_polygon_overlap_ratio=min_polygon_overlap, max_nodata_fraction=max_nodata,
            metadata_format=metadata_format, split=split, val_fraction=val_fraction, block_size=block_size, seed=seed,
            compress=False if no_compress else None, overwrite=overwrite, workspace=root,
        ),
    )  # fmt: skip
    from terralearn.export import export as run_export

    bar, update = progress_bar("Exporting chips")
    with bar:
        result = run_export(config, progress=update)  # records the chip set in the workspace's run table
    shown = [f for f in result.findings if f.severity != "info"]
    if shown:
        print_findings(shown)
    m = result.manifest
    objects = f", {sum(m['objects']['in_chips']):,} objects" if "objects" in m else ""  # object tasks
    refit = m["chips"].get("refit")
    refit = f", {refit} for the refit on every label only" if refit else ""
    console.print(
        f"Wrote {result.chips} chips ({result.train_chips} train, {result.val_chips} validation{refit}; "
        f"split by {m['split']['method']}) of {m['band_count']} bands and {len(m['classes'])} classes to "
        f"{result.out}{objects} in {result.seconds:.1f} s ({result.chips_per_second:.0f} chips/s)."
    )
