"""Spatially honest train/validation splits.

Units of the split are whole label polygons (cut into parts where whole polygons cannot
hold out about the requested fraction), square pixel blocks, or (for comparison only)
whole chips. Validation units never contribute a label pixel to a training chip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

TRAIN = 0
VAL = 1
SPLIT_NAMES = ("train", "val")

#: Training keeps at least this share of every class (unless val_fraction asks for more).
MIN_TRAIN_SHARE = 0.5


def split_tolerance(val_fraction: float) -> float:
    """How far (absolute) a class's held-out fraction may stray from ``val_fraction`` before a split acts."""
    return max(0.05, val_fraction / 4)


def max_held_fraction(val_fraction: float) -> float:
    """The largest share of a class that may be held out: training keeps at least about half."""
    return max(1 - MIN_TRAIN_SHARE, val_fraction + split_tolerance(val_fraction))


# ----------------------------------------------------------------------------- choosing units


def _objective(held: np.ndarray, totals: np.ndarray, f: float, cap: float) -> np.ndarray:
    """Squared misses of the held-out fraction, per class and overall; ``held`` is (..., k)."""
    present = totals > 0
    frac = held[..., present] / totals[present]
    overall = held[..., present].sum(-1) / totals[present].sum() - f
    over = np.clip(frac - cap, 0, None)
    return ((frac - f) ** 2).mean(-1) + overall**2 + 100 * (over**2).sum(-1)


