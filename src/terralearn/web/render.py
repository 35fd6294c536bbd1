"""Pictures of workspace files for the web app: quick-looks, map tiles and legends, as PNG bytes.

Rasters are read decimated (``out_shape``, so GDAL uses overviews where the file has them):
memory depends on the picture's size, never on the raster's. Images are shown as RGB (the
bands named red, green and blue, else bands 1-2-3; one band as grey), each band stretched to
the 2-98 % percentiles of its valid pixels; the stretch is computed once per file from a
decimated read and shared by its quick-look and all its tiles. Classified maps are drawn
with their class colours. Nodata, masked and out-of-raster pixels are transparent.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp, Resampling

from terralearn.classes import assign_colours
from terralearn.errors import ConfigError, InputFileError
from terralearn.geo.pyramid import TILE, fit_shape, max_zoom, tile_out_shape, tile_window
from terralearn.io.raster import gdal_env, open_raster, read_class_table
from terralearn.io.vector import unreadable_vector
from terralearn.web.inspect import (
    MAX_DISTINCT,
    crs_summary,
    guess_class_field,
    json_value,
    lonlat_bounds,
    vector_source,
)
from terralearn.web.kinds import detect_kind

#: Longest side of the decimated read that band statistics are computed from (the default quick-look's size,
#: so that a first quick-look reads the raster once).
STATS_SIZE = 768
PERCENTILES = (2.0, 98.0)
#: Features drawn at most in a vector quick-look.
MAX_VECTOR_FEATURES = 50_000

_CACHE_SIZE = 256
_styles: OrderedDict[tuple, _Style] = OrderedDict()
_lock = threading.Lock()
_empty_tile: bytes | None = None


@dataclass(frozen=True)
class _Style:
    """How to turn a raster's pixels into colours: a palette lookup or a per-band linear stretch."""

    bands: tuple[int, ...]
    lut: np.ndarray | None = None  # (n, 4) uint8 RGBA per class index, for palette rasters
    ranges: tuple[tuple[float, float], ...] = ()


# --- public --------------------------------------------------------------------------------------------------------


def quicklook_png(path: Path, max_size: int = 768, bands: list[int] | None = None) -> bytes:
    """An RGBA PNG preview of a raster, classified map or vector layer, at most ``max_size`` pixels on a side."""
    path = Path(path)
    if not isinstance(max_size, int) or max_size < 1:
        raise ConfigError(f"The quick-look size {max_size!r} is not a positive number of pixels.", "Use e.g. 768.")
    kind = detect_kind(path)
    if kind in ("raster", "map"):
        with _open(path) as src:
            shape = fit_shape(src.width, src.height, max_size)
            style, sample = _style(src, path, bands)
            if sample is not None and sample[0].shape[1:] == shape:  # the statistics read is this picture
                return encode_png(_colour(style, *sample))
            return encode_png(_render(src, style, None, shape))
    if kind == "vector":
        return _vector_quicklook(path, max_size)
    raise InputFileError(
        f"'{path.name}' is a {kind}, which has no quick-look image.",
        "Pick a raster (GeoTIFF), a classified map or a vector layer.",
    )


def tile_png(path: Path, z: int, x: int, y: int, bands: list[int] | None = None) -> bytes:
    """Tile (z, x, y) of the raster's pyramid (see ``geo/pyramid.py``) as a 256 x 256 RGBA PNG.

    Styled like the quick-look; parts outside the raster are transparent, and a tile wholly
    outside it is a fully transparent tile.
    """
    path = Path(path)
    with _open(path) as src:
        zmax = max_zoom(src.width, src.height, TILE)
        window = tile_window(int(z), int(x), int(y), zmax, width=src.width, height=src.height, tile=TILE)
        if window is None:
            return empty_tile()
        style, _ = _style(src, path, bands)
        rows, cols = tile_out_shape(window, int(z), zmax, TILE)
        canvas = np.zeros((TILE, TILE, 4), dtype=np.uint8)
        canvas[:rows, :cols] = _render(src, style, window, (rows, cols))
    return encode_png(canvas)


