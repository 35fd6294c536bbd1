"""Seeded generators of tiny test inputs with a real CRS.

The default scene is a 64 x 48 pixel, 3-band int16 raster in WGS 84 / UTM 31N (EPSG:32631)
with 10 m pixels and a nodata strip on the left, plus label polygons covering the cases the
export must handle:

- an L-shaped polygon (concave: the bounding box holds unlabelled pixels),
- class values that are arbitrary integers (22531, 7) and not contiguous,
- two polygons per class so a polygon split can hold one out,
- a polygon crossing the nodata strip (labels on nodata),
- a polygon partly outside the raster.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from terralearn.geo.grid import Grid
from terralearn.io.raster import write_raster
from terralearn.io.vector import write_vector

UTM31 = CRS.from_epsg(32631)
ORIGIN = (500_000.0, 4_650_000.0)


def make_grid(width=64, height=48, res=10.0, crs=UTM31, origin=ORIGIN) -> Grid:
    return Grid(crs, Affine(res, 0, origin[0], 0, -res, origin[1]), width, height)


def make_raster(path: Path, grid: Grid | None = None, bands: int = 3, seed: int = 0, nodata=-9999,
                nodata_cols: int = 4, dtype="int16", names=None) -> Path:  # fmt: skip
    """A raster whose pixel values encode their position: band b at (r, c) = 1000*b + r*grid.width + c (mod)."""
    grid = grid or make_grid()
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    data = np.stack([(1000 * (b + 1) + (rows * grid.width + cols) % 997 + rng.integers(0, 3, rows.shape))
                     for b in range(bands)]).astype(dtype)  # fmt: skip
    if nodata is not None and nodata_cols:
        data[:, :, :nodata_cols] = nodata
    write_raster(path, data, grid, nodata=nodata, band_names=names)
    return Path(path)


def pixel_box(grid: Grid, col0, row0, col1, row1) -> shapely.Polygon:
    """A polygon covering pixel columns [col0, col1) and rows [row0, row1) of ``grid``."""
    x0, y0 = grid.transform @ (col0, row0)
    x1, y1 = grid.transform @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def scene_polygons(grid: Grid) -> gpd.GeoDataFrame:
    l_shape = shapely.union_all([pixel_box(grid, 10, 5, 14, 20), pixel_box(grid, 10, 16, 24, 20)])
    geoms = [
        l_shape,                                # class 22531: L shape (concave)
        pixel_box(grid, 40, 30, 48, 38),        # class 22531: second polygon
        pixel_box(grid, 28, 4, 36, 12),         # class 7
        pixel_box(grid, 50, 8, 58, 16),         # class 7
        pixel_box(grid, 2, 30, 9, 36),          # class 3: crosses the nodata strip (cols 0-3)
        pixel_box(grid, 20, 34, 26, 40),        # class 3
        pixel_box(grid, 60, 40, 70, 52),        # class 3: partly outside the raster
    ]  # fmt: skip
    values = [22531, 22531, 7, 7, 3, 3, 3]
    names = ["wheat", "wheat", "water", "water", "forest", "forest", "forest"]
    return gpd.GeoDataFrame({"code": values, "name": names}, geometry=geoms, crs=grid.crs)


def make_scene(folder: Path, seed: int = 0, labels_crs=None, suffix=".gpkg"):
    """Write the default raster and label polygons; return (raster, labels, grid)."""
    folder = Path(folder)
    grid = make_grid()
    raster = make_raster(folder / "image.tif", grid, seed=seed)
    gdf = scene_polygons(grid)
    if labels_crs is not None:
        gdf = gdf.to_crs(labels_crs)
    labels = folder / f"labels{suffix}"
    write_vector(gdf, labels, layer="labels")
    return raster, labels, grid


def random_polygons(grid: Grid, n: int, seed: int, classes=(1, 2, 3), max_size=8) -> gpd.GeoDataFrame:
    """``n`` random axis-aligned pixel boxes (may overlap) with random classes."""
    rng = np.random.default_rng(seed)
    geoms, values = [], []
    for _ in range(n):
        w, h = rng.integers(1, max_size + 1, 2)
        c0 = int(rng.integers(0, grid.width - w + 1))
        r0 = int(rng.integers(0, grid.height - h + 1))
        geoms.append(pixel_box(grid, c0, r0, c0 + w, r0 + h))
        values.append(int(rng.choice(classes)))
    return gpd.GeoDataFrame({"code": values}, geometry=geoms, crs=grid.crs)


def make_objects_scene(folder: Path, bands: int = 4, size: int = 128, n: int = 24, seed: int = 0,
                       dtype="uint16", res: float = 0.5):  # fmt: skip
    """A detection scene: ``size`` px square, ``bands`` bands of seeded noise with ``n`` bright, non-overlapping
    squares (6-12 px) whose polygons are labelled by class: ``car`` (bright in band 1) or ``boat`` (bright in the
    last band). Returns (raster, labels, grid, boxes in pixels (n, 4) xyxy, class names)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    grid = make_grid(width=size, height=size, res=res)
    data = rng.normal(200, 20, (bands, size, size))
    taken = np.zeros((size, size), bool)
    boxes, names, geoms = [], [], []
    while len(boxes) < n:
        s = int(rng.integers(6, 13))
        c0, r0 = (int(v) for v in rng.integers(1, size - s - 1, 2))
        if taken[max(r0 - 2, 0) : r0 + s + 2, max(c0 - 2, 0) : c0 + s + 2].any():
            continue
        taken[r0 : r0 + s, c0 : c0 + s] = True
        kind = "car" if len(boxes) % 2 == 0 else "boat"
        data[0 if kind == "car" else bands - 1, r0 : r0 + s, c0 : c0 + s] += 600
        data[:, r0 : r0 + s, c0 : c0 + s] += 150
        boxes.append([c0, r0, c0 + s, r0 + s])
        names.append(kind)
        geoms.append(pixel_box(grid, c0, r0, c0 + s, r0 + s))
    raster = folder / "objects.tif"
    write_raster(raster, np.clip(data, 0, 65535).astype(dtype), grid)
    labels = folder / "objects.gpkg"
    write_vector(gpd.GeoDataFrame({"kind": names}, geometry=geoms, crs=grid.crs), labels, layer="objects")
    return raster, labels, grid, np.array(boxes, dtype=float), names
