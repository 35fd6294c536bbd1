"""Tile pyramids over a raster's pixel grid, for the web app's map viewer.

Zoom ``zmax`` shows the raster at its own resolution: one output pixel per raster pixel.
Each zoom level below halves the resolution, so a tile of ``tile`` output pixels at zoom
``z`` covers ``tile * 2 ** (zmax - z)`` raster pixels per side, and zoom 0 is the whole
raster in one tile. Tiles are numbered from the top-left corner (x to the right, y down),
like web map tiles in a pixel coordinate system (Leaflet's ``CRS.Simple``). The tiles on
the right and bottom edges are partial: they cover only what is left of the raster.

Pure maths on integers and rasterio ``Window``: no file access.
"""

from __future__ import annotations

from rasterio.windows import Window

TILE = 256


def max_zoom(width: int, height: int, tile: int = TILE) -> int:
    """The zoom at which tiles show the raster at full resolution: the smallest z >= 0 with tile * 2**z >= max(w, h)."""
    if width < 1 or height < 1 or tile < 1:
        raise ValueError(f"need width ({width}), height ({height}) and tile ({tile}) >= 1")
    longest = max(width, height)
    z = 0
    while tile << z < longest:
        z += 1
    return z


def tile_span(z: int, zmax: int, tile: int = TILE) -> int:
    """Raster pixels along one side of a tile at zoom ``z`` (``tile`` at ``zmax``, doubling per level below)."""
    if not 0 <= z <= zmax:
        raise ValueError(f"zoom {z} is outside 0..{zmax}")
    return tile << (zmax - z)


def tile_count(z: int, zmax: int, *, width: int, height: int, tile: int = TILE) -> tuple[int, int]:
    """(columns, rows) of tiles at zoom ``z`` needed to cover a ``width`` x ``height`` raster."""
    span = tile_span(z, zmax, tile)
    return -(-width // span), -(-height // span)


def tile_window(z: int, x: int, y: int, zmax: int, *, width: int, height: int, tile: int = TILE) -> Window | None:
    """The raster window that tile (z, x, y) covers, clipped to the raster; None when the tile lies outside it."""
    if z < 0 or z > zmax or x < 0 or y < 0:
        return None
    span = tile_span(z, zmax, tile)
    col, row = x * span, y * span
    if col >= width or row >= height:
        return None
    return Window(col, row, min(span, width - col), min(span, height - row))


def tile_out_shape(window: Window, z: int, zmax: int, tile: int = TILE) -> tuple[int, int]:
    """(rows, cols) in output pixels of a (possibly partial) tile's window: its size divided by 2**(zmax - z), rounded up."""
    factor = 1 << (zmax - z)
    rows = -(-int(window.height) // factor)
    cols = -(-int(window.width) // factor)
    return min(max(rows, 1), tile), min(max(cols, 1), tile)


def fit_shape(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(rows, cols) of a preview at most ``max_size`` pixels on its longer side, keeping the aspect; never enlarged."""
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))
