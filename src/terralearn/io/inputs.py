"""Reading the inputs of check and export: raster headers, the label and mask layers."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import shapely

from terralearn.config import CheckConfig
from terralearn.geo.grid import Grid
from terralearn.io.raster import LabelRaster, RasterInfo, describe_raster
from terralearn.io.vector import is_vector_path, read_vector


@dataclass
class Inputs:
    """The inputs as read from disk, before any repair."""

    config: CheckConfig
    rasters: list[RasterInfo]
    vector: gpd.GeoDataFrame | None = None
    label_raster: RasterInfo | None = None
    mask: gpd.GeoDataFrame | None = None

    @property
    def grid(self) -> Grid:
        return self.rasters[0].grid

    @property
    def label_kind(self) -> str:
        return "vector" if self.vector is not None else "raster"

    def open_label_raster(self) -> LabelRaster:
        """The classified label raster, read on the grid of the first raster (close it when done)."""
        return LabelRaster(self.config.labels, self.grid, self.config.label_nodata)

    def mask_geometry(self):
        """The union of the mask polygons (repaired) in the raster's CRS; None without a mask."""
        if self.mask is None:
            return None
        m = self.mask
        if m.crs is not None and self.grid.crs is not None and m.crs != self.grid.crs:
            m = m.to_crs(self.grid.crs)
        return shapely.union_all(shapely.make_valid(m.geometry.dropna().to_numpy()))


def read_inputs(config: CheckConfig) -> Inputs:
    """Read headers of the rasters and the label and mask layers. Missing or corrupt files raise."""
    rasters = [describe_raster(p) for p in config.rasters]
    inputs = Inputs(config=config, rasters=rasters)
    if is_vector_path(config.labels):
        inputs.vector = read_vector(config.labels)
    else:
        inputs.label_raster = describe_raster(config.labels)
    if config.mask is not None:
        inputs.mask = read_vector(config.mask)
    return inputs
