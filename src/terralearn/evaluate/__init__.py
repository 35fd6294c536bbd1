"""Stage 4: a classified map + reference data -> accuracy metrics, metrics.json and an HTML report.

The accuracy assessment a GIS analyst runs on a finished map:

- **Map**: a single-band classified raster. A map written by `terralearn classify` carries its class table
  (dataset tag ``TERRALEARN_CLASSES``: index, original value, name, colour) and pixel values are class indices
  (255 = nodata); in any other raster the pixel values are the class values themselves.
- **Reference**: polygons, lines or points with a class field (any CRS; reprojected to the map's), or a
  classified raster (resampled nearest onto the map grid; its nodata, else 0, means "no reference").
- **Counted pixels**: reference pixels where the map is not nodata. They give the confusion matrix (rows =
  reference, columns = map, counted by :mod:`terralearn.evaluate.maps`), the usual metrics
  (:func:`terralearn.geo.metrics.metrics_from_confusion`) and, with the mapped pixels of every class over the
  whole map, the area-adjusted estimates of :mod:`terralearn.evaluate.area` (Olofsson et al. 2014).

The outputs are built in a temporary folder and renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from terralearn import __version__
from terralearn.config import EvaluateConfig
from terralearn.errors import LabelError
from terralearn.evaluate.area import area_adjusted_accuracy
from terralearn.evaluate.maps import (
    MapSource,
    Progress,
    Tally,
    open_map,
    open_reference,
    resolve_classes,
    tally,
    warning,
)
from terralearn.evaluate.report import select_rgb_bands, write_evaluation_report
from terralearn.geo.areas import area_units
from terralearn.geo.metrics import metrics_from_confusion
from terralearn.io.atomic import atomic_dir, ensure_can_write_dir, write_json_atomic
from terralearn.io.preview import PreviewSpec, read_preview
from terralearn.io.raster import file_checksum, read_map_run
from terralearn.runs import Registry

__all__ = ["EvalResult", "evaluate"]

METRICS = "metrics.json"
SCHEMA_VERSION = 1


@dataclass
class EvalResult:
    """What `evaluate` wrote: the metrics (as in metrics.json) and the paths of the outputs."""

    metrics: dict
    out: Path
    report: Path
    confusion_png: Path
    preview_png: Path | None = None
    warnings: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def metrics_json(self) -> Path:
        return self.out / METRICS


def evaluate(config: EvaluateConfig, progress: Progress | None = None) -> EvalResult:
    """Compare a classified map with reference data; write metrics.json, confusion.png and report.html.

    When the map was made by a model trained in ``config.workspace``, the evaluation is recorded with that run.
    """
    t0 = time.perf_counter()
    out = Path(config.out)
    ensure_can_write_dir(out, config.overwrite)
    map_src = open_map(config.prediction)
    grid = map_src.grid
    preview_spec: PreviewSpec = select_rgb_bands(config.image, config.rgb_bands)  # checks bands before the pass
    reference = open_reference(config, grid, map_src.table)
    try:
        t = tally(map_src, reference, progress)
        classes, cm, mapped = resolve_classes(map_src, reference, t, config)
        warnings = reference.warnings()
    finally:
        reference.close()
    n_ref = int(cm.sum())
    if n_ref == 0:
        raise LabelError(
            f"No reference pixel of '{config.reference}' falls on a mapped pixel of '{config.prediction}' "
            f"({t.on_nodata} fall on map nodata).",
            "Give reference data inside the mapped (non-nodata) area of the map.",
        )
    names = [str(c["name"]) for c in classes]
    base = metrics_from_confusion(cm, names)
    units = area_units(grid)
    for row, c, px in zip(base["per_class"], classes, mapped, strict=True):
        row.update(value=c["value"], colour=c["colour"], map_pixels=int(px))
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "terralearn_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "overall_accuracy": base["accuracy"],
        "kappa": base["kappa"],
        "mean_iou": base["mean_iou"],
        "dice": base["dice"],
        "reference_pixels": n_ref,
        "reference_kind": reference.kind,
        "reference_features": getattr(reference, "features", None),
        "reference_on_map_nodata": t.on_nodata,
        "map_pixels": int(mapped.sum()),
        "map_class_pixels": [int(v) for v in mapped],
        "classes": classes,
        "per_class": base["per_class"],
        "confusion": base["confusion"],
        "confusion_axes": "rows = reference class, columns = map class, in class index order",
        "grid": units,
    }
    warnings += _warnings(metrics, map_src, t)
    if config.area_adjusted:
        aa = area_adjusted_accuracy(cm, mapped, pixel_area=grid.pixel_area)
        adjusted = aa.as_dict(names)
        adjusted["area_unit"] = f"{units['unit']}²" if units["unit"] else "map units²"
        if units["m2_per_unit2"] is not None:
            f = units["m2_per_unit2"] / 1e6
            for row in adjusted["per_class"]:
                row["area_km2"] = None if row["area"] is None else row["area"] * f
                row["area_km2_ci"] = None if row["area_ci"] is None else row["area_ci"] * f
        metrics["area_adjusted"] = adjusted
        if aa.unsampled:
            warnings.append(warning(
                "area_unsampled_strata",
                f"Map class(es) {', '.join(names[i] for i in aa.unsampled)} cover "
                f"{100 * (1 - aa.sampled_fraction):.1f} % of the map but hold no reference pixel: the area-adjusted "
                "estimates leave that part of the map out.",
                "Add reference samples in every map class (a stratified sample by map class).",
            ))  # fmt: skip
    metrics["warnings"] = warnings
    metrics["inputs"] = {
        **config.model_dump(mode="json"),
        "prediction_sha256": file_checksum(config.prediction),
        "reference_sha256": file_checksum(config.reference),
        "map_has_class_table": map_src.table is not None,
    }
    metrics["run"] = read_map_run(config.prediction)
    preview = read_preview(config.prediction, grid, classes, map_src.table is not None, preview_spec)
    with atomic_dir(out, config.overwrite) as tmp:
        write_json_atomic(tmp / METRICS, metrics)
        files = write_evaluation_report(metrics, tmp, preview)
    if config.workspace is not None and metrics["run"] is not None:
        registry = Registry(config.workspace)
        if any(r["id"] == metrics["run"] for r in registry.runs()):
            registry.record_evaluation(metrics["run"], metrics, config.prediction, config.reference)
    return EvalResult(
        metrics=metrics,
        out=out,
        report=out / files.report.name,
        confusion_png=out / files.confusion_png.name,
        preview_png=None if files.preview_png is None else out / files.preview_png.name,
        warnings=warnings,
        seconds=time.perf_counter() - t0,
    )


def _warnings(metrics: dict, map_src: MapSource, t: Tally) -> list[dict]:
    out = []
    if map_src.table is None:
        out.append(warning(
            "map_without_class_table",
            f"The map '{map_src.path}' has no TerraLearn class table: its pixel values were taken as the class "
            "values, and the classes are named by value.",
            "Evaluate the map written by `terralearn classify` to get class names and colours.",
        ))  # fmt: skip
    if t.on_nodata:
        out.append(warning(
            "reference_on_nodata",
            f"{t.on_nodata} reference pixel(s) fall on map nodata and were left out of every metric.",
            "Expected along the image's edges; many such pixels mean the map misses part of the reference area.",
        ))  # fmt: skip
    if map_src.unknown_pixels:
        out.append(warning(
            "map_unknown_values",
            f"{map_src.unknown_pixels} map pixel(s) hold a value that is no class of the map's class table; they were "
            "treated as nodata.",
            "Write the map again with `terralearn classify`.",
        ))  # fmt: skip
    absent = [p["name"] for p in metrics["per_class"] if p["support"] == 0]
    if absent:
        out.append(warning(
            "classes_without_reference",
            f"No reference pixel for class(es) {', '.join(absent)}: their producer's accuracy (recall) cannot be "
            "measured and they are left out of Dice and mean IoU.",
            "Add reference data for those classes to assess them.",
        ))  # fmt: skip
    never = [p["name"] for p in metrics["per_class"] if p["support"] > 0 and p["predicted"] == 0]
    if never:
        out.append(warning(
            "classes_never_mapped",
            f"Class(es) {', '.join(never)} are in the reference but never mapped on the reference pixels.",
            "Check the training data for those classes (too few pixels, or mislabelled).",
        ))  # fmt: skip
    return out