def raster_pyramid(path: Path) -> dict:
    """What a map client needs to show a raster's tiles.

    {kind, width, height, tile, min_zoom, max_zoom, bounds [left, bottom, right, top] in the
    raster's CRS, crs (name) | None, epsg | None, lonlat_bounds | None, pixel_size [x, y], bands,
    default_bands, has_legend}. At ``max_zoom`` one tile pixel is one raster pixel; the tile grid
    starts at the raster's top-left corner.
    """
    path = Path(path)
    kind = detect_kind(path)
    with _open(path) as src:
        crs = crs_summary(src.crs) if src.crs else None
        style, _ = _style(src, path, None)
        return {
            "kind": kind,
            "width": src.width,
            "height": src.height,
            "tile": TILE,
            "min_zoom": 0,
            "max_zoom": max_zoom(src.width, src.height, TILE),
            "bounds": [float(v) for v in src.bounds],
            "crs": crs["name"] if crs else None,
            "epsg": crs["epsg"] if crs else None,
            "lonlat_bounds": lonlat_bounds(src.crs, tuple(src.bounds)) if src.crs else None,
            "pixel_size": [abs(src.transform.a), abs(src.transform.e)],
            "bands": src.count,
            "default_bands": list(style.bands),
            "has_legend": style.lut is not None,
        }


def legend(path: Path) -> list[dict]:
    """The classes of a classified map: [{index, name, value, colour '#rrggbb'}]; [] for other rasters."""
    table = read_class_table(Path(path)) or []
    out = []
    for c in table:
        if not isinstance(c, dict) or "index" not in c:
            continue
        rgba = _hex_rgba(c.get("colour"))
        out.append(
            {
                "index": c["index"],
                "name": c.get("name"),
                "value": c.get("value"),
                "colour": "#{:02x}{:02x}{:02x}".format(*rgba[:3]) if rgba else None,
            }
        )
    return out


def encode_png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an (rows, cols, 4) uint8 RGBA array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8)).save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


def empty_tile() -> bytes:
    global _empty_tile
    if _empty_tile is None:
        _empty_tile = encode_png(np.zeros((TILE, TILE, 4), dtype=np.uint8))
    return _empty_tile


# --- styles ----------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open(path: Path):
    """Open a raster with a GDAL block cache of a few rows of blocks, so a decimated pass does not fill RAM.

    GDAL keeps every decompressed block up to 5 % of RAM by default: a quick-look of a large raster
    without overviews would hold the whole raster. A decimated read only needs the current row of blocks.
    """
    with open_raster(path) as src:
        block_rows = min(max(src.block_shapes[0][0], 1), 1024) if src.count else 1
        need = 2 * block_rows * src.width * src.count * max(np.dtype(d).itemsize for d in src.dtypes) / 2**20
        with gdal_env(int(min(512, max(64, need)) * 2**20)):
            yield src


def _style(src, path: Path, bands: list[int] | None) -> tuple[_Style, tuple | None]:
    """The cached style of a raster; on a cache miss also the decimated (data, valid) read for its statistics."""
    chosen = _check_bands(bands, src.count, path) if bands else None
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, chosen)
    with _lock:
        style = _styles.get(key)
        if style is not None:
            _styles.move_to_end(key)
            return style, None
    style, sample = _make_style(src, path, chosen)
    with _lock:
        _styles[key] = style
        while len(_styles) > _CACHE_SIZE:
            _styles.popitem(last=False)
    return style, sample


def _check_bands(bands, count: int, path: Path) -> tuple[int, ...]:
    ok = (
        isinstance(bands, (list, tuple))
        and len(bands) in (1, 3)
        and all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= count for b in bands)
    )
    if not ok:
        raise ConfigError(
            f"The display bands {bands!r} do not fit '{path.name}', which has {count} band(s).",
            f"Give one band (grey) or three (red, green, blue), each a number from 1 to {count}.",
        )
    return tuple(bands)


def _make_style(src, path: Path, bands: tuple[int, ...] | None) -> tuple[_Style, tuple | None]:
    if bands is None:
        lut = _palette(src, path)
        if lut is not None:
            return _Style(bands=(1,), lut=lut), None
        bands = default_bands(src)
    data, valid = _read(src, _Style(bands=bands), None, fit_shape(src.width, src.height, STATS_SIZE))
    return _Style(bands=bands, ranges=_stretch(data, valid)), (data, valid)


def _hex_rgba(colour) -> tuple[int, int, int, int] | None:
    if not isinstance(colour, str) or not re.fullmatch(r"#?[0-9a-fA-F]{6}([0-9a-fA-F]{2})?", colour):
        return None
    text = colour.lstrip("#")
    rgb = tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))
    return (*rgb, int(text[6:8], 16) if len(text) == 8 else 255)


