"""Object detection's export: rasters + object labels -> a chip set of image chips and boxes.

The chip set follows Esri's "PASCAL Visual Object Classes" / "KITTI Rectangles" exports where that costs nothing:
``images/NNNNNNNNN.tif`` (georeferenced where the raster is) and, per layout, ``labels/NNNNNNNNN.xml`` (PASCAL
VOC), ``labels/NNNNNNNNN.txt`` (KITTI) or one ``annotations.json`` (COCO), beside ``manifest.json`` (schema 2,
``task: detection``, band statistics, classes with colours, objects per class) and ``tiles.gpkg`` (each chip's
footprint, split and object count).

Which chips are kept: chips holding at least one object (an object counts when ``min_visible`` of its area is
inside; cut objects are flagged truncated), plus ``empty_ratio`` chips without objects per chip with objects
(seeded), or every chip with ``output_tiles='all'``; chips outside the mask or with more than ``max_nodata_fraction``
nodata are not. A chip showing any part of an object of the other split is neither a training nor a validation
chip: it is written with the split ``refit``, for the refit on every label alone. The split holds
whole objects out by spatial blocks (``labels.objects``). The raster is read chip by chip, so memory does not
grow with its size; the chip set is built in a temporary folder and renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from rasterio.windows import Window

from terralearn import __version__
from terralearn.checks.findings import Finding
from terralearn.checks.objects import check_objects
from terralearn.config import ExportConfig
from terralearn.errors import ChecksFailedError, ConfigError
from terralearn.geo.bandstats import BandStats
from terralearn.geo.boxes import boxes_in_window, visible_fraction
from terralearn.geo.grid import Grid, pixel_window_boxes
from terralearn.geo.tiling import TileGrid
from terralearn.io.annotations import ImageObjects, write_coco, write_kitti, write_pascal_voc
from terralearn.io.atomic import atomic_dir, ensure_can_write_dir
from terralearn.io.chips import CHIPSET_SCHEMA_VERSION, REFIT_SPLIT, TILES, GeoTiffChipWriter, write_manifest
from terralearn.io.raster import RasterStack, file_checksum
from terralearn.labels.objects import Objects, chip_split, held_out, read_objects, validation_blocks

Progress = Callable[[int, int], None]
LABEL_SUFFIX = {"pascal_voc": ".xml", "kitti": ".txt"}
COCO_FILE = "annotations.json"


@dataclass
class _Chip:
    chip_id: int
    window: Window
    split: str
    objects: np.ndarray  # indices into Objects
    boxes: np.ndarray  # chip pixel boxes
    truncated: np.ndarray


def export_detection(config: ExportConfig, progress: Progress | None = None):
    """Write the detection chip set ``config.out``; returns the export's ``ExportResult``."""
    if config.split == "random":
        raise ConfigError("A random chip split puts parts of one object in training and validation chips.",
                          "Use --split blocks (or auto) for detection.")  # fmt: skip
    ensure_can_write_dir(config.out, config.overwrite)
    t0 = time.perf_counter()
    with RasterStack(config.rasters, config.resampling) as stack:
        grid = stack.grid
        names = tuple(Path(r).name for r in config.rasters)
        objects = read_objects(config.labels, grid, config.class_field, config.class_value, config.buffer_radius,
                               names)  # fmt: skip
        findings = check_objects(objects, grid, (config.tile_size_x, config.tile_size_y))

        def write(tmp, chips, stats):
            return _write_chips(tmp, config, stack, grid, objects, chips, stats, progress)

        return write_object_chipset(config, stack, grid, objects, findings, write, t0, "detection")


def write_object_chipset(config: ExportConfig, stack, grid: Grid, objects: Objects, findings: list[Finding],
                         write: Callable, t0: float, task: str, extra: dict | None = None, labels=None):  # fmt: skip
    """What the exports of object tasks share: stop on check errors, plan the chips, write them with
    ``write(tmp, chips, stats)`` (which returns the chips kept), then the manifest (plus ``extra``) and the chip
    index, all in a temporary folder renamed into place; the ``ExportResult``."""
    from terralearn.export import ExportResult

    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ChecksFailedError(f"The inputs failed {len(errors)} pre-flight check(s): "
                                + "; ".join(f.message for f in errors), " ".join(f.fix for f in errors),
                                findings=findings)  # fmt: skip
    chips = _plan(config, grid, objects)
    with atomic_dir(config.out, config.overwrite) as tmp:
        stats = BandStats(stack.count)
        kept = write(tmp, chips, stats)
        records = [_record(c, objects) for c in kept]
        manifest = {**_manifest(config, stack, grid, objects, records, stats, findings, task), **(extra or {})}
        write_manifest(tmp, manifest)
        _write_tiles(tmp / TILES, records, grid, config, labels)
    n_train, n_val = (sum(r["split"] == k for r in records) for k in ("train", "val"))
    return ExportResult(config.out, len(records), n_train, n_val, time.perf_counter() - t0, findings, manifest)