def choose_units(
    counts: np.ndarray, val_fraction: float, seed: int, *, both_sides: bool = False, hard_cap: bool = False
) -> np.ndarray:
    """Pick units to hold out so that every class loses about ``val_fraction`` of its pixels.

    ``counts`` is (n_units, n_classes): the labelled pixels (or area) of each class in each
    unit. The pick starts from a seeded random order (the shortest prefix nearest the
    target), then flips and swaps units while that brings every class's held-out fraction
    nearer ``val_fraction``. At least one labelled unit always stays in training; with
    ``both_sides`` (and two units or more) at least one goes to validation; with
    ``hard_cap`` no class loses more than :func:`max_held_fraction`. Returns a bool mask.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim == 1:
        counts = counts[:, None]
    n = len(counts)
    val = np.zeros(n, dtype=bool)
    weight = counts.sum(1)
    labelled = weight > 0
    if val_fraction <= 0 or labelled.sum() < 2:
        return val
    totals = counts.sum(0)
    cap = max_held_fraction(val_fraction)
    grand = totals.sum()
    order = np.random.default_rng(seed).permutation(n)
    order = order[labelled[order]]
    cum = np.concatenate([[0.0], np.cumsum(weight[order])])
    m = int(np.argmin(np.abs(cum - val_fraction * grand)))
    if both_sides:
        m = max(m, 1)
    m = min(m, len(order) - 1)
    val[order[:m]] = True

    def score(held, n_val, held_total):
        j = _objective(held, totals, val_fraction, cap)
        bad = held_total >= grand * (1 - 1e-12)  # no labelled pixel left for training
        if both_sides:
            bad = bad | (n_val < 1)
        if hard_cap:
            present = totals > 0
            bad = bad | (held[..., present] > cap * totals[present] * (1 + 1e-9)).any(-1)
        return np.where(bad, np.inf, j)

    held = counts[val].sum(0)
    current = float(score(held, val.sum(), held.sum()))
    if not np.isfinite(current):  # the random start breaks a rule: start from the smallest pick allowed
        val[:] = False
        if both_sides:
            val[np.flatnonzero(labelled)[np.argmin(weight[labelled])]] = True
        held = counts[val].sum(0)
        current = float(score(held, val.sum(), held.sum()))
    idx = np.flatnonzero(labelled)
    for _ in range(200):  # single flips
        sign = np.where(val[idx], -1.0, 1.0)
        cand = held[None, :] + sign[:, None] * counts[idx]
        s = score(cand, val.sum() + sign, cand.sum(1))
        best = int(np.argmin(s))
        if not s[best] < current - 1e-15:
            break
        val[idx[best]] = ~val[idx[best]]
        held, current = cand[best], float(s[best])
    if len(idx) <= 300:  # swaps, for the few-unit cases where single flips get stuck
        for _ in range(100):
            vi, ti = idx[val[idx]], idx[~val[idx]]
            if not len(vi) or not len(ti):
                break
            delta = counts[ti][None, :, :] - counts[vi][:, None, :]
            cand = held[None, None, :] + delta
            s = score(cand, np.full(cand.shape[:2], val.sum()), cand.sum(-1))
            a, b = np.unravel_index(int(np.argmin(s)), s.shape)
            if not s[a, b] < current - 1e-15:
                break
            val[vi[a]], val[ti[b]] = False, True
            held, current = cand[a, b], float(s[a, b])
    return val


def held_out_fractions(counts: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Per class, the held-out fraction of its pixels (NaN for a class with none)."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim == 1:
        counts = counts[:, None]
    totals = counts.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts[np.asarray(val, bool)].sum(0) / totals, np.nan)


# ----------------------------------------------------------------------------- polygons


def split_polygons(classes: np.ndarray, areas: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Assign each whole polygon to train (0) or validation (1), class by class.

    Within each class the polygons held out are those whose area comes nearest
    ``val_fraction`` of the class's area (seeded), without ever holding out more than
    :func:`max_held_fraction` of it. A class with a single polygon stays in training (use
    :func:`split_polygon_geometries` to cut it); a class with two or more always keeps at
    least one polygon on each side when ``val_fraction > 0``. Zero-area features (points,
    lines) count one each when their whole class has no area.
    """
    classes = np.asarray(classes)
    areas = np.asarray(areas, dtype=float)
    out = np.zeros(len(classes), dtype=np.uint8)
    if val_fraction <= 0 or len(classes) == 0:
        return out
    for k, value in enumerate(np.unique(classes)):
        idx = np.flatnonzero(classes == value)
        if len(idx) < 2:
            continue
        w = areas[idx] if areas[idx].sum() > 0 else np.ones(len(idx))
        w = np.where(w > 0, w, 1e-9 * w.sum())  # a zero-area unit can still be held out
        val = choose_units(w, val_fraction, seed + 7919 * k, both_sides=True, hard_cap=True)
        out[idx[val]] = VAL
    return out


