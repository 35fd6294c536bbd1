"""Vector labels as a label source: cleaned polygons rasterised per window, split by polygon or block."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window

from terralearn.classes import ClassInfo, build_classes, class_lookup, normalise_values
from terralearn.config import UNLABELLED
from terralearn.geo.grid import Grid, bounds_intersection, window_of_bounds
from terralearn.geo.split import block_split_window, split_polygon_geometries
from terralearn.io.inputs import Inputs
from terralearn.labels.split import block_grid, choose_blocks, resolve_split


@dataclass
class GeometryReport:
    null: int = 0
    empty: int = 0
    invalid: int = 0
    fixed: int = 0
    dropped: int = 0
    missing_class: int = 0
    points_or_lines: int = 0


def majority_names(values: list, names: list) -> dict:
    """The most frequent name of each class value (ties: the first seen)."""
    tally: dict = {}
    for v, n in zip(values, names, strict=True):
        if n is None or pd.isna(n):
            continue
        tally.setdefault(v, {}).setdefault(str(n), 0)
        tally[v][str(n)] += 1
    return {v: max(c, key=c.get) for v, c in tally.items()}


def clean_vector(gdf: gpd.GeoDataFrame, class_field: str | None, mode: str) -> tuple[gpd.GeoDataFrame, GeometryReport]:
    """Drop null/empty geometries and rows without a class; repair or drop invalid geometries."""
    rep = GeometryReport()
    geom = gdf.geometry
    null = geom.isna().to_numpy()
    rep.null = int(null.sum())
    empty = np.zeros(len(gdf), bool)
    empty[~null] = shapely.is_empty(geom[~null].to_numpy())
    rep.empty = int(empty.sum())
    keep = ~null & ~empty
    has_field = class_field is not None and class_field in gdf
    missing = gdf[class_field].isna().to_numpy() if has_field else np.zeros(len(gdf), bool)
    if has_field and gdf[class_field].dtype == object:
        missing |= gdf[class_field].astype(str).str.strip().eq("").to_numpy()
    rep.missing_class = int((missing & keep).sum())
    keep &= ~missing
    out = gdf[keep].copy()
    valid = shapely.is_valid(out.geometry.to_numpy())
    rep.invalid = int((~valid).sum())
    if rep.invalid:
        if mode == "fix":
            fixed = shapely.make_valid(out.geometry.to_numpy()[~valid], method="structure", keep_collapsed=False)
            out.loc[out.index[~valid], out.geometry.name] = fixed
            ok = ~shapely.is_empty(out.geometry.to_numpy())
            rep.fixed = int(rep.invalid - (~ok).sum())
            out = out[ok]
        else:
            out = out[valid]
            rep.dropped = rep.invalid
    kinds = shapely.get_type_id(out.geometry.to_numpy())
    rep.points_or_lines = int(np.isin(kinds, [0, 1, 2, 4, 5]).sum())
    return out, rep


@dataclass
class VectorLabels:
    """Label polygons on the raster grid, with a class index and a split per polygon.

    With ``block_split`` set, pixels take the split of the spatial block they fall in
    (split='blocks' or 'random'); otherwise the split of their polygon.
    """

    grid: Grid
    gdf: gpd.GeoDataFrame  # in the raster CRS, cleaned, with columns _class and _split
    classes: list[ClassInfo]
    geometry_report: GeometryReport
    background: bool = False
    block_split: np.ndarray | None = None
    block_size: int = 0
    split_method: str = "polygons"
    kind: str = "vector"
    #: how the split was made: polygons per class and cut polygons, or the block sizes tried
    split_info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._class_lut = np.concatenate([[UNLABELLED], self.gdf["_class"].to_numpy()]).astype(np.uint8)
        self._split_lut = np.concatenate([[-1], self.gdf["_split"].to_numpy()]).astype(np.int8)
        self._geoms = self.gdf.geometry.to_numpy()
        self._tree = shapely.STRtree(self._geoms)
        self.polygon_pixels = shapely.area(self._geoms) / self.grid.pixel_area

    @property
    def n_units(self) -> int:
        return len(self.gdf) if self.block_split is None else int(self.block_split.size)

    def bounds_window(self) -> Window | None:
        if self.background:
            return Window(0, 0, self.grid.width, self.grid.height)
        if len(self.gdf) == 0:
            return None
        b = bounds_intersection(tuple(self.gdf.total_bounds), self.grid.bounds)
        return None if b is None else window_of_bounds(self.grid, b)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class index uint8, split int8, polygon id int32 with 0 = none) for a window."""
        h, w = int(window.height), int(window.width)
        left, bottom, right, top = self.grid.window_bounds(window)
        idx = self._tree.query(shapely.box(left, bottom, right, top))
        if len(idx):
            idx.sort()
            ids = rasterize(
                zip(self._geoms[idx], (idx + 1).tolist(), strict=True),
                out_shape=(h, w),
                transform=self.grid.window_transform(window),
                fill=0,
                dtype="int32",
            )
        else:
            ids = np.zeros((h, w), dtype=np.int32)
        cls = self._class_lut[ids]
        if self.background:
            cls[ids == 0] = 0
        if self.block_split is None:
            split = self._split_lut[ids]
        else:
            split = block_split_window(
                self.block_split, self.block_size, int(window.row_off), int(window.col_off), h, w
            ).astype(np.int8)
            split[cls == UNLABELLED] = -1
        return cls, split, ids


