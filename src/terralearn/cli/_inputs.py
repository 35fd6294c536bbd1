"""Options naming the inputs of an export, shared by `check` and `export` (derived from CheckConfig)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli._options import given, option
from terralearn.config import CheckConfig
from terralearn.config import InvalidGeometries as InvalidGeometriesChoice

C = CheckConfig
_help = {name: f.description for name, f in C.model_fields.items()}

Rasters = Annotated[
    list[Path], option(C, "rasters", "--raster", "-r", help="Raster to stack as channels; repeat for more. " + _help["rasters"])
]  # fmt: skip
Labels = Annotated[Path, option(C, "labels", "--labels", "-l")]
ClassField = Annotated[str | None, option(C, "class_field", "--class-field")]
ClassNameField = Annotated[str | None, option(C, "class_name_field", "--class-name-field")]
ClassValue = Annotated[str | None, option(C, "class_value", "--class-value")]
LabelNodata = Annotated[float | None, option(C, "label_nodata", "--label-nodata")]
TileSize = Annotated[
    int | None, option(C, "tile_size_x", "--tile-size", help="Chip width and height in pixels (typical 64-512).")
]
TileSizeX = Annotated[int | None, typer.Option("--tile-size-x", help="Chip width, if not square.")]
TileSizeY = Annotated[int | None, typer.Option("--tile-size-y", help="Chip height, if not square.")]
Resamplings = Annotated[
    list[str] | None,
    option(C, "resampling", "--resampling", help=_help["resampling"] + " Repeat once per raster for per-raster methods."),
]  # fmt: skip
BufferRadius = Annotated[float | None, option(C, "buffer_radius", "--buffer-radius")]
Mask = Annotated[Path | None, option(C, "mask", "--mask")]
InvalidGeometries = Annotated[InvalidGeometriesChoice | None, option(C, "invalid_geometries", "--invalid-geometries")]
BackgroundClass = Annotated[bool, option(C, "background_class", "--background-class")]


def input_settings(
    raster, labels, class_field, class_name_field, class_value, label_nodata, tile_size, tile_size_x, tile_size_y, resampling,
    buffer_radius, mask, invalid_geometries, background_class,
) -> dict:  # fmt: skip
    """The CheckConfig fields the shared options gave (the others keep the config's defaults)."""
    return given(
        rasters=list(raster),
        labels=labels,
        class_field=class_field,
        class_name_field=class_name_field,
        class_value=class_value,
        label_nodata=label_nodata,
        tile_size_x=tile_size_x or tile_size,
        tile_size_y=tile_size_y or tile_size,
        resampling=list(resampling) if resampling else None,
        buffer_radius=buffer_radius,
        mask=mask,
        invalid_geometries=invalid_geometries,
        background_class=background_class,
    )