def _plan(config: ExportConfig, grid: Grid, objects: Objects) -> list[_Chip]:
    """The chips to write, with their split and objects (no pixel read yet)."""
    tx, ty = config.tile_size_x, config.tile_size_y
    tiles = TileGrid(grid.width, grid.height, min(tx, grid.width), min(ty, grid.height), *config.stride)
    block = config.block_size or 2 * max(tx, ty)
    val_blocks = validation_blocks(grid, block, config.val_fraction, config.seed, objects)
    object_val = held_out(objects, block, val_blocks)
    # Objects larger than a chip are never whole in one, so never labelled in any (the checks warn): they cannot
    # leak across the split, and would otherwise veto every chip they touch.
    sizes = objects.boxes[:, 2:] - objects.boxes[:, :2]
    fits = (sizes[:, 0] <= tx) & (sizes[:, 1] <= ty)
    mask = _mask(config, grid)
    full: list[_Chip] = []
    empty: list[_Chip] = []
    for window in tiles.windows():
        if mask is not None and not shapely.within(_footprint(grid, window), mask):
            continue
        val = chip_split(window.row_off, window.col_off, window.height, window.width, block, val_blocks)
        touched = visible_fraction(objects.boxes, window) > 0
        idx, local, truncated = boxes_in_window(objects.boxes, window, config.min_visible)
        if (touched & fits & (object_val != val)).any():
            # shows part of an object of the other split: neither a training nor a validation chip, but every
            # object is in the refit on all labels (``train.detection``), so it is written for that alone
            if len(idx):
                full.append(_Chip(0, window, REFIT_SPLIT, idx, local, truncated))
            continue
        chip = _Chip(0, window, "val" if val else "train", idx, local, truncated)
        (full if len(idx) else empty).append(chip)
    if config.output_tiles == "features_only":
        rng = np.random.default_rng(config.seed)
        n_empty = min(len(empty), int(round(config.empty_ratio * len(full))))
        pick = sorted(rng.choice(len(empty), size=n_empty, replace=False).tolist()) if n_empty else []
        empty = [empty[i] for i in pick]
    chips = sorted(full + empty, key=lambda c: (c.window.row_off, c.window.col_off))
    for i, chip in enumerate(chips):
        chip.chip_id = i
    return chips


def _mask(config: ExportConfig, grid: Grid):
    if config.mask is None:
        return None
    from terralearn.io.vector import read_vector

    m = read_vector(config.mask)
    if m.crs is not None and grid.crs is not None and m.crs != grid.crs:
        m = m.to_crs(grid.crs)
    geom = shapely.union_all(shapely.make_valid(m.geometry.dropna().to_numpy()))
    shapely.prepare(geom)
    return geom


def _footprint(grid: Grid, window: Window):
    return pixel_window_boxes(grid.transform, [window.row_off], [window.col_off], window.height, window.width)[0]


def _write_chips(root: Path, config, stack, grid: Grid, objects: Objects, chips: list[_Chip], stats: BandStats,
                 progress: Progress | None) -> list[_Chip]:  # fmt: skip
    """Read and write each chip (skipping those with too much nodata); the chips written."""
    if config.layout in LABEL_SUFFIX:
        (root / "labels").mkdir()
    names = [c.name for c in objects.table]
    kept: list[_Chip] = []
    coco_images: list[ImageObjects] = []
    for chip, stem, data in image_chips(root, config, stack, grid, chips, stats, progress):
        labels = [names[k] for k in objects.classes[chip.objects]]
        difficult = objects.difficult[chip.objects]
        h, w = data.shape[-2:]
        if config.layout == "pascal_voc":
            write_pascal_voc(root / "labels" / f"{stem}.xml", f"{stem}.tif", w, h, data.shape[0], chip.boxes, labels,
                             chip.truncated, difficult)  # fmt: skip
        elif config.layout == "kitti":
            write_kitti(root / "labels" / f"{stem}.txt", chip.boxes, labels, chip.truncated)
        else:
            coco_images.append(ImageObjects(f"images/{stem}.tif", w, h, chip.boxes, labels, difficult,
                                            chip.truncated))  # fmt: skip
        kept.append(chip)
    if config.layout == "coco":
        write_coco(root / COCO_FILE, coco_images, {c.index + 1: c.name for c in objects.table})
    return kept


