"""Stage 3 for detection: a detection package + raster(s) -> a GeoPackage of boxes, streamed strip by strip.

The raster is cut into overlapping tiles (the training chip size by default, overlapping by a quarter of the
tile or the model's largest anchor). One strip (a row of tiles) is read at a time, the next one in a thread
while the model runs on the current one (:func:`terralearn.predict.detect_window.detect_window`). Detections
go, in map coordinates, into a :class:`~terralearn.geo.merge_boxes.SeamMerger`, which merges the duplicates
that tiles leave across their seams; once a strip is done, every box above the next strip's top edge that no
later tile can touch is final and streamed into the GeoPackage. Memory therefore depends on the tile size and
the raster width, never on its height.

The GeoPackage (:class:`~terralearn.io.detections.DetectionWriter`) holds the layer ``detections`` (boxes in
the raster's CRS with class_value, class_name, score), a QGIS style beside it, and in its metadata the class
table, the raster grid, the tile size and the overlap, so that ``terralearn evaluate`` analyses the seams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from terralearn import __version__
from terralearn.config import DetectConfig
from terralearn.errors import OutputExistsError, PackageError
from terralearn.geo.areas import area_km2
from terralearn.geo.merge_boxes import Detections, SeamMerger, row_frontier
from terralearn.geo.tiling import TileGrid
from terralearn.io.atomic import ensure_can_write_dir
from terralearn.io.detections import DetectionWriter
from terralearn.io.raster import RasterStack, gdal_env
from terralearn.predict.detect_window import TileDetector, detect_window
from terralearn.predict.inputs import check_bands, check_grid, pixel_size_warning, read_aoi
from terralearn.predict.window import gdal_cache_bytes, plan_tiles

__all__ = ["DetectResult", "default_detect_tile", "default_overlap", "detect", "overlap_warning", "writer_classes"]

Progress = Callable[[int, int], None]


@dataclass
class DetectResult:
    out: Path
    qml: Path
    counts: dict[str, int]  # detections written per class name, in the class table's order
    tiles: int  # tiles run through the model
    tiles_skipped: int  # all nodata or outside the area of interest
    area_km2: float | None
    seconds: float
    tile_size: int = 0
    overlap: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def detections(self) -> int:
        return sum(self.counts.values())


#: The smallest default tile. Detectors never resize and their budgets follow the tile's area
#: (``models.detection.scale_to_tile``), so a tile larger than the training chip sees more context and fewer seams.
#: Measured on DOTA P0706 ships (128-px chips, west half -> east half, bench/dota.py): AP50 0.75 with 128-px tiles,
#: 0.82 with 256, 0.83 with 384, 0.82 with 512; 313, 307, 311 and 314 ships found.
MIN_DEFAULT_TILE = 256


def default_detect_tile(card: dict) -> int:
    """The training chip size, at least ``MIN_DEFAULT_TILE`` pixels."""
    return max(int(card["chip_size"][0]), MIN_DEFAULT_TILE)


def largest_anchor(card: dict) -> int:
    """The side of the model's largest anchor in pixels: the largest objects it targets."""
    from terralearn.models.detection import default_anchor_sizes

    return max(int(a) for a in (card.get("anchor_sizes") or default_anchor_sizes(int(card["chip_size"][0]))))


