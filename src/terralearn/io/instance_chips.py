"""The files of an instance chip set that detection's have not: COCO instance annotations (polygons)."""

from __future__ import annotations

import json
from pathlib import Path

import shapely

from terralearn.io.atomic import atomic_file

#: The folder of the instance masks (instance ID and class value bands) that every instance chip set holds.
INSTANCES = "instances"


def _rings(polygon) -> list[list[float]]:
    """COCO polygon lists of a (multi)polygon's exteriors: [x0, y0, x1, y1, ...] in chip pixels."""
    parts = polygon.geoms if hasattr(polygon, "geoms") else [polygon]
    return [[round(float(v), 2) for xy in list(p.exterior.coords)[:-1] for v in xy] for p in parts]


def write_coco_instances(path: Path, images: list[dict], categories: dict[int, str]) -> None:
    """One COCO JSON: ``images`` hold file_name, width, height and ``instances`` [(polygon, category id)]."""
    out = {"images": [], "annotations": [], "categories": [{"id": k, "name": v} for k, v in categories.items()]}
    ann = 0
    for image_id, image in enumerate(images, start=1):
        out["images"].append({"id": image_id, "file_name": image["file_name"], "width": image["width"],
                              "height": image["height"]})  # fmt: skip
        for polygon, category in image["instances"]:
            ann += 1
            x0, y0, x1, y1 = shapely.bounds(polygon).tolist()
            out["annotations"].append({
                "id": ann, "image_id": image_id, "category_id": int(category), "iscrowd": 0,
                "segmentation": _rings(polygon), "area": round(float(polygon.area), 2),
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
            })  # fmt: skip
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(out), encoding="utf-8")


def read_instance_chips(chipset, indices: list[int]):
    """Images (N, bands, H, W) in the chip set's dtype and, per chip, ``(boxes, classes, masks)``.

    From each chip's ``instances/`` mask: one binary mask (uint8, H x W) per instance ID, its class index (the
    class value band minus 1) and its box, the mask's extent in pixels (x0, y0, x1, y1; exclusive ends).
    """
    import numpy as np
    import tifffile

    from terralearn.errors import ChipSetError

    m = chipset.manifest
    tx, ty = m["chips"]["tile_size"]
    images = np.empty((len(indices), m["band_count"], ty, tx), dtype=np.dtype(m["dtype"]))
    targets = []
    for k, i in enumerate(indices):
        stem = Path(chipset.tiles[i]["image"]).stem
        try:
            images[k] = tifffile.imread(chipset.root / chipset.tiles[i]["image"]).reshape((-1, ty, tx))
            ids, cls = tifffile.imread(chipset.root / INSTANCES / f"{stem}.tif").reshape((2, ty, tx))
        except (OSError, ValueError) as exc:
            raise ChipSetError(f"Chip {stem} of '{chipset.root}' cannot be read ({exc}).",
                               "Export the chip set again.") from None  # fmt: skip
        values = np.unique(ids[ids > 0])
        masks = (ids[None] == values[:, None, None]).astype(np.uint8)
        boxes = np.zeros((len(values), 4), np.float32)
        classes = np.zeros(len(values), np.int64)
        for j in range(len(values)):
            rows, cols = np.nonzero(masks[j])
            boxes[j] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            classes[j] = int(cls[rows[0], cols[0]]) - 1
        targets.append((boxes, classes, masks))
    return images, targets


__all__ = ["INSTANCES", "read_instance_chips", "write_coco_instances"]