def prepare_vector_labels(inputs: Inputs, block_size: int, choose_block_size: bool = False) -> VectorLabels:
    cfg = inputs.config
    grid = inputs.grid
    gdf, report = clean_vector(inputs.vector, cfg.class_field, cfg.invalid_geometries)
    if gdf.crs is None and grid.crs is not None:
        gdf = gdf.set_crs(grid.crs)
    elif grid.crs is not None and gdf.crs != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    if cfg.buffer_radius > 0:
        kinds = shapely.get_type_id(gdf.geometry.to_numpy())
        line_or_point = np.isin(kinds, [0, 1, 2, 4, 5])
        if line_or_point.any():
            gdf.loc[line_or_point, gdf.geometry.name] = gdf.geometry[line_or_point].buffer(cfg.buffer_radius)
    if cfg.class_field:
        values = normalise_values(gdf[cfg.class_field].tolist())
    else:
        values = normalise_values([cfg.class_value] * len(gdf))
    names = majority_names(values, gdf[cfg.class_name_field].tolist()) if cfg.class_name_field else {}
    classes = build_classes(values, names, background=cfg.background_class)
    lookup = class_lookup(classes)
    gdf = gdf.reset_index(drop=True)
    gdf["_class"] = np.array([lookup[v] for v in values], dtype=np.uint8)
    gdf["_value"] = [str(v) for v in values]
    method = resolve_split(cfg.split, "vector", cfg.background_class)
    if method == "polygons":
        gdf, info = _split_polygons(gdf, grid, len(classes), cfg.val_fraction, cfg.seed)
        return VectorLabels(grid, gdf, classes, report, split_info=info)
    gdf["_split"] = 0
    labels = VectorLabels(
        grid, gdf, classes, report, background=cfg.background_class,
        block_split=np.zeros((1, 1), np.uint8), block_size=block_size, split_method=method,
    )  # fmt: skip
    if method == "random":
        labels.block_split = block_grid(grid, block_size, cfg.val_fraction, cfg.seed)
    else:
        choose_blocks(labels, inputs, block_size, choose_block_size)
    return labels


def _split_polygons(gdf: gpd.GeoDataFrame, grid: Grid, n_classes: int, val_fraction: float, seed: int):
    """Polygon split of ``gdf`` (columns _class, _value): cut polygons become rows of their own."""
    footprint = shapely.box(*grid.bounds)
    t = grid.transform
    ps = split_polygon_geometries(gdf.geometry.to_numpy(), gdf["_class"].to_numpy(), val_fraction, seed,
                                  clip=footprint, snap=(t.c, t.a, t.f, t.e))  # fmt: skip
    out = gdf.iloc[ps.source].reset_index(drop=True)
    out[gdf.geometry.name] = gpd.GeoSeries(ps.geometries, index=out.index, crs=gdf.crs)
    out["_split"] = ps.split
    out["_source"] = ps.source
    out["_cut"] = ps.cut
    cls = gdf["_class"].to_numpy()
    per_class = np.bincount(cls, minlength=n_classes).tolist() if len(cls) else [0] * n_classes
    val_sources = [len(set(ps.source[(ps.classes == c) & (ps.split == 1)].tolist())) for c in range(n_classes)]
    px = grid.pixel_area
    cuts = [{"class": int(c["class"]), "source": int(c["source"]), "val_pixels": c["val_area"] / px,
             "train_pixels": c["train_area"] / px} for c in ps.cuts]  # fmt: skip
    return out, {"polygons": per_class, "validation_polygons": val_sources, "cuts": cuts}
