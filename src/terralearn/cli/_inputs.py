"""Options naming the inputs of an export, shared by `check` and `export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.config import CheckConfig
from terralearn.config import InvalidGeometries as InvalidGeometriesChoice

_help = {name: f.description for name, f in CheckConfig.model_fields.items()}

Rasters = Annotated[
    list[Path], typer.Option("--raster", "-r", help="Raster to stack as channels; repeat for more. " + _help["rasters"])
]
Labels = Annotated[Path, typer.Option("--labels", "-l", help=_help["labels"])]
ClassField = Annotated[str | None, typer.Option("--class-field", help=_help["class_field"])]
ClassNameField = Annotated[str | None, typer.Option("--class-name-field", help=_help["class_name_field"])]
ClassValue = Annotated[str | None, typer.Option("--class-value", help=_help["class_value"])]
LabelNodata = Annotated[float | None, typer.Option("--label-nodata", help=_help["label_nodata"])]
TileSize = Annotated[int, typer.Option("--tile-size", help="Chip width and height in pixels (typical 64-512).")]
TileSizeX = Annotated[int | None, typer.Option("--tile-size-x", help="Chip width, if not square.")]
TileSizeY = Annotated[int | None, typer.Option("--tile-size-y", help="Chip height, if not square.")]
Resamplings = Annotated[
    list[str] | None,
    typer.Option("--resampling", help=_help["resampling"] + " Repeat once per raster for per-raster methods."),
]
BufferRadius = Annotated[float, typer.Option("--buffer-radius", help=_help["buffer_radius"])]
Mask = Annotated[Path | None, typer.Option("--mask", help=_help["mask"])]
InvalidGeometries = Annotated[
    InvalidGeometriesChoice, typer.Option("--invalid-geometries", help=_help["invalid_geometries"])
]
BackgroundClass = Annotated[bool, typer.Option("--background-class", help=_help["background_class"])]


def input_settings(
    raster, labels, class_field, class_name_field, class_value, label_nodata, tile_size, tile_size_x, tile_size_y, resampling,
    buffer_radius, mask, invalid_geometries, background_class,
) -> dict:  # fmt: skip
    """The CheckConfig fields from the shared options."""
    return dict(
        rasters=list(raster),
        labels=labels,
        class_field=class_field,
        class_name_field=class_name_field,
        class_value=class_value,
        label_nodata=label_nodata,
        tile_size_x=tile_size_x or tile_size,
        tile_size_y=tile_size_y or tile_size,
        resampling=list(resampling) if resampling else ["auto"],
        buffer_radius=buffer_radius,
        mask=mask,
        invalid_geometries=invalid_geometries,
        background_class=background_class,
    )
