"""Spatially honest train/validation splits.

Units of the split are whole label polygons, square pixel blocks, or (for comparison only)
whole chips. Validation units never contribute a label pixel to a training chip.
"""

from __future__ import annotations

import numpy as np

TRAIN = 0
VAL = 1
SPLIT_NAMES = ("train", "val")


def split_polygons(classes: np.ndarray, areas: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Assign each polygon to train (0) or validation (1), class by class.

    Within each class the polygons are shuffled (seeded) and taken into validation until
    about ``val_fraction`` of the class's area is held out. A class with a single polygon
    stays in training (it cannot be in both); a class with two or more always keeps at
    least one polygon on each side when ``val_fraction > 0``.
    """
    classes = np.asarray(classes)
    areas = np.asarray(areas, dtype=float)
    out = np.zeros(len(classes), dtype=np.uint8)
    if val_fraction <= 0 or len(classes) == 0:
        return out
    rng = np.random.default_rng(seed)
    for value in np.unique(classes):
        idx = np.flatnonzero(classes == value)
        if len(idx) < 2:
            continue
        idx = idx[rng.permutation(len(idx))]
        total = areas[idx].sum()
        taken = 0.0
        chosen = []
        for i in idx:
            if taken >= val_fraction * total and chosen:
                break
            # do not overshoot by more than half a polygon's area
            if chosen and taken + areas[i] / 2 > val_fraction * total:
                break
            chosen.append(i)
            taken += areas[i]
        if len(chosen) == len(idx):
            chosen = chosen[:-1]
        out[chosen] = VAL
    return out


def split_blocks(n_block_rows: int, n_block_cols: int, val_fraction: float, seed: int) -> np.ndarray:
    """Assign each block of a block grid to train (0) or validation (1), seeded.

    Exactly ``round(val_fraction * n)`` blocks go to validation (at least one when
    ``val_fraction > 0`` and there are two blocks or more).
    """
    n = n_block_rows * n_block_cols
    out = np.zeros(n, dtype=np.uint8)
    if val_fraction > 0 and n >= 2:
        k = min(n - 1, max(1, round(val_fraction * n)))
        out[np.random.default_rng(seed).choice(n, size=k, replace=False)] = VAL
    return out.reshape(n_block_rows, n_block_cols)


def block_split_window(block_split: np.ndarray, block_size: int, row_off: int, col_off: int, height: int, width: int):
    """The per-pixel split of a window, from a block grid's split."""
    rows = (np.arange(row_off, row_off + height) // block_size).clip(max=block_split.shape[0] - 1)
    cols = (np.arange(col_off, col_off + width) // block_size).clip(max=block_split.shape[1] - 1)
    return block_split[rows[:, None], cols[None, :]]


def split_random(n: int, val_fraction: float, seed: int) -> np.ndarray:
    """Assign ``n`` chips at random (seeded); leaky, kept for comparison with honest splits."""
    out = np.zeros(n, dtype=np.uint8)
    if val_fraction > 0 and n >= 2:
        k = min(n - 1, max(1, round(val_fraction * n)))
        out[np.random.default_rng(seed).choice(n, size=k, replace=False)] = VAL
    return out
