"""Loading and preparing the inputs of check and export: rasters, labels, mask.

Labels end up as a *label source* on the raster grid that answers, for any window, the
class index of every pixel (255 = unlabelled), the split of every pixel (0 train, 1
validation, -1 none) and the id of the polygon or block it comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
from terralearn.geo.split import (
    block_split_window,
    held_out_fractions,
    split_blocks,
    split_polygon_geometries,
    split_tolerance,
)
from terralearn.geo.tiling import block_windows, tile_starts
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


def prepare_vector_labels(
    inputs: Inputs, split: str, val_fraction: float, seed: int, block_size: int, choose_block_size: bool = False,
    stride: tuple[int, int] | None = None,
) -> VectorLabels:  # fmt: skip
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
        gdf, info = _split_polygons(gdf, grid, len(classes), val_fraction, seed)
        return VectorLabels(grid, gdf, classes, report, split_info=info)
    gdf["_split"] = 0
    labels = VectorLabels(
        grid, gdf, classes, report, background=cfg.background_class,
        block_split=np.zeros((1, 1), np.uint8), block_size=block_size, split_method=method,
    )  # fmt: skip
    if method == "random":
        labels.block_split = _block_grid(grid, block_size, val_fraction, seed)
    else:
        _choose_blocks(labels, inputs, block_size, choose_block_size, val_fraction, seed, stride)
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


# ----------------------------------------------------------------------------- block split

#: A block split should spread the labelled area over at least this many blocks.
MIN_LABELLED_BLOCKS = 10
#: Above this many pixels the chip-eligible area of a mask is approximated by the mask itself.
_EXACT_MASK_PIXELS = 2**24


def _mask_union(inputs: Inputs):
    m = inputs.mask
    if m.crs is not None and inputs.grid.crs is not None and m.crs != inputs.grid.crs:
        m = m.to_crs(inputs.grid.crs)
    return shapely.union_all(shapely.make_valid(m.geometry.dropna().to_numpy()))


def _box_sums(values: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum over every h x w window of ``values`` (by its top-left pixel); shape (H-h+1, W-w+1)."""
    sat = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.int32)
    np.cumsum(np.cumsum(values, axis=0, dtype=np.int32), axis=1, out=sat[1:, 1:])
    return sat[h:, w:] - sat[:-h, w:] - sat[h:, :-w] + sat[:-h, :-w]


def chip_area(inputs: Inputs, stride: tuple[int, int] | None = None):
    """Where chips can be: ``(window, eligible)``, the pixels some chip will cover.

    Without a mask every pixel can be in a chip: ``(None, None)``. With a mask, chips lie
    wholly inside it: ``window`` is the mask's extent on the grid (None if it misses the
    raster) and ``eligible(win)`` the bool pixels of ``win`` covered by a tile inside the
    mask (every tile position when ``stride`` is None), or simply inside the mask when the
    mask's extent is too large to work out exactly.
    """
    if inputs.mask is None:
        return None, None
    grid = inputs.grid
    cfg = inputs.config
    geom = _mask_union(inputs)
    b = None if geom.is_empty else bounds_intersection(tuple(geom.bounds), grid.bounds)
    area = None if b is None else window_of_bounds(grid, b)
    if area is None:
        return None, lambda win: np.zeros((int(win.height), int(win.width)), bool)

    def burn(win):
        return rasterize([(geom, 1)], out_shape=(int(win.height), int(win.width)),
                         transform=grid.window_transform(win), fill=0, dtype="uint8").astype(bool)  # fmt: skip

    h, w = int(area.height), int(area.width)
    tx, ty = cfg.tile_size_x, cfg.tile_size_y
    if h * w > _EXACT_MASK_PIXELS:
        return area, burn
    r0, c0 = int(area.row_off), int(area.col_off)
    eligible = np.zeros((h, w), bool)
    if h >= ty and w >= tx and tx <= grid.width and ty <= grid.height:
        inside = burn(area)
        full = _box_sums(inside, ty, tx) == tx * ty  # tiles (by top-left pixel) wholly in the mask
        sx, sy = stride or (1, 1)
        rows = tile_starts(grid.height, ty, sy) - r0
        cols = tile_starts(grid.width, tx, sx) - c0
        rows = rows[(rows >= 0) & (rows <= h - ty)]
        cols = cols[(cols >= 0) & (cols <= w - tx)]
        origin = np.zeros((h + ty - 1, w + tx - 1), bool)  # padded so the window sums cover every pixel
        origin[(rows + ty - 1)[:, None], (cols + tx - 1)[None, :]] = full[rows[:, None], cols[None, :]]
        eligible = _box_sums(origin, ty, tx) > 0

    def lookup(win):
        out = np.zeros((int(win.height), int(win.width)), bool)
        ra, ca = int(win.row_off) - r0, int(win.col_off) - c0
        rs, cs = max(ra, 0), max(ca, 0)
        re_, ce = min(ra + int(win.height), h), min(ca + int(win.width), w)
        if re_ > rs and ce > cs:
            out[rs - ra : re_ - ra, cs - ca : ce - ca] = eligible[rs:re_, cs:ce]
        return out

    return area, lookup


