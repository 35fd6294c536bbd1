"""`terralearn export`: write training chips from rasters and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli import _inputs as opt
from terralearn.cli._common import Debug, Workspace, console, handle_errors, print_findings, progress_bar
from terralearn.config import ChipFormat, ExportConfig, OutputTiles, SplitMethod
from terralearn.runs import Registry

_help = {name: f.description for name, f in ExportConfig.model_fields.items()}


@handle_errors
def export(
    raster: opt.Rasters,
    labels: opt.Labels,
    out: Annotated[Path, typer.Option("--out", "-o", help=_help["out"])],
    class_field: opt.ClassField = None,
    class_name_field: opt.ClassNameField = None,
    class_value: opt.ClassValue = None,
    label_nodata: opt.LabelNodata = None,
    tile_size: opt.TileSize = 256,
    tile_size_x: opt.TileSizeX = None,
    tile_size_y: opt.TileSizeY = None,
    stride: Annotated[int | None, typer.Option("--stride", help="Step between chips, both axes.")] = None,
    stride_x: Annotated[int | None, typer.Option("--stride-x", help=_help["stride_x"])] = None,
    stride_y: Annotated[int | None, typer.Option("--stride-y", help=_help["stride_y"])] = None,
    output_tiles: Annotated[OutputTiles, typer.Option("--output-tiles", help=_help["output_tiles"])] = "features_only",
    min_polygon_overlap: Annotated[
        float, typer.Option("--min-polygon-overlap", help=_help["min_polygon_overlap_ratio"])
    ] = 0.0,
    max_nodata: Annotated[float, typer.Option("--max-nodata", help=_help["max_nodata_fraction"])] = 0.5,
    metadata_format: Annotated[
        ChipFormat, typer.Option("--format", help=_help["metadata_format"])
    ] = "classified_tiles",
    split: Annotated[SplitMethod, typer.Option("--split", help=_help["split"])] = "auto",
    val_fraction: Annotated[float, typer.Option("--val-fraction", help=_help["val_fraction"])] = 0.2,
    block_size: Annotated[int | None, typer.Option("--block-size", help=_help["block_size"])] = None,
    seed: Annotated[int, typer.Option("--seed", help=_help["seed"])] = 0,
    resampling: opt.Resamplings = None,
    buffer_radius: opt.BufferRadius = 0.0,
    mask: opt.Mask = None,
    invalid_geometries: opt.InvalidGeometries = "fix",
    background_class: opt.BackgroundClass = False,
    no_compress: Annotated[bool, typer.Option("--no-compress", help="Write chips uncompressed.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_help["overwrite"])] = False,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Export training chips (image + label mask) with a spatially honest train/validation split."""
    registry = Registry(workspace)
    config = ExportConfig.build(
        **opt.input_settings(
            raster, labels, class_field, class_name_field, class_value, label_nodata, tile_size, tile_size_x, tile_size_y,
            resampling, buffer_radius, mask, invalid_geometries, background_class,
        ),
        out=out, stride_x=stride_x or stride, stride_y=stride_y or stride, output_tiles=output_tiles,
        min_polygon_overlap_ratio=min_polygon_overlap, max_nodata_fraction=max_nodata,
        metadata_format=metadata_format, split=split, val_fraction=val_fraction, block_size=block_size, seed=seed,
        compress=not no_compress, overwrite=overwrite,
    )  # fmt: skip
    from terralearn.export import export as run_export

    bar, update = progress_bar("Exporting chips")
    with bar:
        result = run_export(config, progress=update)
    shown = [f for f in result.findings if f.severity != "info"]
    if shown:
        print_findings(shown)
    registry.record_chipset(result)
    m = result.manifest
    console.print(
        f"Wrote {result.chips} chips ({result.train_chips} train, {result.val_chips} validation; "
        f"split by {m['split']['method']}) of {m['band_count']} bands and {len(m['classes'])} classes to "
        f"{result.out} in {result.seconds:.1f} s ({result.chips_per_second:.0f} chips/s)."
    )
