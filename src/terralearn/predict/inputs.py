"""What classify checks and derives from its inputs before the first tile: grid, bands, tile size, area of interest."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window

from terralearn.errors import RasterError
from terralearn.geo.grid import Grid
from terralearn.io.raster import RasterStack
from terralearn.io.vector import read_vector


def check_grid(grid: Grid, path: Path) -> None:
    if grid.is_rotated or grid.is_south_up:
        raise RasterError(
            f"'{path}' has a {'rotated' if grid.is_rotated else 'south-up'} grid.",
            "Warp it to a north-up grid first: gdalwarp IN OUT.",
        )


def check_bands(card: dict, stack: RasterStack, check_names: bool) -> None:
    expected, got = list(card["bands"]), list(stack.band_names)
    if len(expected) != len(got):
        raise RasterError(
            f"The model was trained on {len(expected)} bands {expected}; the rasters given have {len(got)} bands "
            f"{got}.",
            "Pass the same rasters as at export, in the same order (--raster A --raster B ...).",
        )
    # Names made up from file names (scene_b1, ...) say nothing about the band: only real band descriptions count.
    clash = [i for i, (e, g) in enumerate(zip(expected, got, strict=True))
             if e != g and stack.described[i] and not re.search(r"_b\d+$", e)]  # fmt: skip
    if clash and check_names:
        raise RasterError(
            f"The band names differ from the model's: trained on {expected}, given {got}.",
            "Pass the rasters in the training order; if only the file names changed, add --ignore-band-names.",
        )


def pixel_size_warning(card: dict, grid: Grid) -> str | None:
    trained = card.get("pixel_size") or grid.res
    if abs(grid.res[0] - trained[0]) > 0.01 * trained[0]:
        return (
            f"The raster's pixels are {grid.res[0]:.4g} units, the model was trained on {trained[0]:.4g}: "
            "objects look larger or smaller than in training. Resample the raster to the training pixel size "
            "(gdalwarp -tr) for best results."
        )
    return None


def default_tile(card: dict) -> int:
    """The card's tile size if it names one, else the training chip size: a network trained on whole chips sees
    the same context (and the same borders) as in training.

    Measured on the Landsat sample: a U-Net trained on 32-px chips scores 96.5 % on the labelled
    pixels with 32-px tiles, 79 % with 64-px tiles and 12 % with 256-px tiles.
    """
    if card.get("tile_size"):  # a model trained on crops of many sizes (``--model auto``) says what suits it
        return int(card["tile_size"])
    return max(int(v) for v in card["chip_size"])


def read_aoi(path: Path | None, grid: Grid):
    """The area of interest as one geometry in the grid's CRS (None without one); refused if off the raster."""
    if path is None:
        return None
    gdf = read_vector(path)
    if gdf.crs is not None and grid.crs is not None and gdf.crs != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    geom = shapely.union_all(shapely.make_valid(gdf.geometry.dropna().to_numpy()))
    if geom.is_empty or not geom.intersects(shapely.box(*grid.bounds)):
        raise RasterError(f"The area of interest '{path}' does not overlap the raster.",
                          "Give polygons that cover part of the raster.")  # fmt: skip
    return geom


def inside(aoi, grid: Grid, window: Window) -> np.ndarray:
    """The window's pixels inside the area of interest."""
    height, width = int(window.height), int(window.width)
    return rasterize([(aoi, 1)], out_shape=(height, width), transform=grid.window_transform(window),
                     fill=0, dtype="uint8").astype(bool)  # fmt: skip
