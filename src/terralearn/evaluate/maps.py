"""The class-map evaluator: a classified map + reference data -> confusion matrix and mapped pixels per class.

One streamed pass over the map in windows of ``BLOCK`` pixels a side counts the mapped pixels and, where the
reference is, the pairs of (reference, map) class: memory does not grow with the raster size. Class values
are collected as small integer *codes* during the pass and resolved to classes at the end, so a map or a
raster reference without a class table needs no extra pass. Reference values are matched to the map's classes
by original value (``str(value)``) or by class name; a point counts the pixel under it, a polygon every pixel
whose centre it covers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from rasterio.windows import Window

from terralearn.classes import build_classes, colour_for, normalise_values
from terralearn.config import UNLABELLED, EvaluateConfig
from terralearn.errors import LabelError, RasterError
from terralearn.geo.grid import Grid, bounds_intersection, window_of_bounds
from terralearn.geo.metrics import confusion_matrix
from terralearn.geo.tiling import block_windows
from terralearn.io.raster import RasterInfo, describe_raster, read_class_table
from terralearn.io.reference import MapReader, open_reference_raster, read_reference_vector
from terralearn.io.vector import is_vector_path
from terralearn.labels import GeometryReport, VectorLabels, clean_vector

Progress = Callable[[int, int], None]

#: Side of the windows the map is read in (pixels).
BLOCK = 1024
#: Codes 0..254 name distinct class values; 255 means "none" (as in label chips).
NONE = UNLABELLED
MAX_CODES = UNLABELLED
_POINT_TYPES = (0, 4)  # shapely type ids of Point and MultiPoint


# ----------------------------------------------------------------------------------------------- small helpers


def _key(value) -> str:
    """A class value as text for matching: 22531, 22531.0 and '22531' all give '22531'."""
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return str(int(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


class ValueCodes:
    """Distinct raw values seen so far, each given a small integer code (0..254) in order of appearance."""

    def __init__(self, what: str, fix: str, error=LabelError) -> None:
        self.values: list = []
        self._codes: dict = {}
        self._what, self._fix, self._error = what, fix, error

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Codes (uint8) of a 1-D array of raw values."""
        if values.size == 0:
            return np.zeros(0, dtype=np.uint8)
        uniq, inverse = np.unique(values, return_inverse=True)
        lut = np.array([self._code(v) for v in uniq.tolist()], dtype=np.uint8)
        return lut[inverse.ravel()]

    def _code(self, value) -> int:
        code = self._codes.get(value)
        if code is None:
            if len(self.values) >= MAX_CODES:
                raise self._error(
                    f"{self._what} holds more than {MAX_CODES} distinct values (e.g. {self.values[:5]}); a classified "
                    f"map or reference holds at most {MAX_CODES} classes.",
                    self._fix,
                )
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        return code


# ----------------------------------------------------------------------------------------------- the map


@dataclass
class MapSource:
    """The classified map: its grid, its class table (None without tag) and how pixels become codes."""

    path: Path
    info: RasterInfo
    table: list[dict] | None  # classes from the tag, sorted by index; None: pixel values are class values
    codes: ValueCodes | None = None  # for maps without a class table
    unknown_pixels: int = 0  # tagged map: pixel values that are no class index

    @property
    def grid(self) -> Grid:
        return self.info.grid

    def __post_init__(self) -> None:
        if self.table is None:
            self.codes = ValueCodes(
                f"The map '{self.path}'",
                "Give the classified map written by `terralearn classify`, or a single-band raster of class values "
                "(not a continuous image or a probability raster).",
                RasterError,
            )
            self._lut = None
        else:
            self._lut = np.full(256, NONE, dtype=np.uint8)
            for pos, c in enumerate(self.table):
                self._lut[c["index"]] = pos

    def encode(self, values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes uint8 (H, W) with 255 where invalid, valid mask) of a window's pixel values."""
        codes = np.full(values.shape, NONE, dtype=np.uint8)
        if self._lut is not None:
            inside = valid & (values >= 0) & (values <= 255)
            idx = np.where(inside, values, NONE).astype(np.int64)
            mapped = self._lut[idx]
            unknown = valid & (~inside | (mapped == NONE))
            self.unknown_pixels += int(np.count_nonzero(unknown & (values != NONE)))
            valid &= ~unknown
            codes[valid] = mapped[valid]
        else:
            codes[valid] = self.codes.encode(values[valid])
        return codes, valid


