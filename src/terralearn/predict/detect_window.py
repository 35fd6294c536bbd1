"""Detecting objects in one window of a raster: the unit of work of whole-raster detection.

:class:`TileDetector` turns a batch of normalised tiles with their pixel origins into detections in map
coordinates: it runs the network (and its flips with test-time augmentation), keeps the confident boxes, drops
those centred in a tile's shared overlap margin (``exclude_padding``) or outside the area of interest, and moves
the rest onto the map. :func:`detect_window` does that for every tile of the tile grid inside a window's array
(read with its validity mask), skipping tiles that are all nodata or outside the area of interest. The detect
stage calls it strip by strip (one tile row per window) and merges the strips' detections across the seams; a
distributed mode can call it on any window aligned to the tile grid and merge the results the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
import torch
from affine import Affine
from rasterio.windows import Window

from terralearn.geo.boxes import pixel_to_map
from terralearn.geo.merge_boxes import Detections, merge_detections
from terralearn.geo.tiling import TileGrid, central_zones

__all__ = ["TileDetector", "detect_window", "normalise"]

#: Test-time augmentation: (flip columns, flip rows) of each pass; the first is the tile as it is.
FLIPS = ((False, False), (True, False), (False, True), (True, True))


def normalise(data: np.ndarray, valid: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(data - mean) / std`` per band in float32, nodata pixels at 0 (the band mean)."""
    out = np.subtract(data, mean[:, None, None], dtype=np.float32)
    np.divide(out, std[:, None, None].astype(np.float32), out=out)
    if not valid.all():
        out[:, ~valid] = 0.0
    return out


@dataclass
class TileDetector:
    """Normalised tiles -> detections in map coordinates, classes = detector labels (1..K).

    ``tiles`` is the raster's tile grid (for the central zones of ``exclude_padding``), ``transform`` the
    raster's. ``merge``, ``metric``, ``match`` and ``class_agnostic`` merge the passes of one tile under TTA.
    """

    network: torch.nn.Module
    transform: Affine
    tiles: TileGrid
    threshold: float = 0.3
    exclude_padding: bool = True
    tta: bool = False
    aoi: object = None  # a shapely geometry in the raster's CRS, or None
    merge: str = "nms"
    metric: str = "iou"
    match: float = 0.5
    class_agnostic: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self._rows = dict(zip(self.tiles.row_starts.tolist(), zip(*central_zones(self.tiles.row_starts,
                                                                                  self.tiles.tile_y), strict=True),
                              strict=True))  # fmt: skip
        self._cols = dict(zip(self.tiles.col_starts.tolist(), zip(*central_zones(self.tiles.col_starts,
                                                                                  self.tiles.tile_x), strict=True),
                              strict=True))  # fmt: skip
        if self.aoi is not None:
            shapely.prepare(self.aoi)

    def keeps(self, row: int, col: int) -> bool:
        """Whether the tile at pixel (row, col) touches the area of interest (always without one)."""
        if self.aoi is None:
            return True
        box = pixel_to_map([[col, row, col + self.tiles.tile_x, row + self.tiles.tile_y]], self.transform)[0]
        return bool(self.aoi.intersects(shapely.box(*box)))

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        passes = FLIPS if self.tta else FLIPS[:1]
        h, w = batch.shape[-2:]
        found: list[list] = [[] for _ in range(len(batch))]
        for flip_x, flip_y in passes:
            dims = [d for d, f in ((-1, flip_x), (-2, flip_y)) if f]
            x = batch.flip(dims) if dims else batch
            for k, det in enumerate(self.network(list(x))):
                keep = det["scores"] >= self.threshold
                b = det["boxes"][keep].detach().cpu().numpy().astype(np.float64)
                if flip_x:
                    b[:, [0, 2]] = w - b[:, [2, 0]]
                if flip_y:
                    b[:, [1, 3]] = h - b[:, [3, 1]]
                found[k].append((b, det["scores"][keep].detach().cpu().numpy(), det["labels"][keep].cpu().numpy()))
        out = []
        for parts in found:
            d = Detections.concat([Detections.of(*p) for p in parts])
            if self.tta and len(d):
                d = merge_detections(*d, method=self.merge, metric=self.metric, threshold=self.match,
                                     class_agnostic=self.class_agnostic)  # fmt: skip
            out.append(tuple(d))
        return out

    def __call__(self, batch: np.ndarray, origins: Sequence[tuple[int, int]]) -> Detections:
        """Detections of the (B, C, th, tw) normalised ``batch`` whose tiles start at pixel (row, col) ``origins``."""
        if not len(batch):
            return Detections.concat([])
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        parts = []
        for (boxes, scores, labels), (row, col) in zip(self._forward(tensor), origins, strict=True):
            if self.exclude_padding and len(boxes):
                cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 + col, (boxes[:, 1] + boxes[:, 3]) / 2 + row
                (x0, x1), (y0, y1) = self._cols[int(col)], self._rows[int(row)]
                keep = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
                boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            parts.append(Detections.of(boxes + np.array([col, row, col, row], np.float64), scores, labels))
        d = Detections.concat(parts)
        d = Detections(pixel_to_map(d.boxes, self.transform), d.scores, d.classes)
        if self.aoi is not None and len(d):
            centres = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2
            d = d.take(np.flatnonzero(shapely.contains_xy(self.aoi, centres[:, 0], centres[:, 1])))
        return d


def detect_window(detector: TileDetector, data: np.ndarray, valid: np.ndarray, window: Window, mean: np.ndarray,
                  std: np.ndarray, batch_size: int = 4) -> tuple[Detections, int, int]:  # fmt: skip
    """``(detections in map coordinates, tiles run, tiles skipped)`` of the tile grid's tiles inside ``window``.

    ``data`` (C, h, w) and ``valid`` (h, w) are the window's pixels as ``RasterStack.read`` returns them (nodata
    pixels become the band mean); ``mean`` and ``std`` are the card's per-band statistics. Tiles that are all
    nodata or outside the area of interest are skipped.
    """
    tiles = detector.tiles
    top, left = int(window.row_off), int(window.col_off)
    bottom, right = top + int(window.height), left + int(window.width)
    rows = [r for r in tiles.row_starts.tolist() if r >= top and r + tiles.tile_y <= bottom]
    cols = [c for c in tiles.col_starts.tolist() if c >= left and c + tiles.tile_x <= right]
    todo, skipped = [], 0
    for r in rows:
        for c in cols:
            inside = valid[r - top : r - top + tiles.tile_y, c - left : c - left + tiles.tile_x]
            if inside.any() and detector.keeps(r, c):
                todo.append((r, c))
            else:
                skipped += 1
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    parts = []
    for k in range(0, len(todo), batch_size):
        origins = todo[k : k + batch_size]
        batch = np.stack([
            normalise(data[:, r - top : r - top + tiles.tile_y, c - left : c - left + tiles.tile_x],
                      valid[r - top : r - top + tiles.tile_y, c - left : c - left + tiles.tile_x], mean, std)
            for r, c in origins
        ])  # fmt: skip
        parts.append(detector(batch, origins))
    return Detections.concat(parts), len(todo), skipped
