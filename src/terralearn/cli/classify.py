"""`terralearn classify`: classify whole rasters of any size into a georeferenced map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from terralearn.cli._common import Debug, Workspace, console, err_console, handle_errors, progress_bar
from terralearn.cli._options import given, option
from terralearn.config import Backend, ClassifyConfig, Device

C = ClassifyConfig


BACKEND_WORDS = {"torch": "PyTorch", "onnx": "ONNX Runtime", "forest": "random forest"}


@handle_errors
def classify(
    model: Annotated[Path, option(C, "model", "--model", "-m")],
    raster: Annotated[list[Path], option(C, "rasters", "--raster", "-r")],
    out: Annotated[Path, option(C, "out", "--out", "-o")],
    tile_size: Annotated[int | None, option(C, "tile_size", "--tile-size")] = None,
    overlap: Annotated[int | None, option(C, "overlap", "--overlap")] = None,
    batch_size: Annotated[int | None, option(C, "batch_size", "--batch-size")] = None,
    tta: Annotated[bool, option(C, "tta", "--tta")] = False,
    no_background: Annotated[
        bool, option(C, "predict_background", "--no-background", help="Never output the background class.")
    ] = False,
    aoi: Annotated[Path | None, option(C, "aoi", "--aoi")] = None,
    probabilities: Annotated[bool, option(C, "probabilities", "--probabilities")] = False,
    backend: Annotated[Backend | None, option(C, "backend", "--backend")] = None,
    device: Annotated[Device | None, option(C, "device", "--device")] = None,
    resampling: Annotated[list[str] | None, option(C, "resampling", "--resampling")] = None,
    ignore_band_names: Annotated[
        bool, option(C, "check_band_names", "--ignore-band-names", help="Only check the band count, not the names.")
    ] = False,
    overwrite: Annotated[bool, option(C, "overwrite", "--overwrite")] = False,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Classify rasters with a model package into a Cloud-Optimized GeoTIFF with colours, labels and a QGIS style."""
    from terralearn.io.package import read_card

    config = ClassifyConfig.build(**given(
        model=model, rasters=list(raster), out=out, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
        tta=tta, predict_background=False if no_background else None, aoi=aoi, probabilities=probabilities,
        backend=backend, device=device, resampling=list(resampling) if resampling else None,
        check_band_names=False if ignore_band_names else None, overwrite=overwrite,
    ))  # fmt: skip
    read_card(config.model)  # a missing or broken package is refused before the deep-learning stack loads
    from terralearn.geo.areas import area_progress
    from terralearn.io.raster import describe_raster

    grid = describe_raster(config.rasters[0]).grid  # the stack's grid: that of the first raster
    from terralearn.predict import classify as run_classify

    bar, update = progress_bar("Classifying (pixels)", extra=area_progress(grid))
    with bar:
        result = run_classify(config, progress=update)
    for w in result.warnings:
        err_console.print(f"[bold yellow]Warning:[/] {w}", highlight=False)
    approx = "≈" if grid.is_geographic else ""
    area = f", {approx}{result.area_km2:,.1f} km²" if result.area_km2 is not None else ""
    console.print(
        f"Classified {result.pixels:,} pixels{area} in {result.seconds:.1f} s "
        f"({result.pixels / max(result.seconds, 1e-9):,.0f} pixels/s, {BACKEND_WORDS[result.backend]}).\n"
        f"Map:             {result.out} (Cloud-Optimized GeoTIFF{'' if result.cog_valid else ', NOT valid'})\n"
        f"QGIS style:      {result.qml}\nAttribute table: {result.attribute_table}"
        + (f"\nProbability:     {result.probability}" if result.probability else ""),
        highlight=False,
    )
