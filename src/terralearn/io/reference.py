"""The files of an accuracy assessment: the classified map read window by window, and the reference data (a
vector layer with a class field, or a classified raster read nearest onto the map's grid)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
from rasterio.windows import Window

from terralearn.errors import LabelError, RasterError
from terralearn.geo.grid import Grid, bounds_intersection
from terralearn.io.raster import LabelRaster, describe_raster, footprint_in, open_raster, read_class_table
from terralearn.io.vector import read_vector


class MapReader:
    """Band 1 of a classified map, window by window."""

    def __init__(self, path: Path) -> None:
        self._src = open_raster(path)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(values, valid) of a window: valid leaves out nodata, masked and non-finite pixels."""
        arr = self._src.read(1, window=window, masked=True)
        values = arr.data
        valid = ~np.ma.getmaskarray(arr)
        if np.issubdtype(values.dtype, np.floating):
            valid &= np.isfinite(values)
        return values, valid

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> MapReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_reference_vector(path: Path, class_field: str | None) -> gpd.GeoDataFrame:
    """The reference layer; a LabelError when it has no field ``class_field``."""
    gdf = read_vector(path)
    fields = [c for c in gdf.columns if c != gdf.geometry.name]
    if not class_field or class_field not in gdf.columns:
        listed = ", ".join(fields) or "(none)"
        what = f"has no field '{class_field}'" if class_field else "needs a class field"
        raise LabelError(
            f"The reference '{path}' {what}; its fields are: {listed}.",
            "Pass --class-field with the field that holds the reference class values.",
        )
    return gdf


def open_reference_raster(path: Path, grid: Grid, map_path: Path) -> tuple[LabelRaster, list | None]:
    """The reference raster read on the map's ``grid`` and its class table (None without one)."""
    info = describe_raster(path)
    if info.grid.crs is not None and grid.crs is not None:
        overlap = bounds_intersection(footprint_in(info, grid.crs), grid.bounds)
    else:
        overlap = bounds_intersection(info.grid.bounds, grid.bounds)
    if overlap is None:
        raise RasterError(
            f"The reference raster '{path}' does not overlap the map '{map_path}'.",
            "Give a reference raster covering the mapped area; check both files' CRS.",
        )
    table = read_class_table(path)
    return LabelRaster(path, grid, None), table
