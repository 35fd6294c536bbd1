"""Instance labels: one polygon per object with a class, in the raster's CRS, and their pixel boxes.

Two sources:
- a vector layer of polygons with a class field (or one class for all, ``class_value``), in any CRS;
  reprojected onto the raster's. Points and lines have no outline, so they are refused;
- a raster of instance IDs (0 or nodata = no object, every other value one object), one class for all,
  vectorised to one polygon per ID on its own grid, then reprojected.

The boxes (the polygons' envelopes in the raster's pixels) serve the same split and the same checks as
detection (``labels.objects``): an instance is a detection object that also has its outline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from terralearn.errors import LabelError
from terralearn.geo.grid import Grid
from terralearn.labels.objects import Objects, objects_of_layer

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img")


@dataclass
class InstanceLabels:
    objects: Objects  # boxes, classes and the class table (as for detection)
    polygons: np.ndarray  # one shapely polygon per object, in the raster's CRS (map coordinates)


def read_instances(labels: Path, grid: Grid, class_field: str | None, class_value: str | None,
                   image_names: tuple[str, ...] = ()) -> InstanceLabels:  # fmt: skip
    """The instances of ``labels`` on ``grid`` (see the module documentation)."""
    labels = Path(labels)
    if labels.suffix.lower() in RASTER_SUFFIXES:
        return _from_id_raster(labels, grid, class_value or "object")
    return _from_polygons(labels, grid, class_field, class_value)


def _from_polygons(path: Path, grid: Grid, class_field: str | None, class_value: str | None) -> InstanceLabels:
    from terralearn.io.vector import read_vector

    gdf = read_vector(path)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    kinds = gdf.geometry.geom_type
    other = ~kinds.isin(["Polygon", "MultiPolygon"])
    if other.any():
        found = ", ".join(sorted(set(kinds[other])))
        raise LabelError(
            f"'{path}' holds {int(other.sum())} feature(s) that are no polygons ({found}); an instance task needs "
            "each object's outline.",
            "Give one polygon per object (digitise the outlines, or buffer points into discs with a GIS first); "
            "for boxes of points use --task detection with --buffer-radius.",
        )
    return InstanceLabels(*objects_of_layer(gdf, path, grid, class_field, class_value, 0.0))


def _from_id_raster(path: Path, grid: Grid, class_value: str) -> InstanceLabels:
    import geopandas as gpd

    from terralearn.geo.instances import instance_polygons
    from terralearn.io.raster import read_instance_ids

    ids, transform, crs = read_instance_ids(path)
    polys = instance_polygons(ids, transform)
    if not polys:
        raise LabelError(f"The instance raster '{path}' holds no object ID: every pixel is 0 or nodata.",
                         "Give a raster where each object has its own ID above 0.")  # fmt: skip
    gdf = gpd.GeoDataFrame({"class": [class_value] * len(polys), "instance_id": [k for _, k in polys]},
                           geometry=[p for p, _ in polys], crs=crs)  # fmt: skip
    objects, polygons = objects_of_layer(gdf, path, grid, "class", None, 0.0)
    return InstanceLabels(replace(objects, source="raster"), polygons)
