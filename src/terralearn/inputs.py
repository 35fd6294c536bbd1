"""Loading and preparing the inputs of check and export: rasters, labels, mask.

Labels end up as a *label source* on the raster grid that answers, for any window, the
class index of every pixel (255 = unlabelled), the split of every pixel (0 train, 1
validation, -1 none) and the id of the polygon or block it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window

from terralearn.classes import ClassInfo, build_classes, class_lookup, normalise_values
from terralearn.config import UNLABELLED, CheckConfig
from terralearn.errors import ConfigError, LabelError
from terralearn.geo.grid import Grid, bounds_intersection, window_of_bounds
from terralearn.geo.split import block_split_window, split_blocks, split_polygons
from terralearn.geo.tiling import block_windows
from terralearn.io.raster import LabelRaster, RasterInfo, RasterStack, describe_raster
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


def load_inputs(config: CheckConfig) -> Inputs:
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


# ----------------------------------------------------------------------------- vectors


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


def prepare_vector_labels(inputs: Inputs, split: str, val_fraction: float, seed: int, block_size: int) -> VectorLabels:
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
    method = resolve_split(split, "vector", cfg.background_class)
    if method == "polygons":
        areas = shapely.area(gdf.geometry.to_numpy())
        gdf["_split"] = split_polygons(gdf["_class"].to_numpy(), areas, val_fraction, seed)
        return VectorLabels(grid, gdf, classes, report)
    gdf["_split"] = 0
    return VectorLabels(
        grid, gdf, classes, report, background=cfg.background_class,
        block_split=_block_grid(grid, block_size, val_fraction, seed), block_size=block_size, split_method=method,
    )  # fmt: skip


def _block_grid(grid: Grid, block_size: int, val_fraction: float, seed: int) -> np.ndarray:
    n_rows = -(-grid.height // block_size)
    n_cols = -(-grid.width // block_size)
    return split_blocks(n_rows, n_cols, val_fraction, seed)


def resolve_split(split: str, label_kind: str, background: bool) -> str:
    if split == "auto":
        return "polygons" if label_kind == "vector" and not background else "blocks"
    if split == "polygons" and label_kind == "raster":
        raise ConfigError(
            "split='polygons' needs vector labels; the labels are a classified raster.",
            "Use --split blocks (spatial blocks held out), the default for raster labels.",
        )
    if split == "polygons" and background:
        raise ConfigError(
            "split='polygons' cannot hold out the background class, which has no polygons.",
            "Use --split blocks with --background-class.",
        )
    return split


# ----------------------------------------------------------------------------- rasters


@dataclass
class RasterLabels:
    """A classified raster on the image grid, split by spatial blocks."""

    grid: Grid
    source: LabelRaster
    classes: list[ClassInfo]
    values: np.ndarray  # sorted distinct class values (raw)
    block_split: np.ndarray
    block_size: int
    background: bool = False
    kind: str = "raster"
    split_method: str = "blocks"

    @property
    def n_units(self) -> int:
        return int(self.block_split.size)

    def bounds_window(self) -> Window | None:
        return Window(0, 0, self.grid.width, self.grid.height)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raw, labelled = self.source.read(window)
        pos = np.searchsorted(self.values, raw).clip(max=len(self.values) - 1)
        offset = 1 if self.background else 0
        cls = np.where(labelled, pos + offset, 0 if self.background else UNLABELLED).astype(np.uint8)
        split = block_split_window(
            self.block_split, self.block_size, int(window.row_off), int(window.col_off),
            int(window.height), int(window.width),
        ).astype(np.int8)  # fmt: skip
        if not self.background:
            split[~labelled] = -1
        n_bc = self.block_split.shape[1]
        rows = np.arange(int(window.row_off), int(window.row_off + window.height)) // self.block_size
        cols = np.arange(int(window.col_off), int(window.col_off + window.width)) // self.block_size
        ids = (rows[:, None] * n_bc + cols[None, :] + 1).astype(np.int32)
        ids[cls == UNLABELLED] = 0
        return cls, split, ids

    def close(self) -> None:
        self.source.close()


def raster_label_values(source: LabelRaster, grid: Grid, block: int = 1024) -> dict:
    """Distinct labelled values of a classified raster and their pixel counts (streamed)."""
    counts: dict = {}
    for win in block_windows(grid.width, grid.height, block):
        raw, labelled = source.read(win)
        vals, n = np.unique(raw[labelled], return_counts=True)
        for v, c in zip(vals.tolist(), n.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + c
    return counts


def prepare_raster_labels(inputs: Inputs, split: str, val_fraction: float, seed: int, block_size: int) -> RasterLabels:
    cfg = inputs.config
    grid = inputs.grid
    resolve_split(split, "raster", cfg.background_class)
    source = LabelRaster(cfg.labels, grid, cfg.label_nodata)
    try:
        counts = raster_label_values(source, grid)
        values = normalise_values(sorted(counts))
        if any(isinstance(v, str) for v in values):  # pragma: no cover - rasters hold numbers
            raise LabelError("The label raster holds non-numeric values.", "Use a raster of integer class values.")
        classes = build_classes(values, background=cfg.background_class)
        blocks = _block_grid(grid, block_size, val_fraction, seed)
        return RasterLabels(grid, source, classes, np.array(sorted(counts)), blocks, block_size, cfg.background_class)
    except BaseException:
        source.close()
        raise


def default_block_size(tile_x: int, tile_y: int, grid: Grid) -> int:
    """Four chips a side, but small enough that the raster holds at least about 10 blocks."""
    size = 4 * max(tile_x, tile_y)
    while size > max(tile_x, tile_y) and (-(-grid.width // size)) * (-(-grid.height // size)) < 10:
        size //= 2
    return max(size, max(tile_x, tile_y))


def prepare_labels(inputs: Inputs, split: str = "auto", val_fraction: float = 0.2, seed: int = 0, block_size=None):
    cfg = inputs.config
    if split == "random":
        # Random chip cells of one chip size: the nearest thing to a random chip split that still keeps
        # validation labels out of training chips. Neighbouring pixels still leak; for comparison only.
        block_size = max(cfg.tile_size_x, cfg.tile_size_y)
    block_size = block_size or default_block_size(cfg.tile_size_x, cfg.tile_size_y, inputs.grid)
    if inputs.label_kind == "vector":
        labels = prepare_vector_labels(inputs, split, val_fraction, seed, block_size)
    else:
        labels = prepare_raster_labels(inputs, split, val_fraction, seed, block_size)
    labels.split_method = "random" if split == "random" else labels.split_method
    return labels


# ----------------------------------------------------------------------------- census


@dataclass
class Census:
    """Pixel counts of the labels on the raster grid (each pixel counted once)."""

    class_pixels: np.ndarray  # (n_classes, 2): train, val
    nodata_labelled: np.ndarray  # (n_classes,): labelled pixels on image nodata

    @property
    def labelled(self) -> int:
        return int(self.class_pixels.sum())


def take_census(stack: RasterStack, labels, block: int = 1024, progress=None) -> Census:
    """Count labelled pixels per class and split, and those on image nodata, streaming by block."""
    n = len(labels.classes)
    counts = np.zeros((n, 2), dtype=np.int64)
    on_nodata = np.zeros(n, dtype=np.int64)
    area = labels.bounds_window()
    if area is not None:
        for win in block_windows(int(area.width), int(area.height), block):
            win = Window(win.col_off + area.col_off, win.row_off + area.row_off, win.width, win.height)
            cls, split, _ = labels.read(win)
            lab = cls != UNLABELLED
            if not lab.any():
                continue
            _, valid = stack.read(win)
            for s in (0, 1):
                sel = lab & (split == s) & valid
                counts[:, s] += np.bincount(cls[sel], minlength=n)[:n]
            on_nodata += np.bincount(cls[lab & ~valid], minlength=n)[:n]
            if progress:
                progress()
    return Census(counts, on_nodata)
