"""Blending overlapping tiles: Hann-weighted sums of class probabilities over a band of rows sliding down.

Overlapping tiles weighted by a 2-D Hann window blend without seams; rows are taken from the top as soon
as no later tile covers them, so the memory held depends on the tile and the width, never on the height.
"""

from __future__ import annotations

import numpy as np

from terralearn.io.maps import NODATA


class Mosaic:
    """Weighted sums of class probabilities (and of weights) over a band of rows that slides down the map.

    ``acc[:, base + y]`` holds row ``top + y``. Tiles add to rows, which are taken from the top once final;
    the rows held move to the start of the buffer only when the band reaches its end. The buffer holds a
    tile row and one stride (a batch reaching into the next tile row), taller only for narrow rasters whose
    batches reach several tile rows down.
    """

    def __init__(self, k: int, sy: int, width: int, weights: np.ndarray, with_weights: bool, top: int = 0) -> None:  # fmt: skip
        th = weights.shape[0]
        self.k, self.width, self.th = k, width, th
        self.weights = weights
        self._scratch = np.empty((k, *weights.shape), dtype=np.float32)  # one tile's weighted probabilities
        self.top, self.base, self.used = top, 0, 0  # first row held, its buffer row, rows held (below: zero)
        self._allocate(th + sy, with_weights)

    def _allocate(self, height: int, with_weights: bool) -> None:
        self.acc = np.zeros((self.k, height, self.width), dtype=np.float32)
        self.wsum = np.zeros((height, self.width), dtype=np.float32) if with_weights else None

    def add(self, proba: np.ndarray, r: int, c: int) -> None:
        """Add one tile's (k, th, tw) probabilities times the blending weights at row ``r``, column ``c``."""
        th, tw = self.weights.shape
        y = r - self.top
        if self.base + y + th > self.acc.shape[1]:
            self._make_room(y + th)
        y += self.base
        np.multiply(proba, self.weights, out=self._scratch)
        self.acc[:, y : y + th, c : c + tw] += self._scratch
        if self.wsum is not None:
            self.wsum[y : y + th, c : c + tw] += self.weights
        self.used = max(self.used, r - self.top + th)

    def _make_room(self, rows: int) -> None:
        old_acc, old_wsum, base, used = self.acc, self.wsum, self.base, self.used
        if rows > old_acc.shape[1]:  # a batch reaching several strips down (narrow rasters): a taller buffer
            self._allocate(rows + self.th, old_wsum is not None)
        # rows from base + used on are zero: move the rows held to the start and zero the rest of the old ones
        self.acc[:, :used] = old_acc[:, base : base + used]
        self.acc[:, used : base + used] = 0.0
        if old_wsum is not None:
            self.wsum[:used] = old_wsum[base : base + used]
            self.wsum[used : base + used] = 0.0
        self.base = 0

    def take(self, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The next ``rows`` rows from the top (views, valid until the next ``add``) and their weight sums."""
        band = self.acc[:, self.base : self.base + rows]
        wsum = self.wsum[self.base : self.base + rows] if self.wsum is not None else None
        self.top, self.base, self.used = self.top + rows, self.base + rows, max(0, self.used - rows)
        return band, wsum


def winners(block: np.ndarray, allowed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The winning class of every pixel among ``allowed`` (the first on ties, as argmax) and its weighted sum.

    A running maximum over the allowed class planes (faster than numpy's argmax, which reduces the class
    axis with the stride of a whole plane; strictly greater, so the first class wins ties). The sums are
    not divided by the weight sum: it is positive, so it does not change the winner.
    """
    best = block[allowed[0]].copy()
    labels = np.full(best.shape, allowed[0], dtype=np.uint8)
    more = np.empty(best.shape, dtype=bool)
    for c in allowed[1:]:
        np.greater(block[c], best, out=more)
        np.putmask(labels, more, c)
        np.maximum(best, block[c], out=best)
    return labels, best


def classes_of(sums: np.ndarray, weights: np.ndarray | None, ok: np.ndarray, allowed: list[int]):
    """The class map of blended scores (NODATA where not ``ok``) and, given the weight sums, the winning
    class's probability in percent (uint8, NODATA where not ``ok``; else None)."""
    labels, best = winners(sums, allowed)
    labels[~ok] = NODATA
    if weights is None:
        return labels, None
    prob = np.round(best / np.maximum(weights, 1e-12) * 100).astype(np.uint8)
    prob[~ok] = NODATA
    return labels, prob