def image_chips(root: Path, config, stack, grid: Grid, chips: list[_Chip], stats: BandStats,
                progress: Progress | None):  # fmt: skip
    """Read each planned chip, skip those with more than ``max_nodata_fraction`` nodata, number the others in
    order, write their image (``images/``) and yield ``(chip, stem, data)`` for the task's labels."""
    (root / "images").mkdir()
    res = (abs(grid.transform.a), abs(grid.transform.e))
    writer = GeoTiffChipWriter(grid.crs, res, stack.dtype, stack.count, stack.nodata, stack.band_names,
                               config.compress)  # fmt: skip
    kept = 0
    for done, chip in enumerate(chips, start=1):
        data, valid = stack.read(chip.window)
        if 1.0 - valid.mean() <= config.max_nodata_fraction:
            stats.update(data, valid)
            chip.chip_id, kept = kept, kept + 1
            stem = f"{chip.chip_id:09d}"
            writer.write(root / "images" / f"{stem}.tif", data, *(grid.transform @ (chip.window.col_off,
                                                                                  chip.window.row_off)))  # fmt: skip
            yield chip, stem, data
        if progress:
            progress(done, len(chips))


def _record(chip: _Chip, objects: Objects) -> dict:
    stem = f"{chip.chip_id:09d}"
    return {
        "chip_id": chip.chip_id, "image": f"images/{stem}.tif", "split": chip.split,
        "row": int(chip.window.row_off), "col": int(chip.window.col_off),
        "width": int(chip.window.width), "height": int(chip.window.height),
        "objects": len(chip.objects), "truncated": int(chip.truncated.sum()),
        "counts": np.bincount(objects.classes[chip.objects], minlength=len(objects.table)).tolist(),
    }  # fmt: skip


def label_path(layout: str, chip_id: int) -> str | None:
    """A chip's label file inside the chip set (None for COCO, whose one file holds every chip)."""
    return f"labels/{chip_id:09d}{LABEL_SUFFIX[layout]}" if layout in LABEL_SUFFIX else None


def _manifest(config: ExportConfig, stack, grid: Grid, objects: Objects, records: list[dict], stats: BandStats,
              findings: list[Finding], task: str = "detection") -> dict:  # fmt: skip
    counts = np.sum([r["counts"] for r in records], axis=0).tolist() if records else [0] * len(objects.table)
    return {
        "schema_version": CHIPSET_SCHEMA_VERSION,
        "kind": "terralearn.chipset",
        "format": config.layout,
        "task": task,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "terralearn_version": __version__,
        "inputs": {
            "rasters": [{"path": str(Path(p).resolve()), "sha256": file_checksum(p)} for p in config.rasters],
            "labels": {
                "path": str(Path(config.labels).resolve()),
                "sha256": file_checksum(config.labels),
                "source": objects.source,
                "class_field": config.class_field,
            },
        },
        "band_names": list(stack.band_names),
        "band_count": stack.count,
        "dtype": str(stack.dtype),
        "nodata": stack.nodata,
        "grid": {
            "crs": grid.crs.to_wkt() if grid.crs else None,
            "epsg": grid.crs.to_epsg() if grid.crs else None,
            "pixel_size": [abs(grid.transform.a), abs(grid.transform.e)],
            "width": grid.width,
            "height": grid.height,
            "georeferenced": grid.crs is not None,
        },
        "chips": {
            "count": len(records),
            "tile_size": [config.tile_size_x, config.tile_size_y],
            "stride": list(config.stride),
            "train": sum(r["split"] == "train" for r in records),
            "val": sum(r["split"] == "val" for r in records),
            REFIT_SPLIT: sum(r["split"] == REFIT_SPLIT for r in records),
        },
        "classes": [{"index": c.index, "value": c.value, "name": c.name, "colour": c.colour} for c in objects.table],
        "objects": {"labelled": objects.counts(), "in_chips": [int(v) for v in counts]},
        "split": {
            "method": "blocks",
            "block_size": config.block_size or 2 * max(config.tile_size_x, config.tile_size_y),
            "val_fraction": config.val_fraction,
            "seed": config.seed,
        },
        "statistics": stats.as_list(list(stack.band_names)),
        "parameters": config.model_dump(mode="json", exclude={"workspace"}),
        "findings": [f.as_dict() for f in findings],
    }


def _write_tiles(path: Path, records: list[dict], grid: Grid, config: ExportConfig, labels=None) -> None:
    """The chip index ``tiles.gpkg``; ``labels(chip_id)`` names each chip's label file (default: detection's)."""
    import geopandas as gpd

    from terralearn.io.vector import write_vector

    rows = np.array([r["row"] for r in records], dtype=np.int64)
    cols = np.array([r["col"] for r in records], dtype=np.int64)
    geoms = pixel_window_boxes(grid.transform, rows, cols, config.tile_size_y, config.tile_size_x) if records else []
    table = {k: [r[k] for r in records] for k in ("chip_id", "image", "split", "row", "col", "width", "height",
                                                  "objects", "truncated")}  # fmt: skip
    name = labels or (lambda chip_id: label_path(config.layout, chip_id) or COCO_FILE)
    table["label"] = [name(r["chip_id"]) for r in records]
    write_vector(gpd.GeoDataFrame(table, geometry=list(geoms), crs=grid.crs), path, layer="tiles")
