"""Stage 4 for detections: a detections GeoPackage + reference objects -> AP, precision, recall and a report.

- **Detections**: the GeoPackage of `terralearn detect` (:mod:`terralearn.io.detections`): boxes with class_value,
  class_name and score, the class table and the tile grid in its metadata.
- **Reference**: polygons, boxes or points (with ``point_radius``) and a class field holding class values or names;
  any CRS, reprojected to the detections'. Without a class field every object is of the detections' only class.
- **Counted**: everything, or the detections and objects whose centre lies in the area of interest.

The maths is in :mod:`terralearn.evaluate.detections` (arrays only), the files in
:mod:`terralearn.evaluate.detection_report`; the outputs are built in a temporary folder and renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from terralearn import __version__
from terralearn.classes import colour_for
from terralearn.config import DetectionEvaluateConfig
from terralearn.errors import ConfigError, LabelError
from terralearn.evaluate.detection_report import METRICS, curve_points, write_detection_outputs
from terralearn.evaluate.detections import DetectionEvaluation, evaluate_boxes, tile_seams
from terralearn.io.atomic import atomic_dir, ensure_can_write_dir
from terralearn.io.detections import DetectionLayer, read_detections, read_reference_objects
from terralearn.io.raster import describe_raster, file_checksum
from terralearn.io.vector import read_vector
from terralearn.runs import Registry

__all__ = ["DetectionMetrics", "evaluate_detections", "resolve_classes"]

SCHEMA_VERSION = 1


@dataclass
class DetectionMetrics:
    """What :func:`evaluate_detections` wrote: the metrics (as in metrics.json) and the paths of the outputs."""

    metrics: dict
    out: Path
    report: Path
    pr_png: Path
    seams_png: Path | None = None
    warnings: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    evaluation: DetectionEvaluation | None = field(default=None, repr=False)

    @property
    def metrics_json(self) -> Path:
        return self.out / METRICS

    @property
    def map50(self) -> float | None:
        return self.metrics["map50"]

    @property
    def map(self) -> float | None:
        return self.metrics["map"]


def _warning(code: str, message: str, fix: str = "") -> dict:
    return {"code": code, "message": message, "fix": fix}


def _key(value) -> str:
    """A class value as text, integral numbers without '.0' (22531.0 and '22531' agree)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).strip()
    return str(int(number)) if math.isfinite(number) and number == int(number) else str(value).strip()


def resolve_classes(detections: DetectionLayer, ref_values, n_ref: int) -> tuple[list[dict], np.ndarray, np.ndarray,
                                                                                 list[str]]:  # fmt: skip
    """The class table, the detections' and the references' class indices, and the reference classes added.

    A reference value is a class when it equals a class's value (as text, 22531.0 = 22531) or, case aside, its
    name; other values become new classes (their objects can only be missed). ``ref_values`` None gives all
    ``n_ref`` objects the detections' only class.
    """
    table = sorted(detections.classes, key=lambda c: c.get("index", 0))
    classes = [{"index": i, "value": c.get("value"), "name": str(c.get("name", c.get("value"))),
                "colour": c.get("colour") or colour_for(str(c.get("name")), i)} for i, c in enumerate(table)]  # fmt: skip
    by_value = {_key(c["value"]): c["index"] for c in classes}
    for v, n in zip(detections.class_values.tolist(), detections.class_names.tolist(), strict=True):
        if _key(v) not in by_value:  # a value the stored table lacks
            by_value[_key(v)] = len(classes)
            classes.append(
                {"index": len(classes), "value": v, "name": str(n), "colour": colour_for(str(n), len(classes))}
            )
    det_idx = np.array([by_value[_key(v)] for v in detections.class_values.tolist()], dtype=np.int64)
    if ref_values is None:
        if len(classes) > 1:
            raise ConfigError(
                f"The detections hold {len(classes)} classes ({', '.join(c['name'] for c in classes[:10])}) but no "
                "class field was given for the reference.",
                "Pass --class-field with the reference field holding the class values or names.",
            )
        if not classes:
            classes.append({"index": 0, "value": 1, "name": "object", "colour": colour_for("object", 0)})
        return classes, det_idx, np.zeros(n_ref, np.int64), []
    by_name = {c["name"].strip().casefold(): c["index"] for c in classes}
    lookup, added = {}, []
    for v in dict.fromkeys(ref_values.tolist()):
        k = _key(v)
        idx = by_value.get(k, by_name.get(k.casefold()))
        if idx is None:
            idx = len(classes)
            value = int(k) if k.lstrip("-").isdigit() else None
            classes.append({"index": idx, "value": value, "name": k, "colour": colour_for(k, idx)})
            by_value[k] = idx
            added.append(k)
        lookup[v] = idx
    ref_idx = np.array([lookup[v] for v in ref_values.tolist()], dtype=np.int64)
    return classes, det_idx, ref_idx, added