def _palette(src, path: Path) -> np.ndarray | None:
    """An RGBA lookup table by pixel value for classified maps (class table) or paletted rasters (colour table)."""
    if src.count != 1 or not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
        return None
    table = read_class_table(path)
    entries: dict[int, tuple] = {}
    if table:
        for c in table:
            rgba = _hex_rgba(c.get("colour")) if isinstance(c, dict) else None
            if rgba is not None and isinstance(c.get("index"), int) and c["index"] >= 0:
                entries[c["index"]] = rgba
    else:
        try:
            entries = {int(k): tuple(v) for k, v in src.colormap(1).items()}
        except ValueError:  # no colour table
            return None
    if not entries:
        return None
    lut = np.zeros((max(256, max(entries) + 1), 4), dtype=np.uint8)
    for k, rgba in entries.items():
        if 0 <= k < len(lut):
            lut[k] = rgba[:4] if len(rgba) >= 4 else (*rgba[:3], 255)
    if src.nodata is not None and 0 <= src.nodata < len(lut) and float(src.nodata).is_integer():
        lut[int(src.nodata)] = 0
    return lut


def default_bands(src) -> tuple[int, ...]:
    """Bands named red/green/blue (by description, else colour interpretation), else 1-2-3, else band 1 as grey."""
    names = [(d or "").strip().lower() for d in src.descriptions]
    found = []
    for colour in ("red", "green", "blue"):
        match = [i for i, n in enumerate(names, start=1) if re.search(rf"\b{colour}\b", n)]
        found.append(match[0] if match else None)
    if all(found):
        return tuple(found)
    interp = list(src.colorinterp)
    by_interp = [interp.index(c) + 1 if c in interp else None for c in (ColorInterp.red, ColorInterp.green,
                                                                         ColorInterp.blue)]  # fmt: skip
    if all(by_interp):
        return tuple(by_interp)
    data_bands = [i for i, c in enumerate(interp, start=1) if c != ColorInterp.alpha]
    return tuple(data_bands[:3]) if len(data_bands) >= 3 else (data_bands[0] if data_bands else 1,)


