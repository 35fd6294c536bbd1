"""Predicting one window of a raster with its halo: the unit of work of whole-raster prediction.

A window's class scores need every tile of the raster's tile grid that touches it; those tiles reach
past the window (its halo). ``WindowReader`` reads the window plus halo strip by strip (one tile row
each), one strip ahead in a thread, normalised into full batches; ``predict_window`` runs the backend on
the batches, blends the tiles (``merge.Mosaic``) and yields the window's scores band by band from the
top, as soon as no later tile covers them. ``classify`` streams the whole raster as one window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from terralearn.geo.blend import hann_weights
from terralearn.geo.tiling import TileGrid
from terralearn.io.raster import RasterStack
from terralearn.predict.backends import Backend
from terralearn.predict.merge import Mosaic


def plan_tiles(height: int, width: int, tile: int, overlap: int | None) -> TileGrid:
    """Tiles of ``tile`` pixels (at most the raster's sides) overlapping by ``overlap`` (default: a quarter)."""
    th, tw = min(tile, height), min(tile, width)
    overlap = tile // 4 if overlap is None else overlap
    sy, sx = max(1, th - min(overlap, th - 1)), max(1, tw - min(overlap, tw - 1))
    return TileGrid(width=width, height=height, tile_x=tw, tile_y=th, stride_x=sx, stride_y=sy)


#: Pixels of tiles per inference batch by default: 32 tiles of 64 px. Small tiles in small batches leave the
#: CPU idle between calls; measured on a U-Net / ResNet-18, 2 cores: 64-px tiles 2.0 us/px in batches of 8,
#: 1.3-1.5 us/px in batches of 32.
BATCH_PIXELS = 2**17


def default_batch(tiles: TileGrid) -> int:
    """Tiles per batch: ``BATCH_PIXELS`` of them, never fewer than 8."""
    return max(8, BATCH_PIXELS // (tiles.tile_x * tiles.tile_y))


def gdal_cache_bytes(stack: RasterStack, tile_height: int) -> int:
    """GDAL's block cache for a streamed pass: the blocks one strip of tiles touches, not 5 % of RAM.

    GDAL's default keeps every decompressed input block up to 5 % of RAM, so memory would grow with the
    raster up to that size; a strip reader needs the blocks under one strip plus the row of blocks that
    the next strip starts in (read again, not decoded again), and the blocks of the map being written.
    rasterio takes GDAL_CACHEMAX in bytes.
    """
    need = stack.strip_cache_bytes(tile_height) + 2 * tile_height * stack.grid.width
    return int(min(2**30, max(16 * 2**20, 1.25 * need)))


class WindowReader:
    """The tiles touching ``window`` (default: the whole raster), read strip by strip in a background thread
    one strip ahead, normalised into batches.

    Batches are full across strips, in row-major order: the tiles a model fed from memory would get.
    Iterating yields, per tile row, ``(valid, batches)``: the strip's (th, read width) validity mask and the
    batches completed by its tiles, each ``(tiles, keys)`` with (B, C, th, tw) float32 tiles and their
    (strip index, column index); the last strip also yields the last, partial batch.
    """

    def __init__(self, stack: RasterStack, tiles: TileGrid, mean: np.ndarray, std: np.ndarray, batch_size: int,
                 window: Window | None = None) -> None:  # fmt: skip
        self.stack, self.tiles, self.th, self.tw = stack, tiles, tiles.tile_y, tiles.tile_x
        self.window = window or Window(0, 0, stack.grid.width, stack.grid.height)
        rows, cols = tiles.row_starts, tiles.col_starts
        top, left = int(self.window.row_off), int(self.window.col_off)
        self.rows = rows[(rows < top + self.window.height) & (rows + self.th > top)]
        cols = cols[(cols < left + self.window.width) & (cols + self.tw > left)]
        self.col0 = int(cols[0])  # the first column read: the window's left edge minus its halo
        self.read_width = int(cols[-1]) + self.tw - self.col0
        self.offsets = (cols - self.col0).tolist()  # tile columns in the strips read
        self.mean, self.std, self.batch_size = mean, std, batch_size
        self.batch, self.keys = None, []  # the batch being filled (only the reader thread touches them)

    def __enter__(self) -> WindowReader:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="strip-reader")
        self.next = self.pool.submit(self._read, 0)  # starts at once
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __iter__(self):
        for i in range(len(self.rows)):
            strip = self.next.result()
            if i + 1 < len(self.rows):
                self.next = self.pool.submit(self._read, i + 1)
            yield strip

    def _read(self, i: int):
        th, tw = self.th, self.tw
        data, valid = self.stack.read(Window(self.col0, int(self.rows[i]), self.read_width, th))
        done = []
        for j, c in enumerate(self.offsets):
            if self.batch is None:
                self.batch = np.empty((self.batch_size, data.shape[0], th, tw), dtype=np.float32)
            tile = self.batch[len(self.keys)]
            np.subtract(data[:, :, c : c + tw], self.mean, out=tile)  # (x - mean) / std in float32
            np.divide(tile, self.std, out=tile)
            inside = valid[:, c : c + tw]
            if not inside.all():
                tile[:, ~inside] = 0.0
            self.keys.append((i, j))
            if len(self.keys) == self.batch_size:
                done.append((self.batch, self.keys))
                self.batch, self.keys = None, []
        if i + 1 == len(self.rows) and self.keys:
            done.append((self.batch[: len(self.keys)], self.keys))
        return valid, done


def _predicted(reader: WindowReader, backend: Backend, valids: dict[int, np.ndarray]):
    """The ``(probabilities, keys)`` of the reader's batches in order; each strip's validity mask goes into
    ``valids`` as it is read.

    A backend with ``parallel`` > 1 (ONNX Runtime) runs that many batches at once, each on its share of the
    cores, while this thread blends the finished ones: small tiles keep a core busier in a batch of their
    own than shared with another core op by op (measured on a U-Net / ResNet-18 with 64-px tiles, 2 cores:
    12 % more tiles per second).
    """
    depth = getattr(backend, "parallel", 1)
    if depth <= 1:
        for i, (valid, batches) in enumerate(reader):
            valids[i] = valid
            for tiles, keys in batches:
                yield backend(tiles), keys
        return
    with ThreadPoolExecutor(depth, thread_name_prefix="predict") as pool:
        pending: deque = deque()
        for i, (valid, batches) in enumerate(reader):
            valids[i] = valid
            for tiles, keys in batches:
                pending.append((pool.submit(backend, tiles), keys))
                if len(pending) > depth:  # every worker busy and one batch waiting: take the oldest
                    future, done = pending.popleft()
                    yield future.result(), done
        while pending:
            future, done = pending.popleft()
            yield future.result(), done


@dataclass
class Scores:
    """Final class scores of a band of a window's rows (views, valid until the next band is asked for)."""

    window: Window  # where the band lies on the raster
    sums: np.ndarray  # (k, h, w) Hann-weighted sums of the class probabilities
    weights: np.ndarray | None  # (h, w) sums of the weights (when asked for): sums / weights = probabilities
    valid: np.ndarray  # (h, w) False where a band is nodata


def predict_window(reader: WindowReader, backend: Backend, n_classes: int, with_weights: bool) -> Iterator[Scores]:
    """The class scores of ``reader``'s window, band by band from the top: read (thread) -> predict in batches
    -> blend -> final rows.

    Strip ``i`` covers the rows ``rows[i] .. rows[i] + th``; once all its tiles are blended, the rows above
    ``rows[i + 1]`` are final: the part of them inside the window is yielded, and they leave the mosaic.
    """
    rows, th, win = reader.rows, reader.th, reader.window
    top, bottom, left = int(win.row_off), int(win.row_off + win.height), int(win.col_off) - reader.col0
    mosaic = Mosaic(n_classes, reader.tiles.stride_y, reader.read_width, hann_weights(th, reader.tw), with_weights,
                    top=int(rows[0]))  # fmt: skip
    finished = 0  # strips whose rows are taken
    blended = [0] * len(rows)  # tiles blended per strip
    valids: dict[int, np.ndarray] = {}  # validity masks of the strips read and not yet taken
    for proba, keys in _predicted(reader, backend, valids):
        for p, (s, j) in zip(proba, keys, strict=True):
            mosaic.add(p, int(rows[s]), reader.offsets[j])
            blended[s] += 1
        while finished < len(rows) and blended[finished] == len(reader.offsets):
            r = mosaic.top
            end = int(rows[finished + 1]) if finished + 1 < len(rows) else int(rows[-1]) + th
            sums, wsum = mosaic.take(end - r)
            ok = valids.pop(finished)
            finished += 1
            a, b = max(r, top), min(end, bottom)
            if a >= b:  # halo rows above or below the window
                continue
            y, x = slice(a - r, b - r), slice(left, left + int(win.width))
            yield Scores(Window(win.col_off, a, win.width, b - a), sums[:, y, x],
                         None if wsum is None else wsum[y, x], ok[y, x])  # fmt: skip
