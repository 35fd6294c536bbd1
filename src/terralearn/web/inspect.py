"""One-look summaries of workspace files for the web app's Data page (JSON-serialisable dicts).

``describe`` reads headers only: a raster's size, bands, CRS, pixel size and extent; a vector
layer's fields and, for fields with few distinct values, those values (to help pick the class
field); a chip set's manifest; a model package's card. Nothing here reads whole rasters.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pyogrio

from terralearn.errors import ChipSetError, InputFileError
from terralearn.io.chips import read_manifest
from terralearn.io.package import read_card
from terralearn.io.raster import describe_raster, open_raster, read_class_table
from terralearn.io.vector import unreadable_vector
from terralearn.web.kinds import detect_kind

#: Fields with at most this many distinct values get them listed (candidate class fields).
MAX_DISTINCT = 30
#: Features read to list distinct values; larger layers are sampled from their start.
MAX_DISTINCT_FEATURES = 200_000
_CLASS_NAME_HINT = re.compile(r"class|code|label|type|cover|categ|lc|lulc|landuse|kind", re.IGNORECASE)


def describe(path: Path, layer: str | None = None) -> dict:
    """A summary of a file or folder; its ``kind`` key says which of the shapes below it has.

    raster/map: width, height, bands, band_names, band_descriptions, dtype, crs {name, epsg, units,
    geographic, wkt}, pixel_size [x, y], pixel_units, extent [left, bottom, right, top], lonlat_bounds
    [west, south, east, north] | None, nodata, nodata_is_nan, driver, overviews; maps also ``classes``
    [{index, value, name, colour}]. vector: layers [{name, geometry_type}], layer, crs, feature_count,
    geometry_type, fields [{name, type, distinct | None, n_distinct}], class_field_guess, bounds,
    lonlat_bounds. chipset: chips, train, val, tile_size, stride, bands, band_count, dtype, classes,
    split, crs, pixel_size, created, sources. package: task, architecture, backbone, bands, band_count,
    classes, chip_size, pixel_size, crs, metrics, baseline, run_id. Every kind: kind, name, file_size.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"'{path}' does not exist.", "Pick an existing file from the workspace list (it may have been moved)."
        )
    kind = detect_kind(path)
    base = {"kind": kind, "name": path.name, "file_size": _size(path)}
    if kind in ("raster", "map"):
        return {**base, **describe_raster_file(path, with_classes=kind == "map")}
    if kind == "vector":
        return {**base, **describe_vector(path, layer)}
    if kind == "chipset":
        return {**base, **describe_chipset(path)}
    if kind == "package":
        return {**base, **describe_package(path)}
    if kind == "folder":
        try:
            entries = sum(1 for p in path.iterdir() if not p.name.startswith("."))
        except OSError:
            entries = None
        return {**base, "entries": entries}
    return {**base, "modified": _modified(path)}


def _size(path: Path) -> int | None:
    try:
        return None if path.is_dir() else path.stat().st_size
    except OSError:
        return None


def _modified(path: Path) -> str | None:
    try:
        return _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.UTC).isoformat(timespec="seconds")
    except OSError:
        return None


