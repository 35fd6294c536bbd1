"""`terralearn evaluate`: accuracy of a classified map against reference data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from terralearn.cli._common import Debug, Workspace, console, handle_errors, progress_bar
from terralearn.cli._options import given, int_list, option
from terralearn.config import DetectionEvaluateConfig, EvaluateConfig
from terralearn.runs import resolve_workspace

C, D = EvaluateConfig, DetectionEvaluateConfig


def _help(name: str) -> str:
    return C.model_fields[name].description or ""


def parse_bands(text: str | None) -> list[int] | None:
    """'3,2,1' -> [3, 2, 1]; None or '' -> None."""
    return int_list(text, "--rgb-bands", "a list of band numbers",
                    "Give three 1-based band numbers separated by commas, e.g. --rgb-bands 3,2,1.")  # fmt: skip


def _score(value) -> str:
    return "—" if value is None else f"{value:.3f}"


@handle_errors
def evaluate(
    prediction: Annotated[Path, option(C, "prediction", "--prediction", "-p")],
    reference: Annotated[Path, option(C, "reference", "--reference", "-r")],
    out: Annotated[Path, option(C, "out", "--out", "-o")],
    class_field: Annotated[str | None, option(C, "class_field", "--class-field")] = None,
    image: Annotated[
        list[Path] | None, option(C, "image", "--image", help=_help("image") + " Repeat for more rasters.")
    ] = None,
    rgb_bands: Annotated[
        str | None,
        option(
            C,
            "rgb_bands",
            "--rgb-bands",
            help=_help("rgb_bands") + " E.g. 3,2,1 (default: bands named red/green/blue, else 1,2,3).",
        ),
    ] = None,
    no_area_adjusted: Annotated[
        bool,
        option(
            C, "area_adjusted", "--no-area-adjusted", help="Skip the area-adjusted estimates (Olofsson et al. 2014)."
        ),
    ] = False,
    min_iou: Annotated[float | None, option(D, "min_iou", "--min-iou")] = None,
    aoi: Annotated[Path | None, option(D, "aoi", "--aoi")] = None,
    point_radius: Annotated[float | None, option(D, "point_radius", "--point-radius")] = None,
    overwrite: Annotated[bool, option(C, "overwrite", "--overwrite")] = False,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Accuracy assessment of a classified map (confusion matrix, scores, area-adjusted areas) or of detections
    (a .gpkg from `terralearn detect`: per-class precision, recall, F1 and AP, mAP), with an HTML report."""
    if Path(prediction).suffix.lower() == ".gpkg":  # detections: the detection evaluator
        _detections(given(prediction=prediction, reference=reference, class_field=class_field, out=out,
                          min_iou=min_iou, aoi=aoi, point_radius=point_radius, overwrite=overwrite,
                          raster=image[0] if image else None, workspace=resolve_workspace(workspace)))  # fmt: skip
        return
    config = EvaluateConfig.build(**given(
        prediction=prediction, reference=reference, class_field=class_field, out=out,
        image=list(image) if image else None, rgb_bands=parse_bands(rgb_bands),
        area_adjusted=False if no_area_adjusted else None, overwrite=overwrite,
    ))  # fmt: skip
    from terralearn.evaluate import evaluate as run_evaluate

    bar, update = progress_bar("Evaluating map")
    with bar:
        result = run_evaluate(config.model_copy(update={"workspace": resolve_workspace(workspace)}), progress=update)
    m = result.metrics
    for w in result.warnings:
        console.print(f"[yellow]Warning:[/] {w['message']}", highlight=False)
    console.print(
        f"Overall accuracy {_score(m['overall_accuracy'])}, kappa {_score(m['kappa'])}, mean IoU "
        f"{_score(m['mean_iou'])} on {m['reference_pixels']:,} reference pixels ({m['reference_kind']}).",
        highlight=False,
    )
    aa = m.get("area_adjusted")
    if aa and aa.get("overall_accuracy") is not None:
        ci = aa.get("overall_accuracy_ci")
        console.print(
            f"Area-adjusted overall accuracy {_score(aa['overall_accuracy'])}"
            + (f" ± {_score(ci)} (95 % CI)." if ci is not None else "."),
            highlight=False,
        )
    console.print(f"Metrics: {result.metrics_json}", highlight=False)
    console.print(f"Report: {result.report}", highlight=False)


def _detections(settings: dict) -> None:
    from terralearn.evaluate.detection_stage import evaluate_detections

    result = evaluate_detections(DetectionEvaluateConfig.build(**settings))
    for w in result.warnings:
        console.print(f"[yellow]Warning:[/] {w['message'] if isinstance(w, dict) else w}", highlight=False)
    m = result.metrics
    console.print(f"mAP@0.5 {_score(m['map50'])}, COCO mAP@[.5:.95] {_score(m['map'])} at min IoU {m['min_iou']:g}.",
                  highlight=False)  # fmt: skip
    for row in m["per_class"]:
        console.print(f"  {row['class_name']}: precision {_score(row['precision'])}, recall {_score(row['recall'])}, "
                      f"F1 {_score(row['f1'])}, AP {_score(row['ap'])} (TP {row['tp']}, FP {row['fp']}, FN {row['fn']})",
                      highlight=False)  # fmt: skip
    console.print(f"Metrics: {result.metrics_json}\nReport: {result.report}", highlight=False)
