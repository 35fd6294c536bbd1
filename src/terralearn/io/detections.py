"""Detections as a GeoPackage, and reference objects read as boxes.

A detections file is one polygon layer ``detections`` (axis-aligned boxes in the raster's CRS) with the fields
``class_value`` (int), ``class_name`` (str) and ``score`` (float, 0-1), plus a QGIS style beside it
(``NAME.qml``: one outline colour per class, categorized on ``class_name``). The layer metadata
(``TERRALEARN_DETECTIONS``, JSON) carries the class table (index, value, name, colour) and whatever the detect stage
adds (the raster's grid, the tile size and overlap), so that the evaluation can find the tile seams.

Writing streams: :class:`DetectionWriter` appends batches to a temporary GeoPackage in the output's folder and
renames it into place when closed without error, so millions of boxes never sit in memory and a failed run leaves
nothing under the final name. Boxes are read back through ``pyogrio.read_bounds`` (no geometry parsing).

Reference objects (polygons, boxes or points with a class field, any CRS) are read as their envelopes in a target
CRS; points become squares of half-side ``point_radius`` (the envelope of a buffer of that radius).
"""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from affine import Affine
from rasterio.crs import CRS

from terralearn.errors import ConfigError, InputFileError, LabelError
from terralearn.geo.boxes import as_boxes, boxes_to_polygons, pixel_to_map
from terralearn.io.annotations import is_annotation_file, read_image_annotations
from terralearn.io.atomic import write_text_atomic
from terralearn.io.vector import read_vector, unreadable_vector

__all__ = [
    "FIELDS",
    "LAYER",
    "METADATA_KEY",
    "DetectionLayer",
    "DetectionWriter",
    "ReferenceObjects",
    "read_detections",
    "read_reference_objects",
    "write_detections",
    "write_detections_qml",
]

LAYER = "detections"
FIELDS = ("class_value", "class_name", "score")
METADATA_KEY = "TERRALEARN_DETECTIONS"
SCHEMA_VERSION = 1
#: Detections buffered before a batch is appended to the file (about 10 MB of arrays).
FLUSH_ROWS = 65_536
_POINT_TYPES = (0, 4)  # shapely type ids: Point, MultiPoint
_LINE_TYPES = (1, 2, 5)  # LineString, LinearRing, MultiLineString


# --------------------------------------------------------------------------------------------- writing