def _polygonal(geom):
    """The polygonal parts of a geometry (a cut may leave slivers of lines or points)."""
    parts = [p for p in shapely.get_parts(geom) if shapely.get_type_id(p) == 3 and not p.is_empty]
    if not parts:
        return shapely.Polygon()
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def cut_by_area(geom, area: float, *, clip=None, side: int = 0, snap=None, tolerance: float | None = None):
    """Cut ``geom`` across its longer axis into ``(piece, rest)`` with ``area(piece ∩ clip) ≈ area``.

    The cut line is perpendicular to the longer side of the bounding box of ``geom ∩ clip``;
    ``side`` 0 takes the piece from the low end (west or south), 1 from the high end. With
    ``snap = (x0, dx, y0, dy)`` (a north-up grid's origin and pixel size) the cut is moved
    to the pixel edge that comes nearest ``area``, so that every pixel lies wholly on one
    side and the parts are what the rasteriser burns, unless that leaves a part empty or
    misses ``area`` by more than ``tolerance`` (default: no limit). Piece and rest
    partition ``geom``.
    """
    target = geom if clip is None else shapely.intersection(geom, clip)
    whole = shapely.area(target)
    if whole <= 0 or area <= 0:
        return shapely.Polygon(), geom
    if area >= whole:
        return geom, shapely.Polygon()
    minx, miny, maxx, maxy = target.bounds
    gx0, gy0, gx1, gy1 = geom.bounds
    pad = 1.0 + max(gx1 - gx0, gy1 - gy0)
    axis = 0 if (maxx - minx) >= (maxy - miny) else 1
    lo, hi = (minx, maxx) if axis == 0 else (miny, maxy)

    def box(t):
        a, b = (gx0 - pad, t) if side == 0 else (t, gx1 + pad)
        if axis == 0:
            return shapely.box(a, gy0 - pad, b, gy1 + pad)
        a, b = (gy0 - pad, t) if side == 0 else (t, gy1 + pad)
        return shapely.box(gx0 - pad, a, gx1 + pad, b)

    def piece_area(t):
        return shapely.area(shapely.intersection(target, box(t)))

    a, b = lo, hi
    for _ in range(60):  # piece area grows with t on side 0, shrinks on side 1
        mid = (a + b) / 2
        if (piece_area(mid) < area) == (side == 0):
            a = mid
        else:
            b = mid
    t = (a + b) / 2
    if snap is not None:
        origin, step = (snap[0], snap[1]) if axis == 0 else (snap[2], snap[3])
        k = (t - origin) / step
        best = None
        for kk in (np.floor(k), np.ceil(k)):
            ts = origin + kk * step
            pa = piece_area(ts)
            if 0 < pa < whole and (best is None or abs(pa - area) < abs(best[1] - area)):
                best = (ts, pa)
        if best is not None and (tolerance is None or abs(best[1] - area) <= tolerance):
            t = best[0]
    cutter = box(t)
    return _polygonal(shapely.intersection(geom, cutter)), _polygonal(shapely.difference(geom, cutter))


@dataclass
class PolygonSplit:
    """The units of a polygon split: the input polygons, with any cut polygon replaced by its parts."""

    geometries: np.ndarray  # object array of shapely geometries
    classes: np.ndarray
    split: np.ndarray  # uint8, TRAIN or VAL
    source: np.ndarray  # index of the input polygon each unit comes from
    cut: np.ndarray  # bool: the unit is a part of a cut polygon
    #: one entry per cut polygon: source, class, val_area, train_area (within ``clip``)
    cuts: list[dict] = field(default_factory=list)