def open_map(path: Path) -> MapSource:
    info = describe_raster(path)
    if info.count != 1:
        raise RasterError(
            f"The map '{path}' has {info.count} bands; a classified map has one band of class values.",
            "Give the map written by `terralearn classify` (or extract the class band with gdal_translate -b N).",
        )
    if info.grid.crs is None:
        raise RasterError(
            f"The map '{path}' has no coordinate reference system, so the reference cannot be placed on it.",
            "Assign the map's CRS (gdal_edit.py -a_srs EPSG:XXXX MAP.tif) and try again.",
        )
    table = read_class_table(path)
    return MapSource(Path(path), info, _check_table(path, table) if table is not None else None)


def _check_table(path: Path, table: list) -> list[dict]:
    rows, seen = [], set()
    for entry in table:
        idx = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(idx, int) or not 0 <= idx < NONE or idx in seen:
            raise RasterError(
                f"The class table of the map '{path}' has an unusable entry {entry!r} (each class needs a distinct "
                f"integer index from 0 to {NONE - 1}).",
                "Write the map again with `terralearn classify`, or remove the TERRALEARN_CLASSES tag to use the pixel "
                "values as class values.",
            )
        seen.add(idx)
        value = entry.get("value", idx)
        name = str(entry.get("name") or value)
        rows.append(
            {"index": idx, "value": value, "name": name, "colour": entry.get("colour") or colour_for(name, idx)}
        )
    if not rows:
        raise RasterError(
            f"The class table of the map '{path}' is empty.",
            "Write the map again with `terralearn classify`, or remove the TERRALEARN_CLASSES tag.",
        )
    return sorted(rows, key=lambda c: c["index"])


def _class_list(table: list[dict]) -> str:
    shown = [f"{c['index']} = {c['value']}" + (f" ({c['name']})" if _key(c["value"]) != c["name"] else "")
             for c in table[:40]]  # fmt: skip
    more = f" and {len(table) - 40} more" if len(table) > 40 else ""
    return ", ".join(shown) + more


def _match(value, table: list[dict]) -> int | None:
    """Position in ``table`` of the class whose original value or name is ``value``."""
    key = _key(value)
    for pos, c in enumerate(table):
        if _key(c["value"]) == key:
            return pos
    folded = key.casefold()
    for pos, c in enumerate(table):
        if str(c["name"]).strip().casefold() == folded:
            return pos
    return None


# ----------------------------------------------------------------------------------------------- references


