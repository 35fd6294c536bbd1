"""The split of a label source: the split method, and the blocks split.

A blocks split holds out square spatial blocks chosen by their labelled pixel counts, so that
about ``val_fraction`` of each class is held out, counting only where chips can go (inside the mask).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rasterio.features import rasterize
from rasterio.windows import Window

from terralearn.config import UNLABELLED
from terralearn.errors import ConfigError
from terralearn.geo.grid import Grid, bounds_intersection, window_of_bounds
from terralearn.geo.split import held_out_fractions, split_blocks, split_tolerance
from terralearn.geo.tiling import block_windows, tile_starts
from terralearn.io.inputs import Inputs

#: A block split should spread the labelled area over at least this many blocks.
MIN_LABELLED_BLOCKS = 10
#: Above this many pixels the chip-eligible area of a mask is approximated by the mask itself.
_EXACT_MASK_PIXELS = 2**24


def _box_sums(values: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum over every h x w window of ``values`` (by its top-left pixel); shape (H-h+1, W-w+1)."""
    sat = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.int32)
    np.cumsum(np.cumsum(values, axis=0, dtype=np.int32), axis=1, out=sat[1:, 1:])
    return sat[h:, w:] - sat[:-h, w:] - sat[h:, :-w] + sat[:-h, :-w]


def chip_area(inputs: Inputs):
    """Where chips can be: ``(window, eligible)``, the pixels some chip will cover.

    Without a mask every pixel can be in a chip: ``(None, None)``. With a mask, chips lie
    wholly inside it: ``window`` is the mask's extent on the grid (None if it misses the
    raster) and ``eligible(win)`` the bool pixels of ``win`` covered by a tile inside the
    mask (at the config's stride, or every tile position when it is None), or simply inside
    the mask when the mask's extent is too large to work out exactly.
    """
    if inputs.mask is None:
        return None, None
    grid = inputs.grid
    cfg = inputs.config
    geom = inputs.mask_geometry()
    b = None if geom.is_empty else bounds_intersection(tuple(geom.bounds), grid.bounds)
    area = None if b is None else window_of_bounds(grid, b)
    if area is None:
        return None, lambda win: np.zeros((int(win.height), int(win.width)), bool)

    def burn(win):
        return rasterize([(geom, 1)], out_shape=(int(win.height), int(win.width)),
                         transform=grid.window_transform(win), fill=0, dtype="uint8").astype(bool)  # fmt: skip

    h, w = int(area.height), int(area.width)
    tx, ty = cfg.tile_size_x, cfg.tile_size_y
    if h * w > _EXACT_MASK_PIXELS:
        return area, burn
    r0, c0 = int(area.row_off), int(area.col_off)
    eligible = np.zeros((h, w), bool)
    if h >= ty and w >= tx and tx <= grid.width and ty <= grid.height:
        inside = burn(area)
        full = _box_sums(inside, ty, tx) == tx * ty  # tiles (by top-left pixel) wholly in the mask
        sx, sy = cfg.stride or (1, 1)
        rows = tile_starts(grid.height, ty, sy) - r0
        cols = tile_starts(grid.width, tx, sx) - c0
        rows = rows[(rows >= 0) & (rows <= h - ty)]
        cols = cols[(cols >= 0) & (cols <= w - tx)]
        origin = np.zeros((h + ty - 1, w + tx - 1), bool)  # padded so the window sums cover every pixel
        origin[(rows + ty - 1)[:, None], (cols + tx - 1)[None, :]] = full[rows[:, None], cols[None, :]]
        eligible = _box_sums(origin, ty, tx) > 0

    def lookup(win):
        out = np.zeros((int(win.height), int(win.width)), bool)
        ra, ca = int(win.row_off) - r0, int(win.col_off) - c0
        rs, cs = max(ra, 0), max(ca, 0)
        re_, ce = min(ra + int(win.height), h), min(ca + int(win.width), w)
        if re_ > rs and ce > cs:
            out[rs - ra : re_ - ra, cs - ca : ce - ca] = eligible[rs:re_, cs:ce]
        return out

    return area, lookup


