"""The pixel grid of a raster: CRS, affine transform and shape, and the maths on it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window, from_bounds


@dataclass(frozen=True)
class Grid:
    """A north-up or general affine pixel grid."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    @property
    def is_rotated(self) -> bool:
        return self.transform.b != 0 or self.transform.d != 0

    @property
    def is_south_up(self) -> bool:
        return self.transform.e > 0

    @property
    def is_north_up(self) -> bool:
        return not self.is_rotated and self.transform.a > 0 and self.transform.e < 0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the grid's footprint."""
        corners = [self.transform @ (c, r) for c in (0, self.width) for r in (0, self.height)]
        xs = [p[0] for p in corners]
        ys = [p[1] for p in corners]
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def pixel_area(self) -> float:
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs is not None and self.crs.is_geographic)

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def window_bounds(self, window: Window) -> tuple[float, float, float, float]:
        return Grid(self.crs, self.window_transform(window), int(window.width), int(window.height)).bounds

    def same_as(self, other: Grid, tol: float = 1e-6) -> bool:
        """True when both grids share CRS, transform and shape (pixels line up one to one)."""
        return (
            self.width == other.width
            and self.height == other.height
            and self.crs == other.crs
            and self.transform.almost_equals(other.transform, precision=tol * max(self.res))
        )


def bounds_intersection(a, b):
    """Intersection of two (left, bottom, right, top) boxes, or None when they do not overlap."""
    left, bottom = max(a[0], b[0]), max(a[1], b[1])
    right, top = min(a[2], b[2]), min(a[3], b[3])
    if left >= right or bottom >= top:
        return None
    return (left, bottom, right, top)


def window_of_bounds(grid: Grid, bounds) -> Window | None:
    """The integer pixel window of ``grid`` covering ``bounds``, clipped to the grid; None if empty."""
    win = from_bounds(*bounds, transform=grid.transform)
    col0 = max(0, math.floor(win.col_off + 1e-9))
    row0 = max(0, math.floor(win.row_off + 1e-9))
    col1 = min(grid.width, math.ceil(win.col_off + win.width - 1e-9))
    row1 = min(grid.height, math.ceil(win.row_off + win.height - 1e-9))
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def preview_grid(grid: Grid, max_side: int) -> Grid:
    """The grid decimated to at most ``max_side`` pixels on its long side, same extent (never upsampled)."""
    f = max(grid.width, grid.height) / max_side
    if f <= 1:
        return grid
    w, h = max(1, round(grid.width / f)), max(1, round(grid.height / f))
    return Grid(grid.crs, grid.transform @ Affine.scale(grid.width / w, grid.height / h), w, h)


def pixel_window_boxes(transform: Affine, rows, cols, height: int, width: int) -> np.ndarray:
    """Footprints (shapely boxes) of the ``height`` x ``width`` pixel windows starting at (rows, cols)."""
    rows = np.asarray(rows)
    cols = np.asarray(cols)
    x0, y0 = transform @ (cols, rows)
    x1, y1 = transform @ (cols + width, rows + height)
    return shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1))