def default_overlap(card: dict, tile: int) -> int:
    """A quarter of the tile, raised to the model's largest anchor (the largest objects it targets), at most half."""
    return int(min(tile // 2, max(tile // 4, largest_anchor(card))))


def overlap_warning(card: dict, tile: int, overlap: int, raster_side: int) -> str | None:
    """A plain warning when tiles overlap by less than the largest objects the model targets (its largest anchor).

    Such an object is cut by every tile, so no tile sees it whole and its parts can come out as extra boxes.
    Measured on DOTA P0706 ships (up to 73 px; anchors up to 128 px): 128-px tiles (overlap 64) found 335 ships
    where 256, 384 and 512-px tiles found 295, 293 and 297.
    """
    largest = largest_anchor(card)
    if overlap >= largest or tile >= raster_side:
        return None
    return (f"Tiles of {tile} px overlap by {overlap} px, less than the largest objects this model targets "
            f"({largest} px): an object longer than the overlap is cut by every tile and can be counted twice. "
            f"Use --tile-size {2 * largest} or more (the overlap grows with the tile).")  # fmt: skip


def writer_classes(card: dict) -> list[dict]:
    """The card's class table with integer class values (a value that is no integer becomes index + 1)."""
    out = []
    for k, c in enumerate(card["classes"]):
        try:
            value = int(c["value"])
            value = value if value == float(c["value"]) else k + 1
        except (KeyError, TypeError, ValueError):
            value = k + 1
        out.append({"index": k, "value": value, "name": str(c.get("name", value)), "colour": c.get("colour", "")})
    return out


def _checked_card(config: DetectConfig) -> dict:
    """The package's card, refused when of another task; the output must be free (or --overwrite) and writable."""
    out = Path(config.out)
    if out.exists() and not config.overwrite:
        raise OutputExistsError(f"The output '{out}' already exists.", "Choose another --out or pass --overwrite.")
    ensure_can_write_dir(out.parent, overwrite=True)
    from terralearn.predict.onnx_detector import read_detection_card

    return read_detection_card(config.model)  # before any raster is opened; refused when of another task


def is_pixel_image(grid) -> bool:
    """An image without georeferencing (a PNG or JPEG of an annotation set): no CRS and GDAL's identity transform."""
    return grid.crs is None and tuple(grid.transform)[:6] == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def checked_inputs(config: DetectConfig, card: dict, stack: RasterStack):
    """``(warnings, tile, overlap, tiles, aoi, device)`` of a detect run, its rasters checked against the card.

    Detection and instance models share it: north-up grid (or a pixel image), the card's bands, the tile (an
    ONNX graph's own) and the overlap, and the plain warnings on pixel size, pixel images and short overlaps.
    """
    from terralearn.models.device import resolve_device

    grid = stack.grid
    pixel_image = is_pixel_image(grid)
    if not pixel_image:
        check_grid(grid, config.rasters[0])
    check_bands(card, stack, config.check_band_names)
    warnings = [w for w in [pixel_size_warning(card, grid)] if w]
    if pixel_image:
        warnings.append(f"'{config.rasters[0]}' has no georeferencing: the detections are in pixel coordinates "
                        "(x = column, y = row from the top), as are the image's annotation files.")  # fmt: skip
    third_party = card.get("source") == "onnx"  # not exported by TerraLearn: no anchors known
    if "onnx" in card:  # an ONNX detector: its graph fixes the tile
        from terralearn.predict.onnx_detector import onnx_overlap, onnx_tile

        tile = onnx_tile(card, config.tile_size)
    else:
        tile = config.tile_size or default_detect_tile(card)
    if config.overlap is not None:
        overlap = config.overlap
    else:
        overlap = onnx_overlap(card, tile) if third_party else default_overlap(card, tile)
    tiles = plan_tiles(grid.height, grid.width, tile, overlap)
    if not third_party and card.get("task") != "instances":  # instance pieces are merged whole across seams
        note = overlap_warning(card, tile, overlap, min(grid.height, grid.width))
        if note:
            warnings.append(note)
    return warnings, tile, overlap, tiles, read_aoi(config.aoi, grid), resolve_device(config.device)


def ready(network, device, card: dict, tile: int):
    """``network`` on ``device`` in eval mode; a torchvision detector's budgets scaled to the tile's area."""
    network = network.to(device).eval()
    if hasattr(network, "transform"):
        from terralearn.models.detection import scale_to_tile

        scale_to_tile(network, int(card["chip_size"][0]), tile)
    return network


def detect(config: DetectConfig, progress: Progress | None = None, network=None) -> DetectResult:
    """Detect objects over the whole raster into ``config.out``; see the module documentation.

    ``network`` replaces the package's weights by a module with the torchvision detector interface (tests,
    benchmarks); the package's card still decides the bands, the classes and the normalisation.
    """
    t0 = time.perf_counter()
    card = _checked_card(config)
    if card.get("task") == "instances":  # one polygon per object: its own streaming and seam merge
        from terralearn.predict.detect_instances import detect_instances

        return detect_instances(config, card, progress, network)
    with RasterStack(config.rasters, config.resampling) as stack:
        grid = stack.grid
        warnings, tile, overlap, tiles, aoi, device = checked_inputs(config, card, stack)
        threshold, iou = config.threshold, config.nms_overlap
        onnx = "onnx" in card  # an ONNX detector
        if onnx:  # the model's own settings unless the command gives them
            info = card["onnx"]
            if "threshold" not in config.model_fields_set and info.get("det_conf") is not None:
                threshold = float(info["det_conf"])
            if "nms_overlap" not in config.model_fields_set and info.get("det_iou_thresh") is not None:
                iou = float(info["det_iou_thresh"])
        if network is None and onnx:
            from terralearn.predict.onnx_detector import load_onnx_detector

            network = load_onnx_detector(config.model, card, threshold, iou, device)
        elif network is None:
            from terralearn.predict.detector_loader import load_detector

            loaded = load_detector(config.model)
            if loaded.card != card:
                raise PackageError(f"The model package '{config.model}' changed while it was read.", "Run again.")
            network = loaded.network
        network = ready(network, device, card, tile)
        detector = TileDetector(network, grid.transform, tiles, threshold, config.exclude_padding, config.tta,
                                aoi, config.merge, config.match_metric, config.nms_overlap, config.class_agnostic,
                                device)  # fmt: skip
        classes = writer_classes(card)
        metadata = {
            "grid": {"transform": list(grid.transform)[:6], "width": grid.width, "height": grid.height},
            "tile_size": tile,
            "overlap": overlap,
            "model": str(config.model),
            "run_id": card.get("run_id"),
            "architecture": card.get("architecture"),
            "model_format": "onnx" if onnx else "package",
            "threshold": threshold,
            "settings": config.model_dump(mode="json", exclude={"model", "rasters", "out", "overwrite"}),
            "rasters": [str(p) for p in config.rasters],
            "terralearn_version": __version__,
        }
        mean, std = (np.asarray(card["normalisation"][k], np.float32) for k in ("mean", "std"))
        batch = config.batch_size or (16 if device.type == "cuda" else 4)
        with (
            gdal_env(gdal_cache_bytes(stack, tiles.tile_y)),
            DetectionWriter(config.out, grid.crs, classes, metadata) as writer,
        ):
            done, skipped, counts = _stream(stack, tiles, detector, writer, classes, mean, std, batch, config,
                                            progress)  # fmt: skip
        qml = Path(config.out).with_suffix(".qml")
    return DetectResult(Path(config.out), qml, counts, done, skipped, area_km2(grid), time.perf_counter() - t0,
                        tile, overlap, warnings)  # fmt: skip


def _stream(stack: RasterStack, tiles: TileGrid, detector: TileDetector, writer: DetectionWriter, classes: list[dict],
            mean: np.ndarray, std: np.ndarray, batch: int, config: DetectConfig,
            progress: Progress | None) -> tuple[int, int, dict[str, int]]:  # fmt: skip
    """Detect strip by strip (the next one read in a thread), merge across seams, write what became final."""
    rows = tiles.row_starts.tolist()
    strip_windows = [Window(0, r, tiles.width, tiles.tile_y) for r in rows]
    future = "higher" if stack.grid.transform.e > 0 else "lower"  # pixel images: rows grow with y
    merger = SeamMerger(config.merge, config.match_metric, config.nms_overlap, config.class_agnostic, future)
    values = np.array([c["value"] for c in classes], np.int64)
    counts = np.zeros(len(classes), np.int64)
    per_strip = len(tiles.col_starts)
    done = skipped = 0

    def write(d: Detections) -> None:
        if len(d):
            labels = d.classes - 1  # detector label k + 1 is class k
            counts[:] += np.bincount(labels, minlength=len(classes))[: len(classes)]
            writer.add(d.boxes, values[labels], d.scores)

    with ThreadPoolExecutor(1, thread_name_prefix="strip-reader") as pool:
        pending = pool.submit(stack.read, strip_windows[0])
        for i, window in enumerate(strip_windows):
            data, valid = pending.result()
            if i + 1 < len(rows):
                pending = pool.submit(stack.read, strip_windows[i + 1])
            found, ran, left_out = detect_window(detector, data, valid, window, mean, std, batch)
            del data, valid
            merger.add(*found)
            done, skipped = done + ran, skipped + left_out
            if i + 1 < len(rows):
                write(merger.release(row_frontier(stack.grid.transform, rows[i + 1])))
            if progress:
                progress((i + 1) * per_strip, len(tiles))
        write(merger.finish())
    return done, skipped, {c["name"]: int(n) for c, n in zip(classes, counts, strict=True)}