def _read_aoi(path: Path, crs: CRS | None):
    gdf = read_vector(path)
    if crs is not None and gdf.crs is not None and CRS.from_user_input(gdf.crs) != crs:
        gdf = gdf.to_crs(crs.to_wkt())
    geoms = gdf.geometry.to_numpy()
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    aoi = shapely.union_all(shapely.make_valid(geoms)) if len(geoms) else shapely.Polygon()
    if aoi.is_empty or aoi.area <= 0:
        raise LabelError(
            f"The area of interest '{path}' holds no polygon ({len(gdf)} feature(s)).",
            "Give a polygon layer outlining the area to assess.",
        )
    return aoi


def _seams(config: DetectionEvaluateConfig, detections: DetectionLayer) -> tuple[tuple | None, dict | None, str]:
    """(xs, ys) of the tile seams, the tiling used and a note when there is no seam analysis."""
    meta = detections.metadata or {}
    tile_size = config.tile_size or meta.get("tile_size")
    overlap = config.overlap if config.overlap is not None else meta.get("overlap") or 0
    if not tile_size:
        return None, None, "No seam analysis: the detections file records no tile size; pass --tile-size."
    if config.raster is not None:
        grid = describe_raster(config.raster).grid
        transform, width, height = grid.transform, grid.width, grid.height
        if grid.crs is not None and detections.crs is not None and grid.crs != detections.crs:
            raise ConfigError(
                f"The raster '{config.raster}' is in another CRS than the detections '{config.prediction}'.",
                "Give the raster the detections were made on.",
            )
    elif isinstance(meta.get("grid"), dict):
        g = meta["grid"]
        transform, width, height = Affine(*g["transform"][:6]), int(g["width"]), int(g["height"])
    elif config.tile_size:
        raise ConfigError(
            f"tile_size = {config.tile_size} was given but the tile grid is unknown: the detections file records "
            "no raster grid.",
            "Pass --raster with the raster the detections were made on.",
        )
    else:
        return None, None, "No seam analysis: the detections file records no raster grid; pass --raster."
    if not 0 <= int(overlap) < int(tile_size):
        raise ConfigError(
            f"overlap = {overlap} must be smaller than tile_size = {tile_size}.", "Pass a smaller --overlap."
        )
    if transform.b != 0 or transform.d != 0:
        return None, None, "No seam analysis: the raster's grid is rotated."
    xs, ys = tile_seams(transform, width, height, int(tile_size), int(overlap))
    tiling = {"tile_size": int(tile_size), "overlap": int(overlap), "width": width, "height": height}
    if not len(xs) and not len(ys):
        return None, tiling, f"No seam analysis: the raster fits in one tile of {tile_size} pixels."
    return (xs, ys), tiling, ""


def _crs_text(crs: CRS | None) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _unit(crs: CRS | None) -> str:
    if crs is None:
        return ""
    if crs.is_geographic:
        return "°"
    units = (crs.linear_units or "").lower()
    return "m" if units in ("metre", "meter", "m") else units