def split_polygon_geometries(geoms, classes, val_fraction: float, seed: int, *, clip=None, snap=None) -> PolygonSplit:
    """Polygon split that holds out close to ``val_fraction`` of every class's area.

    Whole polygons are held out where they can come within :func:`split_tolerance` of the
    fraction (see :func:`split_polygons`). Where they cannot (one or two polygons in a
    class, or one polygon far larger than the rest), one polygon of the class is cut in two
    across its longer axis by area (:func:`cut_by_area`): the part that brings the class to
    about ``val_fraction`` goes to the other side, and each part becomes a unit of its own.
    Areas are measured inside ``clip`` (the raster's footprint) when given. Zero-area
    features (points, lines) are never cut.
    """
    geoms = np.asarray(geoms, dtype=object)
    classes = np.asarray(classes)
    areas = shapely.area(geoms if clip is None else shapely.intersection(geoms, clip)).astype(float)
    split = split_polygons(classes, areas, val_fraction, seed)
    n = len(geoms)
    replace: dict[int, tuple] = {}  # source -> ((piece, piece split), (rest, rest split))
    cuts: list[dict] = []
    tol = split_tolerance(val_fraction)
    rng = np.random.default_rng(seed + 104_729)
    if val_fraction > 0:
        for value in np.unique(classes):
            idx = np.flatnonzero(classes == value)
            total = areas[idx].sum()
            if total <= 0:
                continue
            target = val_fraction * total
            held = areas[idx][split[idx] == VAL].sum()
            if abs(held - target) <= tol * total and held > 0:
                continue
            r = target - held
            if r > 0:  # take a piece of the largest training polygon into validation
                pool = idx[split[idx] == TRAIN]
                i = int(pool[np.argmax(areas[pool])])
                moves_to = VAL
            else:  # give a piece of the smallest validation polygon larger than the excess back to training
                pool = idx[(split[idx] == VAL) & (areas[idx] > -r)]
                if not len(pool):
                    continue
                i = int(pool[np.argmin(areas[pool])])
                moves_to = TRAIN
            stays = split[i]
            side = int(rng.integers(2))
            piece, rest = cut_by_area(geoms[i], abs(r), clip=clip, side=side, snap=snap)
            if snap is not None and not piece.is_empty:  # on tiny polygons a pixel edge can overshoot
                moved = float(shapely.area(piece if clip is None else shapely.intersection(piece, clip)))
                after = held + (moved if moves_to == VAL else -moved)
                if abs(after - target) >= abs(r) or after > max_held_fraction(val_fraction) * total:
                    piece, rest = cut_by_area(geoms[i], abs(r), clip=clip, side=side)
            if piece.is_empty or rest.is_empty:
                if r > 0 and rest.is_empty:
                    split[i] = VAL
                continue
            replace[i] = ((piece, moves_to), (rest, stays))
            part_area = lambda g: float(shapely.area(g if clip is None else shapely.intersection(g, clip)))  # noqa: E731
            val_part, train_part = (piece, rest) if moves_to == VAL else (rest, piece)
            cuts.append({"source": i, "class": value.item() if hasattr(value, "item") else value,
                         "val_area": part_area(val_part), "train_area": part_area(train_part)})  # fmt: skip
    out_geoms, out_cls, out_split, out_src, out_cut = [], [], [], [], []
    for i in range(n):
        parts = replace.get(i, ((geoms[i], split[i]),))
        for g, s in parts:
            out_geoms.append(g)
            out_cls.append(classes[i])
            out_split.append(s)
            out_src.append(i)
            out_cut.append(i in replace)
    geometries = np.empty(len(out_geoms), dtype=object)
    geometries[:] = out_geoms
    return PolygonSplit(
        geometries,
        np.asarray(out_cls, dtype=classes.dtype) if n else classes.copy(),
        np.asarray(out_split, dtype=np.uint8),
        np.asarray(out_src, dtype=np.int64),
        np.asarray(out_cut, dtype=bool),
        cuts,
    )


# ----------------------------------------------------------------------------- blocks


def split_blocks(
    n_block_rows: int,
    n_block_cols: int,
    val_fraction: float,
    seed: int,
    ids: np.ndarray | None = None,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Assign each block of a block grid to train (0) or validation (1), seeded.

    Without ``counts``: exactly ``round(val_fraction * n)`` blocks go to validation (at
    least one when ``val_fraction > 0`` and there are two blocks or more).

    With ``ids`` (flat indices of the blocks holding labels) and ``counts`` (their
    labelled pixels per class, shape (len(ids), n_classes)) the labelled blocks are chosen
    by :func:`choose_units`, so that about ``val_fraction`` of every class's labelled pixels
    is held out and at least one labelled block stays in training; blocks without labels
    (which only matter for chips with no label) go to validation at random with
    probability ``val_fraction``. No class loses more than :func:`max_held_fraction`.
    """
    n = n_block_rows * n_block_cols
    out = np.zeros(n, dtype=np.uint8)
    if counts is None:
        if val_fraction > 0 and n >= 2:
            k = min(n - 1, max(1, round(val_fraction * n)))
            out[np.random.default_rng(seed).choice(n, size=k, replace=False)] = VAL
        return out.reshape(n_block_rows, n_block_cols)
    if val_fraction > 0:
        rng = np.random.default_rng(seed + 1)
        out[rng.random(n) < val_fraction] = VAL
        ids = np.asarray(ids, dtype=np.int64)
        out[ids] = np.where(choose_units(counts, val_fraction, seed, hard_cap=True), VAL, TRAIN)
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