def _number(value) -> float | int | None:
    """A JSON-safe number: None for NaN and infinities."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def crs_summary(crs) -> dict | None:
    """{name, epsg, units, geographic, wkt} of a rasterio CRS or a CRS string; None when there is none."""
    if not crs:
        return None
    from pyproj import CRS as ProjCRS
    from pyproj.exceptions import CRSError

    try:
        proj = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    except CRSError:
        return {"name": str(crs), "epsg": None, "units": None, "geographic": None, "wkt": str(crs)}
    units = None
    if proj.axis_info:
        units = proj.axis_info[0].unit_name
    return {
        "name": proj.name,
        "epsg": proj.to_epsg(),
        "units": "degree" if proj.is_geographic else units,
        "geographic": bool(proj.is_geographic),
        "wkt": proj.to_wkt(),
    }


def lonlat_bounds(crs, bounds) -> list[float] | None:
    """[west, south, east, north] in WGS 84 of bounds in ``crs`` (None when it cannot be computed)."""
    if crs is None or bounds is None:
        return None
    from rasterio.warp import transform_bounds

    try:
        west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    except Exception:  # PROJ errors for odd CRSs: the summary still has the extent in the CRS
        return None
    values = [west, south, east, north]
    return [round(v, 7) for v in values] if all(math.isfinite(v) for v in values) else None


def describe_raster_file(path: Path, with_classes: bool = False) -> dict:
    with open_raster(path) as src:
        crs = src.crs if src.crs else None
        crs_info = crs_summary(crs)
        nodata = src.nodata
        descriptions = [d or None for d in src.descriptions]
        out = {
            "width": src.width,
            "height": src.height,
            "bands": src.count,
            "band_names": list(describe_raster(path).band_names),
            "band_descriptions": descriptions,
            "dtype": str(np.result_type(*src.dtypes)),
            "dtypes": list(src.dtypes),
            "crs": crs_info,
            "pixel_size": [abs(src.transform.a), abs(src.transform.e)],
            "pixel_units": crs_info["units"] if crs_info else None,
            "rotated": bool(src.transform.b or src.transform.d),
            "extent": [float(v) for v in src.bounds],
            "lonlat_bounds": lonlat_bounds(crs, tuple(src.bounds)) if crs else None,
            "nodata": _number(nodata),
            "nodata_is_nan": bool(nodata is not None and math.isnan(nodata)),
            "driver": src.driver,
            "overviews": len(src.overviews(1)) if src.count else 0,
            "block_size": list(src.block_shapes[0][::-1]) if src.count else None,
            "compression": src.compression.value if src.compression else None,
        }
    if with_classes:
        table = read_class_table(path) or []
        out["classes"] = [
            {"index": c.get("index"), "value": c.get("value"), "name": c.get("name"), "colour": c.get("colour")}
            for c in table
            if isinstance(c, dict)
        ]
    return out


def vector_source(path: Path) -> str:
    """What GDAL opens for a vector file: the file itself, or the first shapefile inside a zip (via /vsizip/)."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        return str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            shapefiles = sorted(n for n in zf.namelist() if n.lower().endswith(".shp") and not n.startswith("__MACOSX"))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputFileError(f"'{path}' is not a readable zip archive ({exc}).", "Zip the shapefile again.") from None
    if not shapefiles:
        raise InputFileError(f"The zip '{path}' holds no shapefile (.shp).", "Zip the shapefile's files together.")
    return f"/vsizip/{path.resolve()}/{shapefiles[0]}"


def json_value(value):
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (int, str, bool)):
        return value
    return str(value)


def describe_vector(path: Path, layer: str | None = None) -> dict:
    source = vector_source(path)
    try:
        layers = [{"name": str(n), "geometry_type": str(g) if g else None} for n, g in pyogrio.list_layers(source)]
        if not layers:
            raise ValueError("it has no layers")
        name = layer if layer is not None else layers[0]["name"]
        if name not in [lyr["name"] for lyr in layers]:
            raise InputFileError(
                f"'{path}' has no layer {name!r}.", f"Pick one of: {', '.join(lyr['name'] for lyr in layers)}."
            )
        info = pyogrio.read_info(source, layer=name, force_feature_count=True, force_total_bounds=True)
        count = int(info["features"])
        fields = [str(f) for f in info["fields"]]
        dtypes = [str(d) for d in info["dtypes"]]
        listable = [f for f, d in zip(fields, dtypes, strict=True) if not d.startswith("datetime")]
        frame = None
        if listable and count:
            frame = pyogrio.read_dataframe(
                source, layer=name, columns=listable, read_geometry=False, max_features=MAX_DISTINCT_FEATURES
            )
    except InputFileError:
        raise
    except Exception as exc:  # pyogrio raises several error types for unreadable data
        raise unreadable_vector(path, exc) from None
    field_rows = []
    for field, dtype in zip(fields, dtypes, strict=True):
        row = {"name": field, "type": dtype, "distinct": None, "n_distinct": None}
        if frame is not None and field in frame:
            values = frame[field].dropna().unique()
            row["n_distinct"] = len(values)
            if len(values) <= MAX_DISTINCT:
                row["distinct"] = sorted((json_value(v) for v in values), key=lambda v: (str(type(v)), v))
        field_rows.append(row)
    crs_text = info.get("crs")
    bounds = info.get("total_bounds")
    bounds = [float(b) for b in bounds] if bounds is not None and all(math.isfinite(b) for b in bounds) else None
    return {
        "layers": layers,
        "layer": name,
        "crs": crs_summary(crs_text) if crs_text else None,
        "feature_count": count,
        "geometry_type": info.get("geometry_type"),
        "fields": field_rows,
        "distinct_values_sampled": count > MAX_DISTINCT_FEATURES,
        "class_field_guess": guess_class_field(field_rows),
        "bounds": bounds,
        "lonlat_bounds": lonlat_bounds(crs_text, bounds) if crs_text and bounds else None,
        "driver": info.get("driver"),
    }