class VectorReference:
    """Reference features on the map grid: polygons and lines rasterised per window, points as single pixels."""

    def __init__(self, config: EvaluateConfig, grid: Grid, table: list[dict] | None) -> None:
        path = config.reference
        gdf = read_reference_vector(path, config.class_field)
        self.field = config.class_field
        gdf, self.geometry_report = clean_vector(gdf, self.field, "fix")
        self.crs_note = ""
        if gdf.crs is None:
            gdf = gdf.set_crs(grid.crs)
            self.crs_note = f"The reference '{path}' has no CRS; its coordinates were taken to be in the map's CRS."
        elif gdf.crs != grid.crs:
            gdf = gdf.to_crs(grid.crs)
        if len(gdf) == 0:
            raise LabelError(
                f"The reference '{path}' has no usable feature (every geometry is empty or has no value in "
                f"'{self.field}').",
                "Check the reference layer in your GIS: it needs geometries with a class value.",
            )
        gdf = gdf.reset_index(drop=True)
        geoms = gdf.geometry.to_numpy()
        is_point = np.isin(shapely.get_type_id(geoms), _POINT_TYPES)
        inside = shapely.intersects(geoms, shapely.box(*grid.bounds))
        if not inside.any():
            left, bottom, right, top = (round(v, 3) for v in gdf.total_bounds)
            raise LabelError(
                f"The reference '{path}' does not overlap the map '{config.prediction}' (reference bounds in the "
                f"map's CRS: {left}, {bottom}, {right}, {top}; map bounds: "
                f"{', '.join(str(round(v, 3)) for v in grid.bounds)}).",
                "Give reference data for the mapped area; check the reference's CRS (a layer saved without its .prj, "
                "or with a wrong one, lands elsewhere).",
            )
        self.features_outside = int((~inside).sum())
        self.features = int(inside.sum())
        gdf, geoms, is_point = gdf[inside].reset_index(drop=True), geoms[inside], is_point[inside]
        values = normalise_values(gdf[self.field].tolist())
        distinct = sorted(set(values), key=lambda v: (isinstance(v, str), v))
        if table is not None:  # resolve to the map's classes now: an unknown value fails before any reading
            positions = {v: _match(v, table) for v in distinct}
            unknown = [v for v, p in positions.items() if p is None]
            if unknown:
                raise LabelError(
                    f"Reference value(s) {', '.join(repr(v) for v in unknown[:20])} in field '{self.field}' of "
                    f"'{path}' match no class of the map '{config.prediction}'. The map's classes (index = value "
                    f"(name)) are: {_class_list(table)}.",
                    "Use the class values or names the model was trained on, or recode the reference field.",
                )
            self.code_values = [c["value"] for c in table]
            code_of = positions
        else:
            if len(distinct) > MAX_CODES:
                raise LabelError(
                    f"The reference '{path}' holds {len(distinct)} distinct values in '{self.field}'; at most "
                    f"{MAX_CODES} classes are supported.",
                    "Recode the reference field into fewer classes.",
                )
            self.code_values = list(distinct)
            code_of = {v: i for i, v in enumerate(distinct)}
        codes = np.array([code_of[v] for v in values], dtype=np.uint8)

        self._areas = None
        self.area_window = None
        if (~is_point).any():  # polygons and lines: rasterised per window (pixel centres), like export's labels
            areas = gdf[[gdf.geometry.name]][~is_point].copy()
            areas["_class"] = codes[~is_point]
            areas["_split"] = -1
            self._areas = VectorLabels(grid, areas.reset_index(drop=True), [], GeometryReport())
            b = bounds_intersection(tuple(areas.total_bounds), grid.bounds)
            self.area_window = None if b is None else window_of_bounds(grid, b)
        # points: the pixel under each point (a multipoint gives one sample per point)
        pts = geoms[is_point]
        xy, owner = shapely.get_coordinates(pts, return_index=True)
        cols, rows = ~grid.transform @ (xy[:, 0], xy[:, 1]) if len(xy) else (np.zeros(0), np.zeros(0))
        rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
        keep = (rows >= 0) & (rows < grid.height) & (cols >= 0) & (cols < grid.width)
        self.points_outside = int((~keep).sum())
        self._pr, self._pc = rows[keep], cols[keep]
        self._pcode = codes[is_point][owner[keep]] if len(owner) else np.zeros(0, dtype=np.uint8)
        self.kind = "points" if self._areas is None else ("polygons" if not len(self._pr) else "polygons and points")

    def samples(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes, rows, cols) of the reference samples in a window (rows and cols relative to the window)."""
        r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        parts = []
        if self._areas is not None and _overlaps(window, self.area_window):
            cls, _, _ = self._areas.read(window)
            rr, cc = np.nonzero(cls != NONE)
            parts.append((cls[rr, cc], rr, cc))
        if len(self._pr):
            sel = (self._pr >= r0) & (self._pr < r0 + h) & (self._pc >= c0) & (self._pc < c0 + w)
            if sel.any():
                parts.append((self._pcode[sel], self._pr[sel] - r0, self._pc[sel] - c0))
        if not parts:
            return np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))

    def warnings(self) -> list[dict]:
        out = []
        rep = self.geometry_report
        if self.crs_note:
            out.append(warning("reference_crs", self.crs_note, "Save the reference with its CRS (.prj)."))
        dropped = rep.null + rep.empty + rep.missing_class + rep.dropped
        if dropped:
            out.append(warning(
                "reference_features_dropped",
                f"{dropped} reference feature(s) were left out: {rep.null} without geometry, {rep.empty} empty, "
                f"{rep.missing_class} without a value in '{self.field}', {rep.dropped} invalid.",
                "Fix or delete those features in your GIS if they should count.",
            ))  # fmt: skip
        if rep.fixed:
            out.append(warning("reference_geometries_fixed", f"{rep.fixed} invalid reference geometries were repaired.",
                                "Check them in your GIS (e.g. Check Validity) if the counts look wrong."))  # fmt: skip
        outside = self.features_outside + self.points_outside
        if outside:
            out.append(warning(
                "reference_outside_map",
                f"{outside} reference feature(s) or point(s) lie outside the map and were ignored.",
                "Expected when the reference covers a larger area; otherwise check the reference's CRS.",
            ))  # fmt: skip
        return out

    def close(self) -> None:
        pass


class RasterReference:
    """A classified reference raster read nearest onto the map grid, window by window."""

    kind = "raster"

    def __init__(self, config: EvaluateConfig, grid: Grid) -> None:
        path = config.reference
        self.source, self.table = open_reference_raster(path, grid, config.prediction)
        self.codes = ValueCodes(
            f"The reference raster '{path}'",
            "Give a single-band raster of class values (not a continuous image), or vector reference data.",
        )

    @property
    def code_values(self) -> list:
        if self.table is None:
            return self.codes.values
        by_index = {c.get("index"): c.get("value") for c in self.table if isinstance(c, dict)}
        return [by_index.get(_int_or(v), v) for v in self.codes.values]

    def samples(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values, labelled = self.source.read(window)
        rr, cc = np.nonzero(labelled)
        return self.codes.encode(values[rr, cc]), rr, cc

    def warnings(self) -> list[dict]:
        return []

    def close(self) -> None:
        self.source.close()


def _int_or(v):
    return int(v) if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer()) else v


def _overlaps(a: Window, b: Window | None) -> bool:
    if b is None:
        return False
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)  # fmt: skip


def open_reference(config: EvaluateConfig, grid: Grid, table: list[dict] | None):
    if is_vector_path(config.reference):
        return VectorReference(config, grid, table)
    return RasterReference(config, grid)


def warning(code: str, message: str, fix: str = "") -> dict:
    return {"code": code, "message": message, "fix": fix}


# ----------------------------------------------------------------------------------------------- the pass


@dataclass
class Tally:
    """What the pass over the map counted, in codes."""

    map_counts: np.ndarray  # (MAX_CODES,) mapped pixels per map code
    pairs: np.ndarray  # (MAX_CODES, MAX_CODES) reference code x map code
    on_nodata: int  # reference samples on map nodata (left out)


def tally(map_src: MapSource, reference, progress: Progress | None = None) -> Tally:
    grid = map_src.grid
    map_counts = np.zeros(MAX_CODES, dtype=np.int64)
    pairs = np.zeros((MAX_CODES, MAX_CODES), dtype=np.int64)
    on_nodata = 0
    wins = list(block_windows(grid.width, grid.height, BLOCK))
    with MapReader(map_src.path) as reader:
        for done, win in enumerate(wins, start=1):
            codes, valid = map_src.encode(*reader.read(win))
            map_counts += np.bincount(codes[valid], minlength=MAX_CODES)[:MAX_CODES]
            ref, rr, cc = reference.samples(win)
            if ref.size:
                ok = valid[rr, cc]
                on_nodata += int(ref.size - np.count_nonzero(ok))
                pairs += confusion_matrix(ref[ok], codes[rr[ok], cc[ok]], MAX_CODES, ignore=NONE)
            if progress:
                progress(done, len(wins))
    return Tally(map_counts, pairs, on_nodata)


def resolve_classes(map_src: MapSource, reference, t: Tally, config: EvaluateConfig):
    """Class table (list of dicts), K x K confusion and mapped pixels per class from the coded counts."""
    ref_values = list(reference.code_values)
    n_ref = len(ref_values)
    if map_src.table is not None:
        classes = [dict(c) for c in map_src.table]
        map_pos = np.arange(len(classes))
        if isinstance(reference, VectorReference):
            ref_pos = np.arange(n_ref)  # already positions in the map's table
        else:
            matched = [_match(v, classes) for v in ref_values]
            seen = t.pairs.sum(axis=1)[:n_ref] > 0
            unknown = [v for v, p, s in zip(ref_values, matched, seen, strict=True) if p is None and s]
            if unknown:
                raise LabelError(
                    f"Reference raster value(s) {', '.join(repr(_int_or(v)) for v in unknown[:20])} in "
                    f"'{config.reference}' match no class of the map '{config.prediction}'. The map's classes "
                    f"(index = value (name)) are: {_class_list(classes)}.",
                    "Use a reference raster with the class values the model was trained on (its nodata, else 0, "
                    "marks pixels without reference), or recode it.",
                )
            ref_pos = np.array([-1 if p is None else p for p in matched], dtype=np.int64)
    else:
        map_values = list(map_src.codes.values)
        raw = normalise_values([*map_values, *ref_values])
        m_norm, r_norm = raw[: len(map_values)], raw[len(map_values) :]
        if any(isinstance(v, str) for v in raw):
            text = [v for v in ref_values if isinstance(v, str) and not _key(v).lstrip("-").isdigit()]
            if text:
                raise LabelError(
                    f"Reference values such as {text[0]!r} are text, but the map '{config.prediction}' has no class "
                    f"table: its pixel values are the class values ({', '.join(map(_key, map_values[:20]))}).",
                    "Evaluate the map written by `terralearn classify` (it carries the class names), or use a "
                    "reference field with the numeric class values.",
                )
            m_norm = [int(_key(v)) for v in m_norm]
            r_norm = [int(_key(v)) for v in r_norm]
        infos = build_classes([*m_norm, *r_norm])
        classes = [c.as_dict() for c in infos]
        pos = {c["value"]: c["index"] for c in classes}
        map_pos = np.array([pos[v] for v in m_norm], dtype=np.int64)
        ref_pos = np.array([pos[v] for v in r_norm], dtype=np.int64)
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    sub = t.pairs[: len(ref_pos), : len(map_pos)]
    rows = np.repeat(ref_pos[:, None], len(map_pos), axis=1)
    cols = np.repeat(map_pos[None, :], len(ref_pos), axis=0)
    keep = rows >= 0
    np.add.at(cm, (rows[keep], cols[keep]), sub[keep])
    mapped = np.zeros(k, dtype=np.int64)
    np.add.at(mapped, map_pos, t.map_counts[: len(map_pos)])
    return classes, cm, mapped
