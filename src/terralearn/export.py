"""Stage 1: rasters + labels -> a ChipSet folder.

The raster is read block by block (about 1024 px a side, each block the union of the chips
it serves); labels are rasterised per block; chips are cut from memory and handed to a
writer thread. Memory is bounded by the block size, whatever the raster size. The chip
set is built in a temporary folder and renamed into place at the end, and recorded in the
run table of the config's workspace when one is given.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from terralearn import __version__
from terralearn.checks import Finding, run_checks
from terralearn.classes import hex_to_rgba
from terralearn.config import UNLABELLED, ExportConfig
from terralearn.errors import ChecksFailedError
from terralearn.geo.bandstats import BandStats
from terralearn.geo.grid import pixel_window_boxes
from terralearn.geo.split import SPLIT_NAMES
from terralearn.geo.tiling import TileGrid, window_sums
from terralearn.io.atomic import atomic_dir, ensure_can_write_dir
from terralearn.io.chips import CHIP_FORMATS, CHIPSET_SCHEMA_VERSION, MANIFEST, TILES, GeoTiffChipWriter, write_manifest
from terralearn.io.raster import RasterStack, file_checksum
from terralearn.io.vector import write_vector
from terralearn.runs import Registry

Progress = Callable[[int, int], None]
#: The held-out validation polygons of a polygon split, written into the chip set for `terralearn evaluate`.
VALIDATION = "validation.gpkg"


@dataclass
class ExportResult:
    out: Path
    chips: int
    train_chips: int
    val_chips: int
    seconds: float
    findings: list[Finding] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def chips_per_second(self) -> float:
        return self.chips / self.seconds if self.seconds > 0 else float("inf")


def export(config: ExportConfig, progress: Progress | None = None) -> ExportResult:
    """Check the inputs, then write the chip set. Raises ChecksFailedError if a check finds an error."""
    from terralearn.tasks import get_task

    result = get_task(config.task).stage("export")(config, progress)  # the task's own chips and labels
    if config.workspace is not None:
        Registry(config.workspace).record_chipset(result)
    return result


def export_pixels(config: ExportConfig, progress: Progress | None = None) -> ExportResult:
    """Pixel classification's export: image chips and label masks (Classified Tiles); the stage of ``export``."""
    ensure_can_write_dir(config.out, config.overwrite)
    report = run_checks(config)  # with the export's split and stride
    if report.errors:
        lines = "; ".join(f.message for f in report.errors)
        raise ChecksFailedError(
            f"The inputs failed {len(report.errors)} pre-flight check(s): {lines}",
            " ".join(f.fix for f in report.errors),
            findings=report.findings,
        )
    t0 = time.perf_counter()
    inputs, labels, census = report.inputs, report.labels, report.census
    grid = inputs.grid
    tiles = TileGrid(grid.width, grid.height, config.tile_size_x, config.tile_size_y, *config.stride)
    mask = inputs.mask_geometry()
    if mask is not None:
        shapely.prepare(mask)
    n_classes = len(labels.classes)
    colormap = {c.index: hex_to_rgba(c.colour) for c in labels.classes}
    records: list[dict] = []
    try:
        with RasterStack(config.rasters, config.resampling) as stack, atomic_dir(config.out, config.overwrite) as tmp:
            image_writer = GeoTiffChipWriter(grid.crs, grid.res, stack.dtype, stack.count, stack.nodata,
                                             stack.band_names, config.compress)  # fmt: skip
            label_writer = GeoTiffChipWriter(grid.crs, grid.res, np.uint8, 1, UNLABELLED, ["class"], config.compress,
                                             colormap=colormap)  # fmt: skip
            writer = CHIP_FORMATS[config.layout](tmp, image_writer, label_writer)
            stats = BandStats(stack.count)
            try:
                done = 0
                features_only = config.output_tiles == "features_only"
                for item, arrays in _read_ahead(stack, labels, tiles.blocks(), features_only):
                    if arrays is not None:
                        _export_block(config, labels, grid, item, arrays, mask, writer, stats, records, n_classes)
                    done += len(item[1]) * len(item[2])
                    if progress:
                        progress(done, len(tiles))
            finally:
                writer.close()
            manifest = _manifest(config, inputs, labels, census, stack, stats, records, report.findings)
            write_manifest(tmp, manifest)
            _write_tiles(tmp / TILES, records, grid, n_classes)
            _write_validation_polygons(tmp / VALIDATION, labels)
    finally:
        if hasattr(labels, "close"):
            labels.close()
    seconds = time.perf_counter() - t0
    n_val = sum(r["split"] == "val" for r in records)
    return ExportResult(config.out, len(records), len(records) - n_val, n_val, seconds, report.findings, manifest)


