"""The preview of a classified map for its report: the map and the input image read at a reduced resolution.

Both are read on one decimated grid of the map's extent (at most ``MAX_PREVIEW`` pixels on the long side) through
:func:`terralearn.io.raster.open_raster`, so a preview costs the same whatever the raster size; an image in another
CRS is reprojected onto that grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from terralearn.geo.grid import Grid, bounds_intersection, preview_grid, window_of_bounds
from terralearn.io.html import class_colours, colourise
from terralearn.io.raster import RasterInfo, open_raster

#: Long side of the preview rasters, in pixels.
MAX_PREVIEW = 800
#: Colour of nodata in the preview.
NODATA_RGB = (255, 255, 255)


@dataclass(frozen=True)
class PreviewSpec:
    """The image rasters shown next to the map and the bands (file position, 1-based band) used as R, G, B."""

    images: tuple[RasterInfo, ...] = ()
    bands: tuple[tuple[int, int], ...] = ()
    label: str = ""


@dataclass
class Preview:
    map_rgb: np.ndarray  # (H, W, 3) uint8, class colours; nodata white
    names: list[str]
    colours: np.ndarray  # (K, 3) uint8
    image_rgb: np.ndarray | None = None  # (H, W, 3) uint8 on the same preview grid as the map
    image_label: str = ""
    notes: list[str] = field(default_factory=list)


def read_preview(prediction: Path, grid: Grid, classes: list[dict], tagged: bool, spec: PreviewSpec,
                 max_side: int = MAX_PREVIEW) -> Preview:  # fmt: skip
    """The map (class colours) and the image (2-98 % stretch) on one decimated grid of the map's extent."""
    pg = preview_grid(grid, max_side)
    colours = class_colours(classes)
    names = [str(c["name"]) for c in classes]
    with open_raster(prediction) as src:
        arr = src.read(1, out_shape=(pg.height, pg.width), resampling=Resampling.nearest, masked=True)
    values = arr.data
    valid = ~np.ma.getmaskarray(arr)
    if np.issubdtype(values.dtype, np.floating):
        valid &= np.isfinite(values)
    idx = np.full(values.shape, 255, dtype=np.uint8)
    if tagged:
        lut = np.full(256, 255, dtype=np.uint8)
        for pos, c in enumerate(classes):
            lut[int(c["index"])] = pos
        inside = valid & (values >= 0) & (values <= 255)
        idx[inside] = lut[values[inside].astype(np.int64)]
    else:
        pos = {_number(c["value"]): i for i, c in enumerate(classes)}
        uniq, inverse = np.unique(values[valid], return_inverse=True)
        lut = np.array([pos.get(_number(v), 255) for v in uniq.tolist()], dtype=np.uint8)
        idx[valid] = lut[inverse.ravel()] if uniq.size else idx[valid]
    preview = Preview(colourise(idx, colours, NODATA_RGB), names, colours)
    if spec.bands:
        preview.image_rgb, preview.notes = _image_preview(spec, pg)
        preview.image_label = spec.label
    return preview


def _number(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return int(f) if f.is_integer() else f


def _image_preview(spec: PreviewSpec, pg: Grid) -> tuple[np.ndarray | None, list[str]]:
    bands = np.full((len(spec.bands), pg.height, pg.width), np.nan, dtype=np.float32)
    notes: list[str] = []
    for i, info in enumerate(spec.images):
        wanted = [(k, b) for k, (f, b) in enumerate(spec.bands) if f == i]
        if not wanted:
            continue
        crs = info.grid.crs or pg.crs
        bounds = pg.bounds if crs == pg.crs else transform_bounds(pg.crs, crs, *pg.bounds, densify_pts=21)
        overlap = bounds_intersection(bounds, info.grid.bounds)
        win = None if overlap is None else window_of_bounds(info.grid, overlap)
        if win is None:
            notes.append(f"The image '{info.path}' does not overlap the map; it is not shown.")
            continue
        scale = max(1.0, max(win.width, win.height) / (2 * max(pg.width, pg.height)))
        oh, ow = max(1, math.ceil(win.height / scale)), max(1, math.ceil(win.width / scale))
        with open_raster(info.path) as src:
            data = src.read(indexes=[b for _, b in wanted], window=win, out_shape=(len(wanted), oh, ow),
                            resampling=Resampling.nearest, masked=True)  # fmt: skip
        src_transform = info.grid.window_transform(win) @ Affine.scale(win.width / ow, win.height / oh)
        filled = np.ma.filled(data.astype(np.float32), np.nan)
        for (k, _), band in zip(wanted, filled, strict=True):
            reproject(band, bands[k], src_transform=src_transform, src_crs=crs, dst_transform=pg.transform,
                      dst_crs=pg.crs, src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)  # fmt: skip
    if not np.isfinite(bands).any():
        return None, notes
    return stretch(bands), notes


def stretch(bands: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """(1 or 3, H, W) float bands -> (H, W, 3) uint8 with a per-band 2-98 % stretch; NaN -> white."""
    out = np.zeros((bands.shape[1], bands.shape[2], 3), dtype=np.uint8)
    planes = [bands[0]] * 3 if bands.shape[0] == 1 else list(bands[:3])
    invalid = np.zeros(bands.shape[1:], dtype=bool)
    for c, band in enumerate(planes):
        ok = np.isfinite(band)
        invalid |= ~ok
        if not ok.any():
            continue
        lo, hi = np.percentile(band[ok], [low, high])
        scaled = (np.nan_to_num(band, nan=lo) - lo) / max(float(hi - lo), 1e-12) * 255.0
        out[..., c] = np.clip(scaled, 0, 255).astype(np.uint8)
    out[invalid] = NODATA_RGB
    return out
