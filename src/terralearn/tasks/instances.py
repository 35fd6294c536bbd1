"""Instance segmentation's export: rasters + one polygon per object -> image chips with instance masks.

The chips, their split and which chips are kept are detection's (``tasks.detection``): an instance is an object
with a box, so the same spatial blocks hold whole objects out, chips at block borders go to the refit only, and
``min_visible`` decides which objects count in a chip (cut ones are flagged truncated). Every chip gets:

- ``images/NNNNNNNNN.tif``: the image chip (georeferenced where the raster is);
- ``instances/NNNNNNNNN.tif``: two uint16 bands, the instance ID (1..k within the chip, 0 = none) and its class
  value (index + 1): every object that shows in the chip, cut or not, so no object pixel is taught as background;

and, per layout (``--format``):

- ``rcnn_masks`` (default, as the incumbent writes *RCNN Masks*): ``labels/<class>/NNNNNNNNN.tif``, one mask
  per class present with a unique ID for each instance (class folders numbered from 1);
- ``coco_instances``: one ``annotations.json`` with each instance's outline as COCO polygons, its box and area;
- ``unet_id``: ``labels/NNNNNNNNN.tif`` with the three U-Net-ID targets as bands (object, border, interior;
  ``--border-width`` and ``--interior-erosion`` pixels, ``geo.instances``).

Checks are detection's (small, large, few, duplicates, outside, degrees) plus overlapping polygons (two
instances sharing pixels: the later one wins in the masks). Memory follows the chip, not the raster; the chip
set is built in a temporary folder and renamed into place.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import shapely

from terralearn.checks.objects import check_instance_polygons, check_objects
from terralearn.config import ExportConfig
from terralearn.errors import ConfigError
from terralearn.geo.bandstats import BandStats
from terralearn.geo.boxes import visible_fraction
from terralearn.geo.instances import instance_polygons, unet_id_targets
from terralearn.io.atomic import ensure_can_write_dir
from terralearn.io.chips import GeoTiffChipWriter
from terralearn.io.instance_chips import INSTANCES, write_coco_instances
from terralearn.io.raster import RasterStack
from terralearn.labels.instances import read_instances
from terralearn.tasks.detection import _Chip, _footprint, image_chips, write_object_chipset

COCO_FILE = "annotations.json"


def export_instances(config: ExportConfig, progress=None):
    """Write the instance chip set ``config.out``; returns the export's ``ExportResult``."""
    if config.split == "random":
        raise ConfigError("A random chip split puts parts of one object in training and validation chips.",
                          "Use --split blocks (or auto) for instances.")  # fmt: skip
    ensure_can_write_dir(config.out, config.overwrite)
    t0 = time.perf_counter()
    with RasterStack(config.rasters, config.resampling) as stack:
        grid = stack.grid
        labels = read_instances(config.labels, grid, config.class_field, config.class_value)
        objects = labels.objects
        tile = (config.tile_size_x, config.tile_size_y)
        findings = check_objects(objects, grid, tile) + check_instance_polygons(labels.polygons)

        def write(tmp, chips, stats):
            return _write(tmp, config, stack, grid, labels, chips, stats, progress)

        extra = {"instances": {"ids": f"{INSTANCES}/", "border_width": config.border_width,
                               "interior_erosion": config.interior_erosion}}  # fmt: skip
        return write_object_chipset(config, stack, grid, objects, findings, write, t0, "instances", extra,
                                    labels=lambda k: label_file(config.layout, k))  # fmt: skip


def label_file(layout: str, chip_id: int) -> str:
    """Where a chip's labels are, inside the chip set (its instance mask for RCNN Masks, one file per class)."""
    if layout == "coco_instances":
        return COCO_FILE
    if layout == "unet_id":
        return f"labels/{chip_id:09d}.tif"
    return f"{INSTANCES}/{chip_id:09d}.tif"


def _write(root: Path, config: ExportConfig, stack, grid, labels, chips: list[_Chip], stats: BandStats,
           progress) -> list[_Chip]:  # fmt: skip
    from rasterio.features import rasterize

    objects, polygons = labels.objects, labels.polygons
    (root / INSTANCES).mkdir()
    if config.layout != "coco_instances":
        (root / "labels").mkdir()
    res = (abs(grid.transform.a), abs(grid.transform.e))
    masks = GeoTiffChipWriter(grid.crs, res, "uint16", 2, None, ["instance_id", "class_value"], config.compress)
    targets = GeoTiffChipWriter(grid.crs, res, "uint8", 3, None, ["object", "border", "interior"], config.compress)
    single = GeoTiffChipWriter(grid.crs, res, "uint16", 1, None, ["instance_id"], config.compress)
    tree = shapely.STRtree(polygons)
    kept: list[_Chip] = []
    coco: list[dict] = []
    for chip, stem, data in image_chips(root, config, stack, grid, chips, stats, progress):
        window_transform = grid.window_transform(chip.window)
        x0, y0 = window_transform.c, window_transform.f
        h, w = data.shape[-2:]
        # every object showing in the chip, in a stable order (the export's object order)
        shown = np.sort(tree.query(_footprint(grid, chip.window), predicate="intersects"))
        shown = shown[visible_fraction(objects.boxes[shown], chip.window) > 0] if len(shown) else shown
        ids = np.zeros((h, w), np.uint16)
        cls = np.zeros((h, w), np.uint16)
        if len(shown):
            ids = rasterize([(polygons[k], i + 1) for i, k in enumerate(shown)], out_shape=(h, w),
                            transform=window_transform, fill=0, dtype="uint16")  # fmt: skip
            lookup = np.concatenate([[0], objects.classes[shown] + 1]).astype(np.uint16)
            cls = lookup[ids]
        masks.write(root / INSTANCES / f"{stem}.tif", np.stack([ids, cls]), x0, y0)
        if config.layout == "rcnn_masks":
            for value in np.unique(cls[cls > 0]).tolist():
                folder = root / "labels" / str(value)
                folder.mkdir(exist_ok=True)
                single.write(folder / f"{stem}.tif", np.where(cls == value, ids, 0)[None].astype(np.uint16), x0, y0)
        elif config.layout == "unet_id":
            target = np.stack(unet_id_targets(ids, config.border_width, config.interior_erosion))
            targets.write(root / "labels" / f"{stem}.tif", target, x0, y0)
        else:
            coco.append({"file_name": f"images/{stem}.tif", "width": w, "height": h,
                         "instances": [(p, int(cls[ids == k][0]) if (ids == k).any() else 0)
                                       for p, k in instance_polygons(ids)]})  # fmt: skip
        kept.append(chip)
    if config.layout == "coco_instances":
        write_coco_instances(root / COCO_FILE, coco, {c.index + 1: c.name for c in objects.table})
    return kept


__all__ = ["export_instances", "label_file"]
