"""Blending weights for overlapping tiles: seamless mosaics of tile predictions."""

from __future__ import annotations

import numpy as np


def hann_weights(height: int, width: int, floor: float = 1e-3) -> np.ndarray:
    """A 2-D Hann (raised cosine) window, highest at the centre, near zero at the edges.

    Overlapping tiles weighted this way and normalised by the sum of weights blend without
    seams: each pixel's prediction is dominated by the tile that sees it nearest its centre,
    where the network has the most context. The floor keeps pixels at the raster border
    (seen by a single tile, at its edge) from a zero weight.
    """

    def axis(n: int) -> np.ndarray:
        if n == 1:
            return np.ones(1)
        return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2

    w = np.outer(axis(height), axis(width))
    return np.maximum(w, floor).astype(np.float32)