def _intersect_windows(a: Window | None, b: Window | None) -> Window | None:
    if a is None or b is None:
        return a if b is None else b
    c0, r0 = max(a.col_off, b.col_off), max(a.row_off, b.row_off)
    c1, r1 = min(a.col_off + a.width, b.col_off + b.width), min(a.row_off + a.height, b.row_off + b.height)
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None


def block_counts(labels, windows, sizes: list[int], eligible: Callable | None = None) -> dict[int, tuple]:
    """Labelled pixels per block and class, for several block sizes at once, streaming ``windows``.

    Returns ``{size: (ids, counts)}``: the flat indices of the blocks (on the raster's grid
    of ``size``-pixel blocks) holding labels, and their pixel counts per class.
    """
    grid = labels.grid
    k = len(labels.classes)
    keys: dict[int, list] = {s: [] for s in sizes}
    vals: dict[int, list] = {s: [] for s in sizes}
    for win in windows:
        cls, _, _ = labels.read(win)
        lab = cls != UNLABELLED
        if eligible is not None:
            lab &= eligible(win)
        if not lab.any():
            continue
        rr, cc = np.nonzero(lab)
        rr = rr + int(win.row_off)
        cc = cc + int(win.col_off)
        c = cls[lab].astype(np.int64)
        for s in sizes:
            n_cols = -(-grid.width // s)
            br, bc = rr // s, cc // s
            r0, c0 = int(br.min()), int(bc.min())
            lw = int(bc.max()) - c0 + 1
            local = ((br - r0) * lw + (bc - c0)) * k + c
            n = np.bincount(local)
            nz = np.flatnonzero(n)
            cell, cl = nz // k, nz % k
            gid = (cell // lw + r0) * n_cols + (cell % lw + c0)
            keys[s].append(gid * k + cl)
            vals[s].append(n[nz])
    out = {}
    for s in sizes:
        if not keys[s]:
            out[s] = (np.zeros(0, np.int64), np.zeros((0, k), np.int64))
            continue
        key, inv = np.unique(np.concatenate(keys[s]), return_inverse=True)
        tot = np.bincount(inv, weights=np.concatenate(vals[s])).astype(np.int64)
        ids, pos = np.unique(key // k, return_inverse=True)
        counts = np.zeros((len(ids), k), np.int64)
        np.add.at(counts, (pos, key % k), tot)
        out[s] = (ids, counts)
    return out


def _score_blocks(counts: np.ndarray, val: np.ndarray, val_fraction: float) -> float:
    """The worst miss of the held-out fraction: overall, and for each class with a fair share of the pixels."""
    if not len(counts):
        return float(val_fraction)
    totals = counts.sum(0)
    grand = totals.sum()
    fr = held_out_fractions(counts, val)
    judged = (totals >= max(64, 0.01 * grand)) & ~np.isnan(fr)
    worst = abs(counts[val].sum() / grand - val_fraction) if grand else float(val_fraction)
    if judged.any():
        worst = max(worst, float(np.abs(fr[judged] - val_fraction).max()))
    return float(worst)


def choose_blocks(labels, inputs: Inputs, block_size: int, choose_size: bool) -> None:
    """Set ``labels.block_split`` (and ``block_size``) so that about ``val_fraction`` of each class is held out.

    Blocks are chosen by their labelled pixel counts inside the area chips can cover (the
    mask), never all of them. With ``choose_size`` the block size is halved (down to a
    quarter of a chip, at least 8 px) while the labelled area spans fewer than
    :data:`MIN_LABELLED_BLOCKS` blocks or the held-out fraction misses by more than
    :func:`split_tolerance`.
    """
    grid = inputs.grid
    cfg = inputs.config
    val_fraction, seed = cfg.val_fraction, cfg.seed
    region, eligible = chip_area(inputs)
    area = labels.bounds_window()
    if inputs.mask is not None:  # chips lie inside the mask: count only the labels there
        area = None if region is None or area is None else _intersect_windows(area, region)
    sizes = [block_size]
    if choose_size:
        floor = max(8, min(cfg.tile_size_x, cfg.tile_size_y) // 4)
        while (
            sizes[-1] // 2 >= floor
            and (-(-grid.width // (sizes[-1] // 2))) * (-(-grid.height // (sizes[-1] // 2))) <= 2**24
        ):
            sizes.append(sizes[-1] // 2)
    tol = split_tolerance(val_fraction)
    tried = []

    def evaluate(size, ids, counts):
        n_rows, n_cols = -(-grid.height // size), -(-grid.width // size)
        blocks = split_blocks(n_rows, n_cols, val_fraction, seed, ids, counts)
        val = blocks.ravel()[ids] == 1 if len(ids) else np.zeros(0, bool)
        score = _score_blocks(counts, val, val_fraction)
        fr = held_out_fractions(counts, val) if len(ids) else np.full(counts.shape[1], np.nan)
        tried.append({"block_size": size, "labelled_blocks": len(ids), "held_out_blocks": int(val.sum()),
                      "miss": score, "fractions": [None if np.isnan(x) else float(x) for x in fr]})  # fmt: skip
        ok = len(ids) >= MIN_LABELLED_BLOCKS and score <= tol
        return ok, score, blocks

    if area is None or val_fraction <= 0:
        labels.block_split = block_grid(grid, block_size, val_fraction, seed)
        labels.block_size = block_size
        labels.split_info = {"requested_block_size": block_size, "block_size": block_size, "tried": []}
        return
    first = block_counts(labels, windows_in(area), [block_size], eligible)[block_size]
    ok, score, blocks = evaluate(block_size, *first)
    # ranked by: enough labelled blocks, then the smaller miss (a larger size unless clearly worse)
    best = (len(first[0]) < MIN_LABELLED_BLOCKS, score, block_size, blocks)
    if not ok and len(sizes) > 1 and len(first[0]) * block_size**2 <= 2**26:
        n_cols = -(-grid.width // block_size)
        wins = [_intersect_windows(Window((i % n_cols) * block_size, (i // n_cols) * block_size, block_size,
                                          block_size), area) for i in first[0]]  # fmt: skip
        rest = block_counts(labels, [w for w in wins if w is not None], sizes[1:], eligible)
        for s in sizes[1:]:
            ok, score, blocks = evaluate(s, *rest[s])
            few = len(rest[s][0]) < MIN_LABELLED_BLOCKS
            if ok or (few, score) < (best[0], best[1] - 1e-3):
                best = (few, score, s, blocks)
            if ok:
                break
    best = best[1:]
    labels.block_split, labels.block_size = best[2], best[1]
    chosen = next(t for t in tried if t["block_size"] == best[1])
    labels.split_info = {"requested_block_size": block_size, "block_size": best[1], "tried": tried, **chosen}


def block_grid(grid: Grid, block_size: int, val_fraction: float, seed: int) -> np.ndarray:
    n_rows = -(-grid.height // block_size)
    n_cols = -(-grid.width // block_size)
    return split_blocks(n_rows, n_cols, val_fraction, seed)


def windows_in(area: Window, block: int = 1024):
    for win in block_windows(int(area.width), int(area.height), block):
        yield Window(win.col_off + area.col_off, win.row_off + area.row_off, win.width, win.height)


def resolve_split(split: str, label_kind: str, background: bool) -> str:
    if split == "auto":
        return "polygons" if label_kind == "vector" and not background else "blocks"
    if split == "polygons" and label_kind == "raster":
        raise ConfigError(
            "split='polygons' needs vector labels; the labels are a classified raster.",
            "Use --split blocks (spatial blocks held out), the default for raster labels.",
        )
    if split == "polygons" and background:
        raise ConfigError(
            "split='polygons' cannot hold out the background class, which has no polygons.",
            "Use --split blocks with --background-class.",
        )
    return split