def guess_class_field(fields: list[dict]) -> str | None:
    """The field most likely to hold class labels: 2..30 distinct integer or text values, named like a class field."""

    def score(row) -> tuple:
        distinct = row.get("distinct")
        if distinct is None or len(distinct) < 2:
            return ()
        integral = all(isinstance(v, int) and not isinstance(v, bool) for v in distinct if v is not None)
        text = all(isinstance(v, str) for v in distinct if v is not None)
        if not (integral or text):
            return ()
        return (bool(_CLASS_NAME_HINT.search(row["name"])), integral, -len(distinct))

    scored = [(score(r), i, r["name"]) for i, r in enumerate(fields)]
    scored = [s for s in scored if s[0]]
    if not scored:
        return None
    return max(scored, key=lambda s: (s[0], -s[1]))[2]


def describe_chipset(path: Path) -> dict:
    try:
        m = read_manifest(path)
    except ChipSetError as exc:
        raise InputFileError(exc.message, exc.fix) from None
    chips = m.get("chips", {})
    grid = m.get("grid", {})
    inputs = m.get("inputs", {})
    return {
        "task": m.get("task"),
        "format": m.get("format"),
        "created": m.get("created"),
        "chips": chips.get("count"),
        "train": chips.get("train"),
        "val": chips.get("val"),
        "tile_size": chips.get("tile_size"),
        "stride": chips.get("stride"),
        "bands": m.get("band_names"),
        "band_count": m.get("band_count"),
        "dtype": m.get("dtype"),
        "classes": [
            {k: c.get(k) for k in ("index", "value", "name", "colour", "pixels")}
            for c in m.get("classes", [])
            if isinstance(c, dict)
        ],
        "split": {k: v for k, v in m.get("split", {}).items() if k in ("method", "val_fraction", "seed", "block_size")},
        "crs": grid.get("crs_name"),
        "epsg": grid.get("epsg"),
        "pixel_size": grid.get("pixel_size"),
        "pixel_units": grid.get("units"),
        "sources": {
            "rasters": [Path(r.get("path", "")).name for r in inputs.get("rasters", [])],
            "labels": Path(inputs.get("labels", {}).get("path", "")).name or None,
            "class_field": inputs.get("labels", {}).get("class_field"),
        },
        "findings": len(m.get("findings", [])),
    }


def describe_package(path: Path) -> dict:
    card = read_card(path)
    metrics = card.get("metrics") or {}
    baseline = card.get("baseline") or {}
    headline = ("accuracy", "dice", "mean_iou", "kappa")
    return {
        "task": card.get("task"),
        "architecture": card.get("architecture"),
        "backbone": card.get("backbone"),
        "weights": card.get("weights"),
        "bands": card.get("bands"),
        "band_count": card.get("band_count", len(card.get("bands") or [])),
        "classes": [
            {k: c.get(k) for k in ("index", "value", "name", "colour")}
            for c in card.get("classes", [])
            if isinstance(c, dict)
        ],
        "chip_size": card.get("chip_size"),
        "pixel_size": card.get("pixel_size"),
        "crs": card.get("crs"),
        "metrics": {k: json_value(metrics.get(k)) for k in headline if k in metrics},
        "baseline": {k: json_value(baseline.get(k)) for k in headline if k in baseline} or None,
        "run_id": card.get("run_id"),
        "epochs_run": card.get("epochs_run"),
        "best_epoch": card.get("best_epoch"),
        "model_size_mb": card.get("model_size_mb"),
        "schema_version": card.get("schema_version"),
    }
