"""A chip set reassembled into scene mosaics, for training from few labels.

Chips of one export overlap (a stride smaller than the tile) and a window holding labels of
both splits is written once per split; put back at their place in the raster grid they give
every labelled pixel exactly once, with the image context the export kept around it. Chips
that touch form one *mosaic* (a connected cluster of chips), so memory stays within the area
the chips cover even when labels are scattered over a large raster.

On the mosaics, models are trained on random crops of any size (so they do not learn a chip's
borders) and scored by predicting each mosaic whole, every labelled pixel once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from terralearn.config import UNLABELLED
from terralearn.errors import ChipSetError
from terralearn.io.chips import read_chips
from terralearn.train.data import ChipSetData, band_statistics, normalise, open_pixel_chipset, resolve_ignored


@dataclass
class Mosaic:
    image: np.ndarray  # (bands, h, w) float32, normalised; 0 where nothing was exported or nodata
    labels: np.ndarray  # (h, w) uint8 class index, 255 = unlabelled
    row: int  # offset in the raster grid
    col: int


@dataclass
class SceneData(ChipSetData):
    """Everything a model card and the selection need: mosaics, class table, normalisation."""

    mosaics: list[Mosaic]
    ignored: list[int] = field(default_factory=list)

    @property
    def class_pixels(self) -> np.ndarray:
        counts = np.zeros(self.n_classes, dtype=np.int64)
        for m in self.mosaics:
            y = m.labels[m.labels != UNLABELLED]
            counts += np.bincount(y, minlength=self.n_classes)[: self.n_classes]
        return counts

    @property
    def labelled(self) -> int:
        return int(self.class_pixels.sum())

    # duck-typed fields of TrainingData used by the model card
    @property
    def train_ids(self) -> list[int]:
        return list(range(len(self.chipset.tiles)))

    @property
    def val_ids(self) -> list[int]:
        return []


def chip_clusters(rows: np.ndarray, cols: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Cluster index of each chip: chips whose windows overlap or touch share a cluster (pure)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    # chips sit on the export's stride grid; a coarse grid of cells of the smallest stride-like step finds contact
    step = max(1, int(np.gcd.reduce(np.concatenate([rows - rows.min(), cols - cols.min(), [th, tw]]))))
    r0, c0 = rows.min(), cols.min()
    ri, ci = (rows - r0) // step, (cols - c0) // step
    nh, nw = th // step, tw // step
    grid = np.zeros((int(ri.max()) + nh + 1, int(ci.max()) + nw + 1), dtype=bool)
    for r, c in zip(ri, ci, strict=True):
        grid[r : r + nh, c : c + nw] = True
    comp, _ = ndimage.label(grid)
    return comp[ri, ci].astype(np.int64) - 1


def load_scene_data(chips, ignore: list[str] | None = None) -> SceneData:
    chipset = open_pixel_chipset(chips)
    m = chipset.manifest
    if not chipset.tiles:
        raise ChipSetError(f"The chip set '{chips}' has no chips.", "Export with more labels.")
    mean, std = band_statistics(m)
    nodata = None if m.get("nodata_is_nan") else m.get("nodata")
    ignored = resolve_ignored(m["classes"], ignore or [])
    rows = np.array([int(t["row"]) for t in chipset.tiles])
    cols = np.array([int(t["col"]) for t in chipset.tiles])
    tw, th = m["chips"]["tile_size"]
    clusters = chip_clusters(rows, cols, th, tw)
    mosaics = []
    for k in range(int(clusters.max()) + 1):
        ids = [int(i) for i in np.nonzero(clusters == k)[0]]
        x, y = read_chips(chipset, ids)
        x = normalise(x, mean, std, nodata)
        r0, c0 = int(rows[ids].min()), int(cols[ids].min())
        h, w = int(rows[ids].max()) - r0 + th, int(cols[ids].max()) - c0 + tw
        image = np.zeros((x.shape[1], h, w), dtype=np.float32)
        labels = np.full((h, w), UNLABELLED, dtype=np.uint8)
        for j, i in enumerate(ids):
            r, c = int(rows[i]) - r0, int(cols[i]) - c0
            image[:, r : r + th, c : c + tw] = x[j]
            lab = y[j]
            sub = labels[r : r + th, c : c + tw]
            sub[lab != UNLABELLED] = lab[lab != UNLABELLED]
        if ignored:
            labels[np.isin(labels, ignored)] = UNLABELLED
        mosaics.append(Mosaic(image, labels, r0, c0))
    return SceneData(chipset, m["classes"], m["band_names"], mean, std, mosaics, ignored)