def evaluate_detections(config: DetectionEvaluateConfig) -> DetectionMetrics:
    """Compare detections with reference objects; write metrics.json, pr_curves.png, seams.png and report.html."""
    t0 = time.perf_counter()
    out = Path(config.out)
    ensure_can_write_dir(out, config.overwrite)
    dets = read_detections(config.prediction)
    refs = read_reference_objects(
        config.reference,
        config.class_field,
        dets.crs,
        config.point_radius,
        dets.metadata.get("grid"),
        [Path(p).name for p in dets.metadata.get("rasters", [])],
    )
    classes, det_idx, ref_idx, added = resolve_classes(dets, refs.values, len(refs.boxes))
    aoi = _read_aoi(config.aoi, dets.crs) if config.aoi is not None else None
    seams, tiling, seams_note = _seams(config, dets)
    ev = evaluate_boxes(dets.boxes, det_idx, dets.scores, refs.boxes, ref_idx, [c["name"] for c in classes],
                        min_iou=config.min_iou, score_threshold=config.score_threshold, aoi=aoi,
                        seams=seams)  # fmt: skip
    if ev.counts["reference"] == 0:
        raise LabelError(
            f"No reference object of '{config.reference}' lies in the area of interest '{config.aoi}'.",
            "Give an area of interest covering the reference objects (check both layers' CRS).",
        )
    per_class = []
    for c, r in zip(classes, ev.per_class, strict=True):
        row = r.as_dict()
        del row["name"]
        per_class.append({"class_index": row.pop("index"), "class_name": c["name"], "class_value": c["value"],
                          "colour": c["colour"], **row})  # fmt: skip
    with_ref = [r.ap for r in ev.per_class if r.reference > 0 and r.ap is not None]
    warnings = _warnings(config, refs, ev, added)
    if dets.dropped:
        warnings.insert(0, _warning(
            "detections_dropped",
            f"{dets.dropped} detection(s) of '{config.prediction}' without a geometry, a class value or a score were "
            "left out.",
            "Write the detections again with `terralearn detect`.",
        ))  # fmt: skip
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "terralearn_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "map50": ev.map50,
        "map": ev.map,
        "map75": ev.map75,
        "map50_all_point": ev.map50_all_point,
        "map_min_iou": float(np.mean(with_ref)) if with_ref else None,
        "min_iou": ev.min_iou,
        "score_threshold": ev.score_threshold,
        "per_class": per_class,
        "counts": {
            **ev.counts,
            "detections_dropped": dets.dropped,
            "reference_dropped": refs.dropped,
            "reference_points": refs.points,
        },
        "classes": classes,
        "crs": _crs_text(dets.crs),
        "unit": _unit(dets.crs),
        "tiling": tiling,
        "seams": ev.seams,
        "seams_note": seams_note,
        "pr_curves": [curve_points(r) for r in ev.per_class],
        "warnings": warnings,
        "inputs": {
            **config.model_dump(mode="json"),
            "prediction_sha256": file_checksum(config.prediction),
            "reference_sha256": file_checksum(config.reference),
        },
    }
    run_id = dets.metadata.get("run_id")
    metrics["run"] = run_id
    with atomic_dir(out, config.overwrite) as tmp:
        files = write_detection_outputs(metrics, tmp)
    if config.workspace is not None and run_id is not None:  # recorded with the run that made the detector
        registry = Registry(config.workspace)
        if any(r["id"] == run_id for r in registry.runs()):
            registry.record_detection_evaluation(run_id, metrics, config.prediction, config.reference)
    return DetectionMetrics(
        metrics=metrics, out=out, report=out / files.report.name, pr_png=out / files.pr_png.name,
        seams_png=None if files.seams_png is None else out / files.seams_png.name, warnings=warnings,
        seconds=time.perf_counter() - t0, evaluation=ev,
    )  # fmt: skip


def _warnings(config: DetectionEvaluateConfig, refs, ev: DetectionEvaluation, added: list[str]) -> list[dict]:
    out = []
    if refs.crs_note:
        out.append(_warning("reference_crs", refs.crs_note, "Save the reference with its CRS (.prj)."))
    if refs.dropped:
        out.append(_warning(
            "reference_dropped",
            f"{refs.dropped} reference feature(s) without a geometry or a class value were left out.",
            "Fill in the class field of every reference object in your GIS.",
        ))  # fmt: skip
    if added:
        out.append(_warning(
            "reference_classes_unknown",
            f"Reference class(es) {', '.join(added[:10])} match no class of the detections (by value or name): their "
            "objects can only be missed.",
            "Check --class-field, or the class values of the reference against the model's classes.",
        ))  # fmt: skip
    if ev.counts["detections"] == 0:
        out.append(_warning("no_detections", "No detection is counted: every reference object is missed.",
                            "Check the detections file (and the area of interest)."))  # fmt: skip
    elif ev.counts["tp"] == 0:
        out.append(_warning(
            "no_match",
            f"No detection matches a reference object at IoU ≥ {ev.min_iou:g}.",
            "Check that both layers are in the right CRS and cover the same area, or lower --min-iou.",
        ))  # fmt: skip
    absent = [r.name for r in ev.per_class if r.reference == 0 and r.detections > 0]
    if absent:
        out.append(_warning(
            "classes_without_reference",
            f"Class(es) {', '.join(absent)} are detected but have no reference object: their detections are all "
            "false positives and they are left out of mAP.",
            "Add reference objects of those classes to assess them.",
        ))  # fmt: skip
    return out