class DetectionWriter:
    """Append detections batch by batch; the file appears under ``path`` only when :meth:`close` succeeds.

    Use as a context manager: leaving the block with an exception removes the temporary file (``path`` is
    untouched, an older file there survives). ``classes`` is the class table (dicts with index, value, name,
    colour); ``metadata`` (JSON-able) is stored in the layer metadata next to it.
    """

    def __init__(self, path: Path, crs, classes: list[dict], metadata: dict | None = None,
                 flush_rows: int = FLUSH_ROWS, geometry_type: str = "Polygon") -> None:  # fmt: skip
        self.path = Path(path)
        self.crs = CRS.from_user_input(crs) if crs is not None else None
        self.classes = [dict(c) for c in classes]
        self._names = {int(c["value"]): str(c["name"]) for c in self.classes}
        self._meta = {"schema_version": SCHEMA_VERSION, "classes": self.classes, **(metadata or {})}
        self._flush_rows = max(1, int(flush_rows))
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._created = False
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.tmp-", suffix=".gpkg", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(name)
        self.tmp.unlink()  # GDAL creates the GeoPackage itself
        self._open = True
        self.geometry_type = geometry_type  # "Polygon" (boxes) or "MultiPolygon" (instance outlines)

    def add_geometries(self, geometries, class_values, scores) -> None:
        """Queue outlines (shapely polygons in the CRS, e.g. instance masks) with their class values and scores."""
        geoms = np.asarray(geometries, dtype=object).reshape(-1)
        if self.geometry_type == "MultiPolygon":
            geoms = np.array([g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in geoms],
                             dtype=object)  # fmt: skip
        self._queue(geoms, class_values, scores, None, "outlines")

    def add(self, boxes, class_values, scores, class_names=None) -> None:
        """Queue detections: boxes (N, 4) xyxy in the CRS, class values (N,), scores (N,); names from the table."""
        self._queue(boxes_to_polygons(as_boxes(boxes)), class_values, scores, class_names, "boxes")

    def _queue(self, geoms: np.ndarray, class_values, scores, class_names, what: str) -> None:
        if not self._open:
            raise ValueError(f"the detections writer of '{self.path}' is closed")
        values = np.asarray(class_values).reshape(-1).astype(np.int64)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not len(geoms) == len(values) == len(s):
            raise ValueError(f"got {len(geoms)} {what}, {len(values)} class values and {len(s)} scores")
        if class_names is None:
            unknown = sorted(set(np.unique(values).tolist()) - set(self._names))
            if unknown:
                raise ValueError(f"class values {unknown[:5]} are not in the class table {sorted(self._names)}")
            names = np.array([self._names[int(v)] for v in values], dtype=object)
        else:
            names = np.asarray(class_names, dtype=object).reshape(-1)
            if len(names) != len(geoms):
                raise ValueError(f"got {len(geoms)} {what} but {len(names)} class names")
        if len(geoms):
            self._parts.append((np.asarray(geoms, dtype=object), values, names, s))
            self._buffered += len(geoms)
        if self._buffered >= self._flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._parts and self._created:
            return
        geoms, values, names, s = (np.concatenate(a) for a in zip(*self._parts, strict=True)) if self._parts else (
            np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0))  # fmt: skip
        self._parts, self._buffered = [], 0
        pyogrio.raw.write(
            self.tmp, shapely.to_wkb(geoms), [values, names.astype(object), s], list(FIELDS),
            layer=LAYER, driver="GPKG", geometry_type=self.geometry_type,
            crs=None if self.crs is None else self.crs.to_wkt(),
            append=self._created,
            layer_metadata=None if self._created else {METADATA_KEY: json.dumps(self._meta, default=str)},
        )  # fmt: skip
        self._created = True
        self.count += len(geoms)

    def close(self) -> Path:
        """Write what is buffered, rename the file into place and write its QGIS style; returns the path."""
        if not self._open:
            return self.path
        try:
            self._flush()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._open = False
        write_detections_qml(self.path, self.classes)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (and SQLite side files); ``path`` is left as it was."""
        self._open = False
        self._parts = []
        for p in (self.tmp, *(Path(f"{self.tmp}{s}") for s in ("-journal", "-wal", "-shm"))):
            p.unlink(missing_ok=True)

    def __enter__(self) -> DetectionWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_detections(path: Path, boxes_map, class_values, class_names, scores, crs, classes: list[dict],
                     metadata: dict | None = None) -> Path:  # fmt: skip
    """Write detections in one go (boxes (N, 4) xyxy in ``crs``); see :class:`DetectionWriter`."""
    with DetectionWriter(path, crs, classes, metadata) as writer:
        writer.add(boxes_map, class_values, scores, class_names)
    return Path(path)


def _rgba(colour: str, alpha: int = 255) -> str:
    h = str(colour).lstrip("#")
    try:
        r, g, b = (int(h[k : k + 2], 16) for k in (0, 2, 4))
    except ValueError:
        r, g, b = (255, 0, 0)
    return f"{r},{g},{b},{alpha}"


def write_detections_qml(gpkg: Path, classes: list[dict]) -> Path:
    """A QGIS style (NAME.qml next to the file): categorized on class_name, each class an outline in its colour."""
    qgis = ET.Element("qgis", version="3.28", styleCategories="Symbology")
    renderer = ET.SubElement(qgis, "renderer-v2", type="categorizedSymbol", attr="class_name", symbollevels="0",
                             enableorderby="0", forceraster="0")  # fmt: skip
    cats = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, c in enumerate(classes):
        ET.SubElement(cats, "category", symbol=str(i), value=str(c["name"]), label=f"{c['name']} ({c['value']})",
                      render="true")  # fmt: skip
        sym = ET.SubElement(symbols, "symbol", type="fill", name=str(i), alpha="1", clip_to_extent="1",
                            force_rhr="0")  # fmt: skip
        layer = ET.SubElement(sym, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
        opts = ET.SubElement(layer, "Option", type="Map")
        for key, value in (("color", "0,0,0,0"), ("style", "no"), ("outline_color", _rgba(c.get("colour", ""))),
                           ("outline_style", "solid"), ("outline_width", "0.6"), ("outline_width_unit", "MM"),
                           ("joinstyle", "miter")):  # fmt: skip
            ET.SubElement(opts, "Option", type="QString", name=key, value=value)
    path = Path(gpkg).with_suffix(".qml")
    text = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(qgis, encoding="unicode")
    write_text_atomic(path, text)
    return path


# --------------------------------------------------------------------------------------------- reading


@dataclass
class DetectionLayer:
    """Detections read back: boxes (N, 4) xyxy in ``crs``, class values, class names, scores, and the metadata."""

    boxes: np.ndarray
    class_values: np.ndarray
    class_names: np.ndarray
    scores: np.ndarray
    crs: CRS | None
    classes: list[dict]
    metadata: dict = field(default_factory=dict)
    dropped: int = 0  #: features without a geometry, a class value or a score, left out

    def __len__(self) -> int:
        return len(self.scores)


def _info(path: Path, layer: str | None = None) -> dict:
    if not path.exists():
        raise InputFileError(f"The file '{path}' does not exist.", "Check the path and file name.")
    try:
        return pyogrio.read_info(path, layer=layer)
    except Exception as exc:  # pyogrio raises several error types for unreadable data
        raise unreadable_vector(path, exc) from None


def read_detections(path: Path) -> DetectionLayer:
    """The detections of ``path`` (a file written by :class:`DetectionWriter`, or any layer with its fields)."""
    path = Path(path)
    _info(path)
    layers = [str(n) for n in pyogrio.list_layers(path)[:, 0]]
    layer = LAYER if LAYER in layers else layers[0] if len(layers) == 1 else None
    if layer is None:
        raise InputFileError(
            f"'{path}' has no layer '{LAYER}'; its layers are: {', '.join(layers)}.",
            "Give the GeoPackage written by `terralearn detect`.",
        )
    info = _info(path, layer)
    present = [str(f) for f in info["fields"]]
    missing = [f for f in ("class_value", "score") if f not in present]
    if missing:
        raise LabelError(
            f"The detections '{path}' have no field {', '.join(repr(m) for m in missing)}; their fields are: "
            f"{', '.join(present) or '(none)'}.",
            "Give the GeoPackage written by `terralearn detect` (fields class_value, class_name, score).",
        )
    fids, bounds = pyogrio.read_bounds(path, layer=layer)
    columns = [f for f in FIELDS if f in present]
    _, attr_fids, _, values = pyogrio.raw.read(path, layer=layer, columns=columns, read_geometry=False,
                                               return_fids=True)  # fmt: skip
    data = dict(zip(columns, values, strict=True))
    boxes = np.asarray(bounds, dtype=np.float64).T.reshape(-1, 4)
    valid = np.isfinite(boxes).all(axis=1)  # a missing or empty geometry has NaN bounds: left out, counted
    fids, boxes = np.asarray(fids)[valid], np.ascontiguousarray(boxes[valid])
    by_fid = np.argsort(attr_fids, kind="stable")
    keep = by_fid[np.searchsorted(attr_fids, fids, sorter=by_fid)] if len(fids) else np.zeros(0, np.int64)
    raw_values = np.asarray(data["class_value"])[keep]
    scores = np.asarray(data["score"], dtype=np.float64)[keep]
    filled = np.isfinite(scores) & (np.isfinite(raw_values) if raw_values.dtype.kind == "f" else True)
    if not filled.all():  # a null class value or score: left out, counted
        valid[np.flatnonzero(valid)[~filled]] = False
        keep, boxes, raw_values, scores = keep[filled], boxes[filled], raw_values[filled], scores[filled]
    class_values = raw_values.astype(np.int64)
    names = data.get("class_name")
    class_names = (np.asarray(names, dtype=object)[keep] if names is not None
                   else np.array([str(v) for v in class_values], dtype=object))  # fmt: skip
    meta = {}
    raw_meta = (info.get("layer_metadata") or {}).get(METADATA_KEY)
    if raw_meta:
        try:
            meta = json.loads(raw_meta)
        except ValueError:
            meta = {}
    classes = meta.get("classes") if isinstance(meta.get("classes"), list) else None
    if not classes:
        pairs = dict(zip(class_values.tolist(), class_names.tolist(), strict=True))
        classes = [{"index": i, "value": v, "name": str(pairs[v])} for i, v in enumerate(sorted(pairs))]
    crs = CRS.from_user_input(info["crs"]) if info.get("crs") else None
    return DetectionLayer(boxes, class_values, class_names, scores, crs, classes, meta, int((~valid).sum()))


@dataclass
class ReferenceObjects:
    """Reference objects as envelopes (N, 4) xyxy in the target CRS, with their class values (None: no field)."""

    boxes: np.ndarray
    values: np.ndarray | None
    path: Path
    dropped: int = 0
    points: int = 0
    crs_note: str = ""


def read_reference_objects(path: Path, class_field: str | None, crs, point_radius: float | None = None,
                           grid: dict | None = None, image_names=()) -> ReferenceObjects:  # fmt: skip
    """Reference polygons, boxes or points of ``path`` as boxes in ``crs``.

    ``class_field`` None reads no class (the caller gives every object the one class). Features with no geometry
    or no class value are dropped (counted). Points (and multi-points) need ``point_radius`` in map units of
    ``crs``. Raises a LabelError for a missing class field (quoting the fields present), an empty layer or lines.

    An annotation file (COCO, PASCAL VOC, YOLO, DOTA: pixel boxes of an image, classes by name) is read too:
    ``grid`` (the detections' raster grid: ``transform``, ``width``, ``height``, as ``terralearn detect`` records
    it) places its pixel boxes on the map, and ``image_names`` picks the image of a COCO file of several.
    """
    path = Path(path)
    if is_annotation_file(path):
        return _annotation_reference(path, grid, image_names)
    gdf = read_vector(path)
    fields = [c for c in gdf.columns if c != gdf.geometry.name]
    if class_field is not None and class_field not in gdf.columns:
        raise LabelError(
            f"The reference '{path}' has no field '{class_field}'; its fields are: {', '.join(fields) or '(none)'}.",
            "Pass --class-field with the field that holds the reference class values.",
        )
    if len(gdf) == 0:
        raise LabelError(f"The reference '{path}' has no features.", "Give a layer holding the reference objects.")
    geoms = gdf.geometry.to_numpy()
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if class_field is not None:
        col = gdf[class_field]
        keep &= ~col.isna().to_numpy()
        if col.dtype == object:
            keep &= ~col.astype(str).str.strip().eq("").to_numpy()
    if not keep.any():
        what = " or no value in '" + class_field + "'" if class_field else ""
        raise LabelError(
            f"The reference '{path}' has no usable feature (every geometry is empty{what}).",
            "Check the reference layer in your GIS: it needs geometries" + (" with a class value." if what else "."),
        )
    gdf = gdf[keep]
    note = ""
    target = CRS.from_user_input(crs) if crs is not None else None
    if gdf.crs is None:
        note = f"The reference '{path}' has no CRS; its coordinates were taken to be in the detections' CRS."
    elif target is not None and CRS.from_user_input(gdf.crs) != target:
        gdf = gdf.to_crs(target.to_wkt())
    geoms = gdf.geometry.to_numpy()
    kinds = shapely.get_type_id(geoms)
    lines = np.isin(kinds, _LINE_TYPES)
    if lines.any():
        raise LabelError(
            f"The reference '{path}' holds {int(lines.sum())} line feature(s); reference objects must be polygons, "
            "boxes or points.",
            "Draw the objects as polygons or boxes, or as points with --point-radius.",
        )
    points = np.isin(kinds, _POINT_TYPES)
    boxes = shapely.bounds(geoms).astype(np.float64)
    if points.any():
        if point_radius is None or not point_radius > 0:
            raise ConfigError(
                f"The reference '{path}' holds {int(points.sum())} point(s) but point_radius = {point_radius!r}.",
                "Pass --point-radius with the objects' typical radius in map units, so points become boxes.",
            )
        boxes[points] += np.array([-point_radius, -point_radius, point_radius, point_radius])
    values = gdf[class_field].to_numpy() if class_field is not None else None
    return ReferenceObjects(boxes, values, path, int((~keep).sum()), int(points.sum()), note)


def _annotation_reference(path: Path, grid: dict | None, image_names) -> ReferenceObjects:
    """The pixel boxes of an annotation file on the detections' grid; the class names are the values."""
    if not grid:
        raise ConfigError(
            f"The reference '{path}' is an annotation file of pixel boxes, and the detections record no raster grid "
            "to place them on.",
            "Evaluate detections written by `terralearn detect` (they record the grid), or give the reference as a "
            "vector layer in map coordinates.",
        )
    record = read_image_annotations(path, (int(grid["width"]), int(grid["height"])), image_names)
    if (record.width, record.height) != (int(grid["width"]), int(grid["height"])):
        raise LabelError(
            f"The reference '{path}' describes an image of {record.width} x {record.height} px, and the detections "
            f"were made on a raster of {grid['width']} x {grid['height']} px.",
            "Give the annotation file of the image that was detected.",
        )
    boxes = pixel_to_map(record.boxes, Affine(*grid["transform"][:6])) if len(record.boxes) else np.zeros((0, 4))
    return ReferenceObjects(boxes.astype(np.float64), np.array(record.labels, dtype=object), path)
