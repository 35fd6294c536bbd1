"""Tiling a raster into chips on a stride grid, and grouping chips into read blocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window


def tile_starts(length: int, tile: int, stride: int) -> np.ndarray:
    """Start offsets of tiles of size ``tile`` stepping by ``stride`` along an axis of ``length``.

    Every pixel is covered: when the steps do not end exactly on the edge, one last tile is
    snapped to end at the edge (it overlaps its neighbour a little more, it never hangs over).
    Requires ``1 <= tile <= length`` and ``stride >= 1``.
    """
    if tile < 1 or stride < 1 or tile > length:
        raise ValueError(f"need 1 <= tile ({tile}) <= length ({length}) and stride ({stride}) >= 1")
    starts = np.arange(0, length - tile + 1, stride, dtype=np.int64)
    if starts[-1] + tile < length:
        starts = np.append(starts, length - tile)
    return starts


@dataclass(frozen=True)
class TileGrid:
    """All chip windows of a raster: the product of row starts and column starts."""

    width: int
    height: int
    tile_x: int
    tile_y: int
    stride_x: int
    stride_y: int

    @property
    def col_starts(self) -> np.ndarray:
        return tile_starts(self.width, self.tile_x, self.stride_x)

    @property
    def row_starts(self) -> np.ndarray:
        return tile_starts(self.height, self.tile_y, self.stride_y)

    def __len__(self) -> int:
        return len(self.col_starts) * len(self.row_starts)

    def windows(self) -> Iterator[Window]:
        for r in self.row_starts:
            for c in self.col_starts:
                yield Window(int(c), int(r), self.tile_x, self.tile_y)

    def blocks(self, target: int = 1024) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
        """Group tiles into read blocks of about ``target`` pixels a side.

        Yields ``(block_window, row_starts, col_starts)`` where the starts are of the tiles in
        the block, relative to the raster. Each tile belongs to exactly one block, and the
        block window is the union of its tiles, so one read serves all of them and memory is
        bounded by the block size, whatever the raster size.
        """
        rows = self.row_starts
        cols = self.col_starts
        per_r = max(1, (target - self.tile_y) // self.stride_y + 1)
        per_c = max(1, (target - self.tile_x) // self.stride_x + 1)
        for i in range(0, len(rows), per_r):
            rs = rows[i : i + per_r]
            for j in range(0, len(cols), per_c):
                cs = cols[j : j + per_c]
                win = Window(
                    int(cs[0]), int(rs[0]), int(cs[-1] + self.tile_x - cs[0]), int(rs[-1] + self.tile_y - rs[0])
                )
                yield win, rs, cs


def window_sums(values: np.ndarray, row_offsets: np.ndarray, col_offsets: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Sum of ``values`` over every ``th`` x ``tw`` window starting at each (row, col) offset pair.

    Uses a summed-area table so that all windows of a block cost one cumulative sum.
    ``values`` is 2-D; returns an array of shape (len(row_offsets), len(col_offsets)).
    """
    sat = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(values, axis=0, dtype=np.int64), axis=1, out=sat[1:, 1:])
    r0 = row_offsets[:, None]
    c0 = col_offsets[None, :]
    return sat[r0 + th, c0 + tw] - sat[r0, c0 + tw] - sat[r0 + th, c0] + sat[r0, c0]


def suggest_tile_size(median_polygon_px: float, raster_min_side: int) -> int:
    """A chip size (a power of two between 32 and 512) that fits a few median polygons.

    A chip about four median polygon widths across keeps most of its pixels near labels
    while giving the network context. Never larger than the raster.
    """
    target = max(32.0, min(512.0, 4.0 * max(median_polygon_px, 1.0)))
    size = 2 ** round(np.log2(target))
    size = int(min(max(size, 32), 512))
    while size > raster_min_side and size > 1:
        size //= 2
    return max(size, 1)


def block_windows(width: int, height: int, block: int = 1024) -> Iterator[Window]:
    """Non-overlapping windows of at most ``block`` pixels a side covering a grid exactly once.

    For counting and streaming passes (unlike chip tiles, the last windows are smaller, not
    shifted back, so no pixel is seen twice).
    """
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def central_zones(starts: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` per tile along an axis: the part each tile keeps when the overlaps are shared out.

    The boundary between neighbours is the middle of their overlap, so the zones partition the axis: every
    position belongs to exactly one tile (``lo <= x < hi``). The first tile's zone starts at -inf and the last
    one's ends at +inf (no neighbour shares those sides). An object no larger than the overlap whose centre lies
    in a tile's zone is seen whole by that tile, and a box cut by a tile's edge has its centre outside the zone.
    """
    s = np.asarray(starts, dtype=np.float64)
    mids = (s[1:] + tile + s[:-1]) / 2.0
    return np.r_[-np.inf, mids], np.r_[mids, np.inf]
