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


__all__ = ["INSTANCES", "write_coco_instances"]