def _read(src, style: _Style, window, shape) -> tuple[np.ndarray, np.ndarray]:
    """(data (bands, rows, cols), valid (rows, cols)) read decimated to ``shape``; GDAL uses overviews if any.

    Class maps are read with nearest neighbour (class indices must not be mixed); images with averaging,
    which also reads a pixel-interleaved GeoTIFF without overviews several times faster than GDAL's
    nearest-neighbour decimation (one pass for all bands instead of one per band).
    """
    resampling = Resampling.nearest if style.lut is not None else Resampling.average
    out_shape = (len(style.bands), *shape)
    arr = src.read(list(style.bands), window=window, out_shape=out_shape, masked=True, resampling=resampling)
    data = np.ma.getdata(arr)
    valid = ~np.ma.getmaskarray(arr).any(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


def _stretch(data: np.ndarray, valid: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Per band, the 2 and 98 % percentiles of the valid pixels."""
    ranges = []
    for band in data:
        values = band[valid].astype(np.float64)
        if values.size == 0:
            ranges.append((0.0, 1.0))
            continue
        lo, hi = (float(v) for v in np.percentile(values, PERCENTILES))
        if hi <= lo:
            hi = lo + 1.0
        ranges.append((lo, hi))
    return tuple(ranges)


def _render(src, style: _Style, window, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols, 4) uint8 RGBA of a window (None: the whole raster) read at ``shape``."""
    return _colour(style, *_read(src, style, window, shape))


def _colour(style: _Style, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(rows, cols, 4) uint8 RGBA of (bands, rows, cols) pixel values; invalid pixels transparent."""
    if style.lut is not None:
        idx = data[0].astype(np.int64)
        inside = (idx >= 0) & (idx < len(style.lut))
        rgba = style.lut[np.clip(idx, 0, len(style.lut) - 1)]
        rgba[~(valid & inside)] = 0
        return rgba
    rgba = np.zeros((*data.shape[1:], 4), dtype=np.uint8)
    for i, (band, (lo, hi)) in enumerate(zip(data, style.ranges, strict=True)):
        scaled = (band.astype(np.float32) - lo) * (255.0 / (hi - lo))
        rgba[..., i] = np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    if len(style.bands) == 1:
        rgba[..., 1] = rgba[..., 2] = rgba[..., 0]
    rgba[..., 3] = np.where(valid, 255, 0)
    rgba[~valid, :3] = 0
    return rgba


# --- vectors ---------------------------------------------------------------------------------------------------------


def _class_names(gdf, field: str, rows: list[dict]) -> dict:
    """Value -> class name, from a text field that takes one value per class value (e.g. class_name)."""
    for row in rows:
        other = row["name"]
        if other == field or gdf[other].dtype.kind not in "OU":
            continue
        pairs = gdf[[field, other]].dropna().drop_duplicates()
        if len(pairs) == pairs[field].nunique() == pairs[other].nunique():
            return dict(zip(pairs[field], pairs[other].astype(str), strict=True))
    return {}


def _class_order(value) -> tuple:
    """Numbers in numeric order, then text: the order of the class table of a chip set."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _legend_label(value, names: dict) -> str:
    return f"{names[value]} ({value})" if value in names and names[value] != str(value) else str(value)


def _vector_quicklook(path: Path, max_size: int) -> bytes:
    import pyogrio
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    try:
        gdf = pyogrio.read_dataframe(vector_source(path), max_features=MAX_VECTOR_FEATURES)
    except Exception as exc:  # pyogrio raises several error types for unreadable data
        raise unreadable_vector(path, exc) from None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    rows = []
    for col in gdf.columns:
        if col == gdf.geometry.name:
            continue
        values = gdf[col].dropna().unique()
        if len(values) <= MAX_DISTINCT:
            rows.append({"name": col, "distinct": [json_value(v) for v in values]})
    field = guess_class_field(rows)
    if len(gdf):
        left, bottom, right, top = (float(v) for v in gdf.total_bounds)
    else:
        left, bottom, right, top = 0.0, 0.0, 1.0, 1.0
    w, h = max(right - left, 1e-9), max(top - bottom, 1e-9)
    rows_px, cols_px = fit_shape(max(1, round(1000 * w / max(w, h))), max(1, round(1000 * h / max(w, h))), max_size)
    rows_px, cols_px = max(rows_px, 64), max(cols_px, 64)
    fig = Figure(figsize=(cols_px / 100, rows_px / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    if not len(gdf):
        ax.text(0.5, 0.5, "no features", ha="center", va="center", fontsize=9, color="#555555")
    else:
        kwargs = dict(ax=ax, linewidth=0.6, markersize=8)
        if field is not None:
            values = sorted(gdf[field].dropna().unique(), key=_class_order)
            names = _class_names(gdf, field, rows)
            colours = dict(zip(values, assign_colours([str(names.get(v, v)) for v in values]), strict=True))
            for value in values:  # the same colours as the classes of a chip set and a map
                gdf[gdf[field] == value].plot(color=colours[value], edgecolor="#333333", **kwargs)
            handles = [Patch(facecolor=colours[v], edgecolor="#333333", label=_legend_label(v, names)) for v in values]
            ax.legend(handles=handles, fontsize=7, title=field, title_fontsize=7, framealpha=0.8, loc="best")
        else:
            gdf.plot(color="#3388ff", edgecolor="#1f4e99", **kwargs)
        pad_x, pad_y = 0.02 * w, 0.02 * h
        ax.set_xlim(left - pad_x, right + pad_x)
        ax.set_ylim(bottom - pad_y, top + pad_y)
        ax.set_aspect("auto")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", transparent=True, dpi=100)
    return buf.getvalue()


def detection_boxes(path: Path, limit: int = 20_000) -> dict:
    """Boxes of a detections GeoPackage in the pixels of the raster they were detected on (its recorded grid).

    ``{"classes": [{value, name, colour}], "boxes": [[col0, row0, col1, row1, class index, score], ...],
    "total": N, "raster": first raster}``, best ``limit`` boxes first. A layer without the grid of
    ``terralearn detect`` is refused: its map coordinates cannot be placed on an image.
    """
    from affine import Affine

    from terralearn.geo.boxes import map_to_pixel
    from terralearn.io.detections import read_detections

    layer = read_detections(path)
    grid = layer.metadata.get("grid")
    if not grid:
        raise InputFileError(f"'{path.name}' records no raster grid, so its boxes cannot be drawn over an image.",
                             "Draw detections written by `terralearn detect`, or open the file in QGIS.")  # fmt: skip
    order = np.argsort(-layer.scores, kind="stable")[:limit]
    pixels = map_to_pixel(layer.boxes[order], Affine(*grid["transform"][:6])) if len(order) else np.zeros((0, 4))
    index = {c["value"]: i for i, c in enumerate(layer.classes)}
    classes = [index.get(int(v), 0) for v in layer.class_values[order]]
    boxes = [[*(round(float(v), 2) for v in b), k, round(float(s), 4)]
             for b, k, s in zip(pixels, classes, layer.scores[order], strict=True)]  # fmt: skip
    rasters = layer.metadata.get("rasters") or []
    return {"classes": [{k: c.get(k) for k in ("value", "name", "colour")} for c in layer.classes], "boxes": boxes,
            "total": len(layer), "shown": len(boxes), "raster": rasters[0] if rasters else None,
            "width": grid["width"], "height": grid["height"]}  # fmt: skip
