"""A classified raster as a label source, split by spatial blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from terralearn.classes import ClassInfo, build_classes, normalise_values
from terralearn.config import UNLABELLED
from terralearn.errors import LabelError
from terralearn.geo.grid import Grid
from terralearn.geo.split import block_split_window
from terralearn.geo.tiling import block_windows
from terralearn.io.inputs import Inputs
from terralearn.io.raster import LabelRaster
from terralearn.labels.split import block_grid, choose_blocks, resolve_split


@dataclass
class RasterLabels:
    """A classified raster on the image grid, split by spatial blocks."""

    grid: Grid
    source: LabelRaster
    classes: list[ClassInfo]
    values: np.ndarray  # sorted distinct class values (raw)
    block_split: np.ndarray
    block_size: int
    background: bool = False
    kind: str = "raster"
    split_method: str = "blocks"
    split_info: dict = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return int(self.block_split.size)

    def bounds_window(self) -> Window | None:
        return Window(0, 0, self.grid.width, self.grid.height)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raw, labelled = self.source.read(window)
        pos = np.searchsorted(self.values, raw).clip(max=len(self.values) - 1)
        offset = 1 if self.background else 0
        cls = np.where(labelled, pos + offset, 0 if self.background else UNLABELLED).astype(np.uint8)
        split = block_split_window(
            self.block_split, self.block_size, int(window.row_off), int(window.col_off),
            int(window.height), int(window.width),
        ).astype(np.int8)  # fmt: skip
        if not self.background:
            split[~labelled] = -1
        n_bc = self.block_split.shape[1]
        rows = np.arange(int(window.row_off), int(window.row_off + window.height)) // self.block_size
        cols = np.arange(int(window.col_off), int(window.col_off + window.width)) // self.block_size
        ids = (rows[:, None] * n_bc + cols[None, :] + 1).astype(np.int32)
        ids[cls == UNLABELLED] = 0
        return cls, split, ids

    def close(self) -> None:
        self.source.close()


def raster_label_values(source: LabelRaster, grid: Grid, block: int = 1024) -> dict:
    """Distinct labelled values of a classified raster and their pixel counts (streamed)."""
    counts: dict = {}
    for win in block_windows(grid.width, grid.height, block):
        raw, labelled = source.read(win)
        vals, n = np.unique(raw[labelled], return_counts=True)
        for v, c in zip(vals.tolist(), n.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + c
    return counts


def prepare_raster_labels(inputs: Inputs, block_size: int, choose_block_size: bool = False) -> RasterLabels:
    cfg = inputs.config
    grid = inputs.grid
    resolve_split(cfg.split, "raster", cfg.background_class)
    source = inputs.open_label_raster()
    try:
        counts = raster_label_values(source, grid)
        values = normalise_values(sorted(counts))
        if any(isinstance(v, str) for v in values):  # pragma: no cover - rasters hold numbers
            raise LabelError("The label raster holds non-numeric values.", "Use a raster of integer class values.")
        classes = build_classes(values, background=cfg.background_class)
        labels = RasterLabels(grid, source, classes, np.array(sorted(counts)), np.zeros((1, 1), np.uint8),
                              block_size, cfg.background_class)  # fmt: skip
        if cfg.split == "random":
            labels.block_split = block_grid(grid, block_size, cfg.val_fraction, cfg.seed)
        else:
            choose_blocks(labels, inputs, block_size, choose_block_size)
        return labels
    except BaseException:
        source.close()
        raise
