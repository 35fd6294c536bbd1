"""Reading a detection chip set back: image chips and their boxes, whatever the layout export wrote.

``read_detection_chips`` returns the images as one (N, bands, H, W) array in the chip set's dtype and, per chip,
its boxes (xyxy, chip pixels, float32) with class indices into the manifest's class table (int64, 0-based) and
the difficult / truncated flags. PASCAL VOC XML, KITTI text and COCO JSON are read; a class name that the manifest
does not list, or a label file that is missing, is a ChipSetError: the chip set was edited after export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from terralearn.errors import ChipSetError, LabelError
from terralearn.io.annotations import read_coco, read_voc
from terralearn.io.chips import ChipSet


@dataclass
class ChipObjects:
    """The objects of one chip: boxes (N, 4) float32 xyxy in chip pixels, classes (N,) int64 0-based."""

    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def _kitti(path: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    boxes, names, truncated = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 8:
            raise ChipSetError(f"Line {number} of '{path}' is not a KITTI object: {line!r}.", "Export again.")
        names.append(tokens[0])
        truncated.append(float(tokens[1]) > 0)
        boxes.append([float(v) for v in tokens[4:8]])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), names, np.asarray(truncated, dtype=bool)


def _objects(boxes, names, difficult, truncated, index: dict[str, int], source: str) -> ChipObjects:
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise ChipSetError(
            f"The label file '{source}' has objects of class {unknown}, which the chip set's manifest does not list.",
            "The chip set was edited after export: export it again.",
        )
    return ChipObjects(
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray([index[n] for n in names], dtype=np.int64),
        np.asarray(difficult, dtype=bool).reshape(-1),
        np.asarray(truncated, dtype=bool).reshape(-1),
    )


def read_detection_chips(chipset: ChipSet, indices: list[int]) -> tuple[np.ndarray, list[ChipObjects]]:
    """Images (N, bands, H, W) in the chip set's dtype and the objects of each of the chips ``indices``."""
    m = chipset.manifest
    count = m["band_count"]
    tx, ty = m["chips"]["tile_size"]
    layout = m["format"]
    index = {str(c["name"]): i for i, c in enumerate(m["classes"])}
    coco = {}
    if layout == "coco":
        try:
            coco = {r.image: r for r in read_coco(chipset.root / "annotations.json", allow_empty=True)}
        except LabelError as exc:
            raise ChipSetError(f"The chip set's annotations.json cannot be read ({exc}).", "Export again.") from None
    images = np.empty((len(indices), count, ty, tx), dtype=np.dtype(m["dtype"]))
    objects: list[ChipObjects] = []
    for k, i in enumerate(indices):
        tile = chipset.tiles[i]
        label = chipset.root / str(tile["label"])
        try:
            image = tifffile.imread(chipset.root / tile["image"]).reshape((-1, ty, tx))
            if layout == "pascal_voc":
                r = read_voc(label, allow_empty=True)
                objects.append(_objects(r.boxes, r.labels, r.difficult, r.truncated, index, str(label)))
            elif layout == "kitti":
                boxes, names, truncated = _kitti(label)
                objects.append(_objects(boxes, names, np.zeros(len(names), bool), truncated, index, str(label)))
            else:
                r = coco.get(tile["image"])
                if r is None:
                    objects.append(_objects([], [], [], [], index, "annotations.json"))
                else:
                    objects.append(_objects(r.boxes, r.labels, r.difficult, r.truncated, index, "annotations.json"))
        except (OSError, ValueError, tifffile.TiffFileError, LabelError) as exc:
            raise ChipSetError(
                f"Chip {tile['image']} of '{chipset.root}' or its labels cannot be read ({exc}).",
                "The chip set is incomplete or damaged: export it again.",
            ) from None
        if image.shape[0] != count:
            raise ChipSetError(
                f"Chip {tile['image']} has {image.shape[0]} bands; the manifest says {count}.",
                "The chip set was modified after export: export it again.",
            )
        images[k] = image
    return images, objects