def _read_ahead(stack, labels, blocks, features_only: bool):
    """Yield ``((block, rs, cs), arrays)``; the next block is read in a background thread meanwhile.

    ``arrays`` is None for a block with no label when only chips with labels are written
    (the image is then not read at all).
    """

    def read(item):
        block = item[0]
        cls, split, ids = labels.read(block)
        if features_only and not (cls != UNLABELLED).any():
            return item, None
        data, valid = stack.read(block)
        return item, (cls, split, ids, data, valid)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="block-reader") as pool:
        pending = None
        for item in blocks:
            future = pool.submit(read, item)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


def _export_block(config, labels, grid, item, arrays, mask, writer, stats, records, n_classes) -> None:
    block, rs, cs = item
    cls, split, ids, data, valid = arrays
    tx, ty = config.tile_size_x, config.tile_size_y
    features_only = config.output_tiles == "features_only"
    ro = (rs - int(block.row_off)).astype(np.int64)
    co = (cs - int(block.col_off)).astype(np.int64)
    nodata = window_sums(~valid, ro, co, ty, tx)
    keep = nodata <= config.max_nodata_fraction * tx * ty
    # the label of each split: the other split's pixels and nodata pixels are unlabelled
    by_split = [np.where((split == s) & valid, cls, UNLABELLED).astype(np.uint8) for s in (0, 1)]
    per_split = [window_sums(lab != UNLABELLED, ro, co, ty, tx) for lab in by_split]
    if features_only:
        keep &= (per_split[0] + per_split[1]) > 0
    if mask is not None and keep.any():
        i, j = np.nonzero(keep)
        inside = shapely.contains(mask, pixel_window_boxes(grid.transform, rs[i], cs[j], ty, tx))
        keep[i[~inside], j[~inside]] = False
    if not keep.any():
        return
    covered = np.zeros(valid.shape, dtype=bool)
    ratio = config.min_polygon_overlap_ratio
    polygon_pixels = getattr(labels, "polygon_pixels", None)
    for i, j in zip(*np.nonzero(keep), strict=True):
        r, c = int(ro[i]), int(co[j])
        sl = (slice(r, r + ty), slice(c, c + tx))
        splits = [s for s in (0, 1) if per_split[s][i, j] > 0]
        if not splits:
            splits = [_default_split(labels, int(rs[i]) + ty // 2, int(cs[j]) + tx // 2)]
        for s in splits:
            lab = by_split[s][sl]
            if ratio > 0 and polygon_pixels is not None:
                lab = _drop_small_overlaps(lab.copy(), ids[sl], polygon_pixels, ratio)
                if features_only and not (lab != UNLABELLED).any():
                    continue
            x0, y0 = grid.transform @ (int(cs[j]), int(rs[i]))
            chip_id = len(records)
            paths = writer.write_chip(chip_id, data[:, sl[0], sl[1]], lab, x0, y0)
            if s == 0:
                covered[sl] = True
            counts = np.bincount(lab.ravel(), minlength=256)
            records.append({
                "chip_id": chip_id, **paths, "split": SPLIT_NAMES[s], "row": int(rs[i]), "col": int(cs[j]),
                "width": tx, "height": ty, "labelled_pixels": int(counts[:UNLABELLED].sum()),
                "nodata_fraction": float(nodata[i, j]) / (tx * ty), "counts": counts[:n_classes],
            })  # fmt: skip
    stats.update(data, valid & covered)


def _default_split(labels, row: int, col: int) -> int:
    """Split of a chip with no labelled pixel (output_tiles='all'): its centre's block, else train."""
    blocks = getattr(labels, "block_split", None)
    if blocks is None:
        return 0
    size = labels.block_size
    return int(blocks[min(row // size, blocks.shape[0] - 1), min(col // size, blocks.shape[1] - 1)])


def _drop_small_overlaps(lab: np.ndarray, ids: np.ndarray, polygon_pixels: np.ndarray, ratio: float) -> np.ndarray:
    """Unlabel the pixels of polygons with less than ``ratio`` of their area inside the chip."""
    present, n_in = np.unique(ids[(ids > 0) & (lab != UNLABELLED)], return_counts=True)
    if len(present) == 0:
        return lab
    small = present[n_in < ratio * polygon_pixels[present - 1]]
    if len(small):
        lab[np.isin(ids, small)] = UNLABELLED
    return lab


def _manifest(config, inputs, labels, census, stack, stats, records, findings) -> dict:
    grid = inputs.grid
    counts = census.class_pixels
    n_val = sum(r["split"] == "val" for r in records)
    crs = grid.crs
    return {
        "schema_version": CHIPSET_SCHEMA_VERSION,
        "kind": "terralearn.chipset",
        "format": config.layout,
        "task": "pixel_classification",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "terralearn_version": __version__,
        "inputs": {
            "rasters": [
                {
                    "path": str(info.path.resolve()),
                    "sha256": file_checksum(info.path),
                    "bands": list(info.band_names),
                    "crs": info.grid.crs.to_string() if info.grid.crs else None,
                    "pixel_size": list(info.grid.res),
                    "resampling": method,
                }
                for info, method in zip(inputs.rasters, stack.resampling, strict=True)
            ],
            "labels": {
                "path": str(Path(config.labels).resolve()),
                "sha256": file_checksum(config.labels),
                "kind": labels.kind,
                "class_field": config.class_field,
                "class_name_field": config.class_name_field,
            },
            "mask": None
            if config.mask is None
            else {"path": str(Path(config.mask).resolve()), "sha256": file_checksum(config.mask)},
        },
        "grid": {
            "crs": crs.to_wkt() if crs else None,
            "crs_name": crs.to_string() if crs else None,
            "epsg": crs.to_epsg() if crs else None,
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
            "pixel_size": list(grid.res),
            "units": (crs.linear_units if crs and not crs.is_geographic else "degree") if crs else None,
        },
        "band_names": list(stack.band_names),
        "band_count": stack.count,
        "dtype": str(stack.dtype),
        "nodata": None if isinstance(stack.nodata, float) and np.isnan(stack.nodata) else stack.nodata,
        "nodata_is_nan": bool(isinstance(stack.nodata, float) and np.isnan(stack.nodata)),
        "statistics": stats.as_list(stack.band_names),
        "unlabelled_value": UNLABELLED,
        "background_class": config.background_class,
        "classes": [
            {
                **c.as_dict(),
                "pixels": {
                    "train": int(counts[c.index, 0]),
                    "val": int(counts[c.index, 1]),
                    "total": int(counts[c.index].sum()),
                },
            }
            for c in labels.classes
        ],
        "split": {
            "method": labels.split_method,
            "val_fraction": config.val_fraction,
            "seed": config.seed,
            "block_size": getattr(labels, "block_size", None) if labels.split_method != "polygons" else None,
            "units": _unit_counts(labels),
        },
        "chips": {
            "count": len(records),
            "train": len(records) - n_val,
            "val": n_val,
            "tile_size": [config.tile_size_x, config.tile_size_y],
            "stride": list(config.stride),
            "images": "images",
            "labels": "labels",
            "index": TILES,
        },
        "parameters": config.model_dump(mode="json"),
        "findings": [f.as_dict() for f in findings],
        "files": {
            "manifest": MANIFEST,
            "tiles": TILES,
            "map": "map.txt",
            "validation_polygons": VALIDATION if labels.split_method == "polygons" else None,
        },
    }


def _unit_counts(labels) -> dict:
    if labels.split_method == "polygons":
        s = labels.gdf["_split"].to_numpy()
        return {"kind": "polygons", "train": int((s == 0).sum()), "val": int((s == 1).sum())}
    b = labels.block_split
    return {"kind": "blocks", "train": int((b == 0).sum()), "val": int((b == 1).sum())}


def _write_validation_polygons(path: Path, labels) -> None:
    """The held-out label polygons (polygon split), for an honest map evaluation after classify."""
    if labels.kind != "vector" or labels.split_method != "polygons":
        return
    val = labels.gdf[labels.gdf["_split"] == 1]
    names = {c.index: c.name for c in labels.classes}
    gdf = gpd.GeoDataFrame({"class_value": val["_value"].to_numpy(), "class_name": [names[i] for i in val["_class"]]},
                           geometry=val.geometry.to_numpy(), crs=labels.gdf.crs)  # fmt: skip
    write_vector(gdf, path, layer="validation")


def _write_tiles(path: Path, records: list[dict], grid, n_classes: int) -> None:
    rows = np.array([r["row"] for r in records], dtype=np.int64)
    cols = np.array([r["col"] for r in records], dtype=np.int64)
    geoms = pixel_window_boxes(grid.transform, rows, cols, records[0]["height"], records[0]["width"]) if records else []
    table = {k: [r[k] for r in records] for k in ("chip_id", "image", "label", "split", "row", "col", "width",
                                                  "height", "labelled_pixels", "nodata_fraction")}  # fmt: skip
    for c in range(n_classes):
        table[f"px_class_{c}"] = [int(r["counts"][c]) for r in records]
    gdf = gpd.GeoDataFrame(table, geometry=list(geoms), crs=grid.crs)
    write_vector(gdf, path, layer="tiles")