def _intersect_windows(a: Window | None, b: Window | None) -> Window | None:
    if a is None or b is None:
        return a if b is None else b
    c0, r0 = max(a.col_off, b.col_off), max(a.row_off, b.row_off)
    c1, r1 = min(a.col_off + a.width, b.col_off + b.width), min(a.row_off + a.height, b.row_off + b.height)
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None


def block_counts(labels, windows, sizes: list[int], eligible: Callable | None = None) -> dict[int, tuple]:
    """Labelled pixels per block and class, for several block sizes at once, streaming ``windows``.

    Returns ``{size: (ids, counts)}``: the flat indices of the blocks (on the raster's grid
    of ``size``-pixel blocks) holding labels, and their pixel counts per class.
    """
    grid = labels.grid
    k = len(labels.classes)
    keys: dict[int, list] = {s: [] for s in sizes}
    vals: dict[int, list] = {s: [] for s in sizes}
    for win in windows:
        cls, _, _ = labels.read(win)
        lab = cls != UNLABELLED
        if eligible is not None:
            lab &= eligible(win)
        if not lab.any():
            continue
        rr, cc = np.nonzero(lab)
        rr = rr + int(win.row_off)
        cc = cc + int(win.col_off)
        c = cls[lab].astype(np.int64)
        for s in sizes:
            n_cols = -(-grid.width // s)
            br, bc = rr // s, cc // s
            r0, c0 = int(br.min()), int(bc.min())
            lw = int(bc.max()) - c0 + 1
            local = ((br - r0) * lw + (bc - c0)) * k + c
            n = np.bincount(local)
            nz = np.flatnonzero(n)
            cell, cl = nz // k, nz % k
            gid = (cell // lw + r0) * n_cols + (cell % lw + c0)
            keys[s].append(gid * k + cl)
            vals[s].append(n[nz])
    out = {}
    for s in sizes:
        if not keys[s]:
            out[s] = (np.zeros(0, np.int64), np.zeros((0, k), np.int64))
            continue
        key, inv = np.unique(np.concatenate(keys[s]), return_inverse=True)
        tot = np.bincount(inv, weights=np.concatenate(vals[s])).astype(np.int64)
        ids, pos = np.unique(key // k, return_inverse=True)
        counts = np.zeros((len(ids), k), np.int64)
        np.add.at(counts, (pos, key % k), tot)
        out[s] = (ids, counts)
    return out


def _score_blocks(counts: np.ndarray, val: np.ndarray, val_fraction: float) -> float:
    """The worst miss of the held-out fraction: overall, and for each class with a fair share of the pixels."""
    if not len(counts):
        return float(val_fraction)
    totals = counts.sum(0)
    grand = totals.sum()
    fr = held_out_fractions(counts, val)
    judged = (totals >= max(64, 0.01 * grand)) & ~np.isnan(fr)
    worst = abs(counts[val].sum() / grand - val_fraction) if grand else float(val_fraction)
    if judged.any():
        worst = max(worst, float(np.abs(fr[judged] - val_fraction).max()))
    return float(worst)


def _choose_blocks(labels, inputs: Inputs, block_size: int, choose_size: bool, val_fraction: float, seed: int,
                   stride: tuple[int, int] | None) -> None:  # fmt: skip
    """Set ``labels.block_split`` (and ``block_size``) so that about ``val_fraction`` of each class is held out.

    Blocks are chosen by their labelled pixel counts inside the area chips can cover (the
    mask), never all of them. With ``choose_size`` the block size is halved (down to a
    quarter of a chip, at least 8 px) while the labelled area spans fewer than
    :data:`MIN_LABELLED_BLOCKS` blocks or the held-out fraction misses by more than
    :func:`split_tolerance`.
    """
    grid = inputs.grid
    cfg = inputs.config
    region, eligible = chip_area(inputs, stride)
    area = labels.bounds_window()
    if inputs.mask is not None:  # chips lie inside the mask: count only the labels there
        area = None if region is None or area is None else _intersect_windows(area, region)
    sizes = [block_size]
    if choose_size:
        floor = max(8, min(cfg.tile_size_x, cfg.tile_size_y) // 4)
        while (
            sizes[-1] // 2 >= floor
            and (-(-grid.width // (sizes[-1] // 2))) * (-(-grid.height // (sizes[-1] // 2))) <= 2**24
        ):
            sizes.append(sizes[-1] // 2)
    tol = split_tolerance(val_fraction)
    tried = []

    def evaluate(size, ids, counts):
        n_rows, n_cols = -(-grid.height // size), -(-grid.width // size)
        blocks = split_blocks(n_rows, n_cols, val_fraction, seed, ids, counts)
        val = blocks.ravel()[ids] == 1 if len(ids) else np.zeros(0, bool)
        score = _score_blocks(counts, val, val_fraction)
        fr = held_out_fractions(counts, val) if len(ids) else np.full(counts.shape[1], np.nan)
        tried.append({"block_size": size, "labelled_blocks": len(ids), "held_out_blocks": int(val.sum()),
                      "miss": score, "fractions": [None if np.isnan(x) else float(x) for x in fr]})  # fmt: skip
        ok = len(ids) >= MIN_LABELLED_BLOCKS and score <= tol
        return ok, score, blocks

    if area is None or val_fraction <= 0:
        labels.block_split = _block_grid(grid, block_size, val_fraction, seed)
        labels.block_size = block_size
        labels.split_info = {"requested_block_size": block_size, "block_size": block_size, "tried": []}
        return
    first = block_counts(labels, _windows_in(area), [block_size], eligible)[block_size]
    ok, score, blocks = evaluate(block_size, *first)
    # ranked by: enough labelled blocks, then the smaller miss (a larger size unless clearly worse)
    best = (len(first[0]) < MIN_LABELLED_BLOCKS, score, block_size, blocks)
    if not ok and len(sizes) > 1 and len(first[0]) * block_size**2 <= 2**26:
        n_cols = -(-grid.width // block_size)
        wins = [_intersect_windows(Window((i % n_cols) * block_size, (i // n_cols) * block_size, block_size,
                                          block_size), area) for i in first[0]]  # fmt: skip
        rest = block_counts(labels, [w for w in wins if w is not None], sizes[1:], eligible)
        for s in sizes[1:]:
            ok, score, blocks = evaluate(s, *rest[s])
            few = len(rest[s][0]) < MIN_LABELLED_BLOCKS
            if ok or (few, score) < (best[0], best[1] - 1e-3):
                best = (few, score, s, blocks)
            if ok:
                break
    best = best[1:]
    labels.block_split, labels.block_size = best[2], best[1]
    chosen = next(t for t in tried if t["block_size"] == best[1])
    labels.split_info = {"requested_block_size": block_size, "block_size": best[1], "tried": tried, **chosen}


def _block_grid(grid: Grid, block_size: int, val_fraction: float, seed: int) -> np.ndarray:
    n_rows = -(-grid.height // block_size)
    n_cols = -(-grid.width // block_size)
    return split_blocks(n_rows, n_cols, val_fraction, seed)


def _windows_in(area: Window, block: int = 1024):
    for win in block_windows(int(area.width), int(area.height), block):
        yield Window(win.col_off + area.col_off, win.row_off + area.row_off, win.width, win.height)


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
    split_info: dict = field(default_factory=dict)

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


def prepare_raster_labels(
    inputs: Inputs, split: str, val_fraction: float, seed: int, block_size: int, choose_block_size: bool = False,
    stride: tuple[int, int] | None = None,
) -> RasterLabels:  # fmt: skip
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
        labels = RasterLabels(grid, source, classes, np.array(sorted(counts)), np.zeros((1, 1), np.uint8),
                              block_size, cfg.background_class)  # fmt: skip
        if split == "random":
            labels.block_split = _block_grid(grid, block_size, val_fraction, seed)
        else:
            _choose_blocks(labels, inputs, block_size, choose_block_size, val_fraction, seed, stride)
        return labels
    except BaseException:
        source.close()
        raise


def default_block_size(tile_x: int, tile_y: int, grid: Grid) -> int:
    """Four chips a side, but small enough that the raster holds at least about 10 blocks."""
    size = 4 * max(tile_x, tile_y)
    while size > max(tile_x, tile_y) and (-(-grid.width // size)) * (-(-grid.height // size)) < 10:
        size //= 2
    return max(size, max(tile_x, tile_y))


def prepare_labels(
    inputs: Inputs,
    split: str = "auto",
    val_fraction: float = 0.2,
    seed: int = 0,
    block_size=None,
    stride: tuple[int, int] | None = None,
):
    """The label source of the inputs, with its train/validation split.

    ``block_size`` given: the blocks split uses exactly that size; otherwise it starts from
    :func:`default_block_size` and shrinks on small labelled areas. ``stride`` (the chips'
    stride) makes the area a mask leaves for chips exact; None assumes every tile position.
    """
    cfg = inputs.config
    choose = block_size is None
    if split == "random":
        # Random chip cells of one chip size: the nearest thing to a random chip split that still keeps
        # validation labels out of training chips. Neighbouring pixels still leak; for comparison only.
        block_size = max(cfg.tile_size_x, cfg.tile_size_y)
        choose = False
    block_size = block_size or default_block_size(cfg.tile_size_x, cfg.tile_size_y, inputs.grid)
    if inputs.label_kind == "vector":
        labels = prepare_vector_labels(inputs, split, val_fraction, seed, block_size, choose, stride)
    else:
        labels = prepare_raster_labels(inputs, split, val_fraction, seed, block_size, choose, stride)
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
