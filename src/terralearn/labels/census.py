"""The census of a label source: labelled pixels per class and split, and those on image nodata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terralearn.config import UNLABELLED
from terralearn.io.raster import RasterStack
from terralearn.labels.split import windows_in


@dataclass
class Census:
    """Pixel counts of the labels on the raster grid (each pixel counted once)."""

    class_pixels: np.ndarray  # (n_classes, 2): train, val
    nodata_labelled: np.ndarray  # (n_classes,): labelled pixels on image nodata

    @property
    def labelled(self) -> int:
        return int(self.class_pixels.sum())


def take_census(stack: RasterStack, labels, block: int = 1024, progress=None) -> Census:
    """Count labelled pixels per class and split, and those on image nodata, streaming by block."""
    n = len(labels.classes)
    counts = np.zeros((n, 2), dtype=np.int64)
    on_nodata = np.zeros(n, dtype=np.int64)
    area = labels.bounds_window()
    if area is not None:
        for win in windows_in(area, block):
            cls, split, _ = labels.read(win)
            lab = cls != UNLABELLED
            if not lab.any():
                continue
            _, valid = stack.read(win)
            for s in (0, 1):
                sel = lab & (split == s) & valid
                counts[:, s] += np.bincount(cls[sel], minlength=n)[:n]
            on_nodata += np.bincount(cls[lab & ~valid], minlength=n)[:n]
            if progress:
                progress()
    return Census(counts, on_nodata)
