"""Test-time augmentation views: the flips and 90-degree rotations of tiles, each with its inverse."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

View = Callable[[np.ndarray], np.ndarray]


def dihedral_views(square: bool) -> list[tuple[View, View]]:
    """(transform, inverse) pairs on the last two axes: 8 flips and rotations, or 4 flips for non-square tiles."""
    flips = [(False, False), (False, True), (True, False), (True, True)]

    def flip(rows: bool, cols: bool) -> View:
        axes = tuple(a for a, on in ((-2, rows), (-1, cols)) if on)
        return (lambda a: np.flip(a, axes)) if axes else (lambda a: a)

    views = [(flip(r, c), flip(r, c)) for r, c in flips]
    if square:
        views += [(lambda a, k=k: np.rot90(a, k, axes=(-2, -1)), lambda a, k=k: np.rot90(a, -k, axes=(-2, -1)))
                  for k in (1, 3)]  # fmt: skip
        views += [(lambda a: np.flip(np.rot90(a, 1, axes=(-2, -1)), -1),
                   lambda a: np.rot90(np.flip(a, -1), -1, axes=(-2, -1))),
                  (lambda a: np.flip(np.rot90(a, 1, axes=(-2, -1)), -2),
                   lambda a: np.rot90(np.flip(a, -2), -1, axes=(-2, -1)))]  # fmt: skip
    return views
