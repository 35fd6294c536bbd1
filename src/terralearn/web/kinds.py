"""What a workspace file is (one of ``KINDS``), for the web app's file browser and pickers."""

from __future__ import annotations

import re
import stat
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

from terralearn.errors import InputFileError
from terralearn.io.raster import CLASS_TABLE_TAG, open_raster
from terralearn.io.vector import VECTOR_SUFFIXES

KINDS = ("folder", "raster", "map", "vector", "chipset", "package", "report", "image", "other")
RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".img", ".vrt", ".jp2"})
#: Suffixes that do not say alone that a file is a vector layer: a .json may be any JSON, a .zip a model package.
LOOKED_INTO_SUFFIXES = frozenset({".json", ".zip"})
#: Vector formats the reader takes but the file browser does not list (rarer; a .sqlite may be any database).
UNLISTED_VECTOR_SUFFIXES = frozenset({".kml", ".gml", ".sqlite"})
#: Vector formats listed as datasets by their suffix alone: .gpkg, .geojson, .shp, .fgb.
LISTED_VECTOR_SUFFIXES = VECTOR_SUFFIXES - LOOKED_INTO_SUFFIXES - UNLISTED_VECTOR_SUFFIXES
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
REPORT_SUFFIXES = frozenset({".html", ".htm"})
GEOJSON_TYPES = frozenset(
    {"FeatureCollection", "Feature", "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
     "MultiPolygon", "GeometryCollection"}
)  # fmt: skip
#: A GeoJSON "type" member, found in a file's first bytes.
GEOJSON_TYPE = re.compile(rb'"type"\s*:\s*"(' + b"|".join(t.encode() for t in sorted(GEOJSON_TYPES)) + rb')"')

_kind_cache: OrderedDict[tuple, str] = OrderedDict()
_kind_lock = threading.Lock()
_KIND_CACHE_SIZE = 4096


def detect_kind(path: Path) -> str:
    """What a file or folder is, from its name, a few header bytes or a zip's directory (never a full read).

    One of ``KINDS``. Results are cached by (path, modification time, size).
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return "other"
    key = (str(path), st.st_mtime_ns, st.st_size, stat.S_ISDIR(st.st_mode))
    with _kind_lock:
        kind = _kind_cache.get(key)
        if kind is not None:
            _kind_cache.move_to_end(key)
            return kind
    kind = _detect_kind(path, stat.S_ISDIR(st.st_mode))
    with _kind_lock:
        _kind_cache[key] = kind
        while len(_kind_cache) > _KIND_CACHE_SIZE:
            _kind_cache.popitem(last=False)
    return kind


def _detect_kind(path: Path, is_dir: bool) -> str:
    if is_dir:
        if (path / "manifest.json").is_file() and (path / "tiles.gpkg").is_file():
            return "chipset"
        if (path / "model.json").is_file() and (path / "model.safetensors").is_file():
            return "package"
        return "folder"
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "map" if suffix in (".tif", ".tiff") and _has_class_table(path) else "raster"
    if suffix in LISTED_VECTOR_SUFFIXES:
        return "vector"
    if suffix == ".json":
        return "vector" if _looks_like_geojson(path) else "other"
    if suffix == ".zip":
        return _zip_kind(path)
    if suffix in REPORT_SUFFIXES:
        return "report"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "other"


def _has_class_table(path: Path) -> bool:
    try:
        with open_raster(path) as src:
            return bool(src.tags().get(CLASS_TABLE_TAG))
    except (InputFileError, OSError):
        return False


def _looks_like_geojson(path: Path, head_bytes: int = 1 << 16) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(head_bytes)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and GEOJSON_TYPE.search(head) is not None


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "other"
    if "model.json" in names and "model.safetensors" in names:
        return "package"
    return "vector" if any(n.lower().endswith(".shp") for n in names) else "other"
