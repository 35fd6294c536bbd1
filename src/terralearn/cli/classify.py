"""`terralearn classify`: classify whole rasters of any size into a georeferenced map."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, err_console, handle_errors, progress_bar
from terralearn.config import Backend, ClassifyConfig, Device

if TYPE_CHECKING:
    from terralearn.geo.grid import Grid

_help = {name: f.description for name, f in ClassifyConfig.model_fields.items()}


def area_progress(grid: Grid) -> Callable[[int, int], str]:
    """The progress bar's area column: km² done / total, from the pixels done (whole rows from the top).

    Geographic grids get an approximate area (marked ≈); a grid without a CRS or with unknown units says why
    it shows pixels only.
    """
    from terralearn.predict import area_km2

    total = area_km2(grid)
    if total is None:
        reason = "the raster has no CRS" if grid.crs is None else "its CRS has no known units"
        return lambda done, pixels: f"(pixels only: {reason})"
    approx = "≈" if grid.is_geographic else ""
    digits = 0 if total >= 100 else 1 if total >= 1 else 3

    def text(done: int, pixels: int) -> str:
        km2 = area_km2(grid, done / max(grid.width, 1)) or 0.0
        return f"{approx}{km2:,.{digits}f}/{total:,.{digits}f} km²"

    return text


@handle_errors
def classify(
    model: Annotated[Path, typer.Option("--model", "-m", help=_help["model"])],
    raster: Annotated[list[Path], typer.Option("--raster", "-r", help=_help["rasters"])],
    out: Annotated[Path, typer.Option("--out", "-o", help=_help["out"])],
    tile_size: Annotated[int | None, typer.Option("--tile-size", help=_help["tile_size"])] = None,
    overlap: Annotated[int | None, typer.Option("--overlap", help=_help["overlap"])] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help=_help["batch_size"])] = 8,
    tta: Annotated[bool, typer.Option("--tta", help=_help["tta"])] = False,
    no_background: Annotated[bool, typer.Option("--no-background", help="Never output the background class.")] = False,
    aoi: Annotated[Path | None, typer.Option("--aoi", help=_help["aoi"])] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help=_help["probabilities"])] = False,
    backend: Annotated[Backend, typer.Option("--backend", help=_help["backend"])] = "torch",
    device: Annotated[Device, typer.Option("--device", help=_help["device"])] = "auto",
    resampling: Annotated[list[str] | None, typer.Option("--resampling", help=_help["resampling"])] = None,
    ignore_band_names: Annotated[
        bool, typer.Option("--ignore-band-names", help="Only check the band count, not the names.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_help["overwrite"])] = False,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Classify rasters with a model package into a Cloud-Optimized GeoTIFF with colours, labels and a QGIS style."""
    from terralearn.io.package import read_card

    config = ClassifyConfig.build(
        model=model, rasters=list(raster), out=out, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
        tta=tta, predict_background=not no_background, aoi=aoi, probabilities=probabilities, backend=backend,
        device=device, resampling=list(resampling) if resampling else ["auto"], check_band_names=not ignore_band_names,
        overwrite=overwrite,
    )  # fmt: skip
    read_card(config.model)  # a missing or broken package is refused before the deep-learning stack loads
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
        f"({result.pixels / max(result.seconds, 1e-9):,.0f} pixels/s).\n"
        f"Map:             {result.out} (Cloud-Optimized GeoTIFF{'' if result.cog_valid else ', NOT valid'})\n"
        f"QGIS style:      {result.qml}\nAttribute table: {result.attribute_table}"
        + (f"\nProbability:     {result.probability}" if result.probability else ""),
        highlight=False,
    )
