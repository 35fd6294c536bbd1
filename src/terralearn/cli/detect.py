"""`terralearn detect`: detect objects over whole rasters into a GeoPackage of boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from terralearn.cli._common import Debug, Workspace, console, err_console, handle_errors, progress_bar
from terralearn.cli._options import given, option
from terralearn.config import DetectConfig, Device, MatchMetric, MergeMethod

C = DetectConfig


@handle_errors
def detect(
    model: Annotated[Path, option(C, "model", "--model", "-m")],
    raster: Annotated[list[Path], option(C, "rasters", "--raster", "-r")],
    out: Annotated[Path, option(C, "out", "--out", "-o")],
    tile_size: Annotated[int | None, option(C, "tile_size", "--tile-size")] = None,
    overlap: Annotated[int | None, option(C, "overlap", "--overlap")] = None,
    batch_size: Annotated[int | None, option(C, "batch_size", "--batch-size")] = None,
    threshold: Annotated[float | None, option(C, "threshold", "--threshold")] = None,
    nms_overlap: Annotated[float | None, option(C, "nms_overlap", "--nms-overlap")] = None,
    merge: Annotated[MergeMethod | None, option(C, "merge", "--merge")] = None,
    match_metric: Annotated[MatchMetric | None, option(C, "match_metric", "--match-metric")] = None,
    class_agnostic: Annotated[bool, option(C, "class_agnostic", "--class-agnostic")] = False,
    keep_padding: Annotated[
        bool, option(C, "exclude_padding", "--keep-padding", help="Keep detections centred in the tile overlaps too.")
    ] = False,
    tta: Annotated[bool, option(C, "tta", "--tta")] = False,
    aoi: Annotated[Path | None, option(C, "aoi", "--aoi")] = None,
    device: Annotated[Device | None, option(C, "device", "--device")] = None,
    resampling: Annotated[list[str] | None, option(C, "resampling", "--resampling")] = None,
    ignore_band_names: Annotated[
        bool, option(C, "check_band_names", "--ignore-band-names", help="Only check the band count, not the names.")
    ] = False,
    overwrite: Annotated[bool, option(C, "overwrite", "--overwrite")] = False,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Detect objects in rasters with a detection package into a GeoPackage (boxes, class, score) with a QGIS style."""
    from terralearn.predict.onnx_detector import read_detection_card

    config = DetectConfig.build(**given(
        model=model, rasters=list(raster), out=out, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
        threshold=threshold, nms_overlap=nms_overlap, merge=merge, match_metric=match_metric,
        class_agnostic=class_agnostic or None, exclude_padding=False if keep_padding else None, tta=tta, aoi=aoi,
        device=device, resampling=list(resampling) if resampling else None,
        check_band_names=False if ignore_band_names else None, overwrite=overwrite, workspace=workspace,
    ))  # fmt: skip
    read_detection_card(config.model)  # a missing or broken model is refused before the deep-learning stack loads
    from terralearn.geo.areas import area_km2
    from terralearn.io.raster import describe_raster

    km2 = area_km2(describe_raster(config.rasters[0]).grid)  # the stack's grid: that of the first raster
    from terralearn.predict.detect import detect as run_detect

    extra = None if km2 is None else (lambda done, total: f"{km2 * done / max(total, 1):,.2f}/{km2:,.2f} km²")
    bar, update = progress_bar("Detecting (tiles)", extra=extra)
    with bar:
        result = run_detect(config, progress=update)
    for w in result.warnings:
        err_console.print(f"[bold yellow]Warning:[/] {w}", highlight=False)
    area = f", {result.area_km2:,.2f} km²" if result.area_km2 is not None else ""
    per_class = ", ".join(f"{name} {n:,}" for name, n in result.counts.items())
    skipped = f" ({result.tiles_skipped:,} skipped: nodata or outside the area)" if result.tiles_skipped else ""
    console.print(
        f"Detected {result.detections:,} objects ({per_class}) in {result.tiles:,} tiles of {result.tile_size} px"
        f"{skipped}{area} in {result.seconds:.1f} s.\n"
        f"Detections: {result.out} (GeoPackage, layer 'detections')\nQGIS style: {result.qml}",
        highlight=False,
    )
