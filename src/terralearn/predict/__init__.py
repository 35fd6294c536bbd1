"""Stage 3: a model package + raster(s) -> a classified map, streamed strip by strip.

The raster is cut into overlapping tiles on a stride grid. Tile predictions (class
probabilities) are weighted by a 2-D Hann window and accumulated, so overlapping tiles
blend without seams. Rows of the map are final as soon as no later tile row covers them:
they are written then and dropped from memory. Peak memory therefore depends on the tile
size, the batch size and the raster width, never on its height. A reader thread prepares
the next strip's tiles, normalised and batched (full batches, across tile rows), while the
model runs, and a writer thread writes finished rows; the model's weights load in a thread
while the first strip is read.

The parts: ``window`` (read a window with its halo and predict it in batches), ``backends``
(torch, ONNX Runtime, forests, test-time augmentation), ``merge`` (blending, winning classes),
and ``io.maps`` (writing). The result is a validated Cloud-Optimized GeoTIFF on the input grid
(uint8 class indices, 255 = nodata) with a colour table, the class table (original values and
names) as a tag, a raster attribute table side-car and a QGIS style; optionally a probability map.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from terralearn.classes import hex_to_rgba
from terralearn.config import ClassifyConfig
from terralearn.errors import OutputExistsError, PackageError
from terralearn.geo.areas import area_km2
from terralearn.geo.grid import Grid
from terralearn.io.atomic import ensure_can_write_dir
from terralearn.io.maps import NODATA, MapWriter, class_tags, to_cog, validate_cog, write_attribute_table, write_qml
from terralearn.io.package import read_card
from terralearn.io.raster import RUN_TAG, RasterStack, gdal_env
from terralearn.predict.backends import choose_backend, make_backend
from terralearn.predict.inputs import check_bands, check_grid, default_tile, inside, pixel_size_warning, read_aoi
from terralearn.predict.loader import load_model
from terralearn.predict.merge import classes_of
from terralearn.predict.window import Scores, WindowReader, default_batch, gdal_cache_bytes, plan_tiles, predict_window
from terralearn.tasks import require_task

__all__ = ["ClassifyResult", "classify", "default_tile"]

Progress = Callable[[int, int], None]

COG_CACHE_BYTES = 32 * 2**20  # GDAL's block cache while the map becomes a COG: it reads and writes blocks in turn


@dataclass
class ClassifyResult:
    out: Path
    qml: Path
    attribute_table: Path
    probability: Path | None
    seconds: float
    pixels: int
    area_km2: float | None
    class_pixels: list[int]
    warnings: list[str] = field(default_factory=list)
    cog_valid: bool = True
    backend: str = "torch"  # what ran: torch, onnx or forest


def classify(config: ClassifyConfig, progress: Progress | None = None) -> ClassifyResult:
    """Classify the whole raster into ``config.out``; see the module documentation."""
    t0 = time.perf_counter()
    out = Path(config.out)
    if out.exists() and not config.overwrite:
        raise OutputExistsError(f"The output '{out}' already exists.", "Choose another --out or pass --overwrite.")
    ensure_can_write_dir(out.parent, overwrite=True)
    card = read_card(config.model)
    require_task(card, "pixel_classification", config.model)  # before any raster is opened
    classes = card["classes"]
    with contextlib.ExitStack() as context:
        # The weights load and are checked in a thread while the rasters open and the first strip is read.
        loader = context.enter_context(ThreadPoolExecutor(1, thread_name_prefix="model-loader"))
        stack = context.enter_context(RasterStack(config.rasters, config.resampling))
        grid = stack.grid
        check_grid(grid, config.rasters[0])
        check_bands(card, stack, config.check_band_names)
        warnings = [w for w in [pixel_size_warning(card, grid)] if w]
        tiles = plan_tiles(grid.height, grid.width, config.tile_size or default_tile(card), config.overlap)
        kind = choose_backend(config, card, (tiles.tile_y, tiles.tile_x))
        loading = loader.submit(load_model, config.model, kind == "torch")  # ONNX and forests: no torch
        mean, std = (np.asarray(card["normalisation"][key], np.float32)[:, None, None] for key in ("mean", "std"))
        aoi = read_aoi(config.aoi, grid)
        tmp = Path(context.enter_context(tempfile.TemporaryDirectory(prefix=".terralearn-", dir=out.parent)))
        with (
            gdal_env(gdal_cache_bytes(stack, tiles.tile_y)),
            WindowReader(stack, tiles, mean, std, config.batch_size or default_batch(tiles)) as reader,
        ):
            loaded = loading.result()
            if loaded.card != card:
                raise PackageError(f"The model package '{config.model}' changed while it was read.", "Run again.")
            backend = make_backend(loaded, config, kind, (tiles.tile_y, tiles.tile_x), tmp)
            colormap = {c["index"]: hex_to_rgba(c["colour"]) for c in classes}
            tags = {**class_tags(classes), **({RUN_TAG: str(card["run_id"])} if card.get("run_id") else {})}
            with MapWriter(tmp, grid, colormap, tags, probabilities=config.probabilities) as writer:
                bands = predict_window(reader, backend, len(classes), with_weights=config.probabilities)
                counts = _write_classes(bands, writer, grid, aoi, _allowed(classes, config), progress)
        prob_path = out.with_name(out.stem + "_probability.tif") if config.probabilities else None
        with gdal_env(COG_CACHE_BYTES):  # the input's blocks are dropped
            to_cog(tmp / "map.tif", out)
            if prob_path:
                to_cog(tmp / "prob.tif", prob_path, resampling="AVERAGE")
    valid, errors = validate_cog(out)
    if not valid:  # pragma: no cover - GDAL's COG driver writes valid COGs
        warnings.append(f"The output is not a valid COG: {errors}")
    aux = write_attribute_table(out, classes)
    qml = write_qml(out, classes)
    return ClassifyResult(out, qml, aux, prob_path, time.perf_counter() - t0, grid.width * grid.height,
                          area_km2(grid), counts[: len(classes)].tolist(), warnings, valid, kind)  # fmt: skip


def _allowed(classes: list[dict], config: ClassifyConfig) -> list[int]:
    """The class indices the map may hold: all, or all but background (unless it is the only class)."""
    suppress = [c["index"] for c in classes if c["name"] == "background"] if not config.predict_background else []
    return [c for c in range(len(classes)) if c not in suppress] or list(range(len(classes)))


def _write_classes(bands: Iterable[Scores], writer: MapWriter, grid: Grid, aoi, allowed: list[int],
                   progress: Progress | None) -> np.ndarray:  # fmt: skip
    """Write the winning classes of the blended ``bands`` (nodata outside the area of interest); the pixel
    count of every map value."""
    counts = np.zeros(NODATA + 1, dtype=np.int64)
    done = 0
    for scores in bands:
        ok = scores.valid if aoi is None else scores.valid & inside(aoi, grid, scores.window)
        labels, prob = classes_of(scores.sums, scores.weights, ok, allowed)
        counts += np.bincount(labels.ravel(), minlength=NODATA + 1)
        writer.write(int(scores.window.row_off), labels, prob)
        done += labels.size
        if progress:
            progress(done, grid.width * grid.height)
    return counts
