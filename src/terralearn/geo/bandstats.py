"""Streaming per-band statistics over valid pixels."""

from __future__ import annotations

import numpy as np

from terralearn.geo.numbers import finite


class BandStats:
    """Accumulates count, min, max, mean and standard deviation per band, window by window.

    Uses per-window means merged with Chan's parallel formula, so the result does not
    depend on how the pixels were split into windows and large values do not lose precision.
    """

    def __init__(self, n_bands: int) -> None:
        self.count = np.zeros(n_bands, dtype=np.int64)
        self.mean = np.zeros(n_bands, dtype=np.float64)
        self.m2 = np.zeros(n_bands, dtype=np.float64)
        self.min = np.full(n_bands, np.inf)
        self.max = np.full(n_bands, -np.inf)

    def update(self, data: np.ndarray, valid: np.ndarray) -> None:
        """Add the valid pixels of ``data`` (bands, rows, cols); ``valid`` is (rows, cols) bool."""
        n = int(valid.sum())
        if n == 0:
            return
        x = data[:, valid].astype(np.float64)
        mean_b = x.mean(axis=1)
        m2_b = ((x - mean_b[:, None]) ** 2).sum(axis=1)
        n_a = self.count
        total = n_a + n
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2_b + delta**2 * (n_a * n / total)
        self.count = total
        self.min = np.minimum(self.min, x.min(axis=1))
        self.max = np.maximum(self.max, x.max(axis=1))

    @property
    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, np.sqrt(self.m2 / np.maximum(self.count, 1)), np.nan)

    def as_list(self, names: list[str]) -> list[dict]:
        std = self.std
        return [
            {
                "band": i + 1,
                "name": names[i],
                "count": int(self.count[i]),
                "min": finite(self.min[i]),
                "max": finite(self.max[i]),
                "mean": finite(self.mean[i]) if self.count[i] else None,
                "std": finite(std[i]),
            }
            for i in range(len(names))
        ]
