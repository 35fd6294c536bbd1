"""Axis-aligned box maths on numpy arrays: the one box type of TerraLearn's detection code.

A set of boxes is a float64 array of shape (N, 4) in ``xyxy`` order: ``(x0, y0, x1, y1)`` with
``x0 <= x1`` and ``y0 <= y1``. In pixel space x is the column and y the row (continuous
coordinates: pixel (r, c) covers ``[c, c + 1) x [r, r + 1)``); in map space a box is
``(left, bottom, right, top)``, the order of rasterio's bounds. Other box formats (xywh,
normalised centres, 8-point polygons) exist only at the edges, in the readers and writers.

Everything here is pure maths (numpy, shapely, affine): no file access, and torch is only
imported inside :func:`nms`, so the export and evaluation code paths stay torch-free.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import shapely
from affine import Affine
from rasterio.windows import Window

Metric = Literal["iou", "ios"]
METRICS: tuple[str, ...] = ("iou", "ios")


def as_boxes(boxes) -> np.ndarray:
    """``boxes`` as a float64 (N, 4) array; an empty input becomes (0, 4).

    Refuses any other shape and non-finite values (NaN would silently match nothing).
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"box {bad} is not finite: {arr[bad].tolist()}")
    return arr


def box_areas(boxes) -> np.ndarray:
    """Area of each box (zero for degenerate or inverted boxes, never negative)."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def window_bounds_xyxy(window) -> tuple[float, float, float, float]:
    """A rasterio ``Window`` (pixels) or an ``(x0, y0, x1, y1)`` tuple as xyxy floats."""
    if isinstance(window, Window):
        return (
            float(window.col_off),
            float(window.row_off),
            float(window.col_off + window.width),
            float(window.row_off + window.height),
        )
    x0, y0, x1, y1 = (float(v) for v in window)
    return (x0, y0, x1, y1)


# --- pixel <-> map -------------------------------------------------------------------------


def _envelope_of_corners(boxes: np.ndarray, t: Affine) -> np.ndarray:
    """Transform the four corners of each box by ``t`` and return their axis-aligned envelope.

    The arithmetic is ``x * a + y * b + c`` exactly as ``Affine @ (x, y)`` does it, so a frontier
    computed with ``transform @ (0, row)`` compares bit for bit with the boxes (see merge_boxes).
    """
    xs = boxes[:, [0, 2, 2, 0]]
    ys = boxes[:, [1, 1, 3, 3]]
    mx = xs * t.a + ys * t.b + t.c
    my = xs * t.d + ys * t.e + t.f
    return np.stack([mx.min(axis=1), my.min(axis=1), mx.max(axis=1), my.max(axis=1)], axis=1)


def pixel_to_map(boxes, transform: Affine) -> np.ndarray:
    """Pixel boxes (col/row) to map boxes (left, bottom, right, top) through ``transform``.

    Works for north-up, south-up and mirrored grids (the envelope sorts the corners); for a
    rotated grid the result is the envelope of the rotated box, which is larger than the box.
    """
    return _envelope_of_corners(as_boxes(boxes), transform)


def map_to_pixel(boxes, transform: Affine) -> np.ndarray:
    """Map boxes (left, bottom, right, top) to pixel boxes (col0, row0, col1, row1).

    The inverse of :func:`pixel_to_map` for grids without rotation; no rounding is done, so
    callers decide how to snap to whole pixels.
    """
    return _envelope_of_corners(as_boxes(boxes), ~transform)


# --- shapely -------------------------------------------------------------------------------


def polygons_to_boxes(geoms) -> np.ndarray:
    """Envelope boxes of shapely geometries (any type); refuses empty or missing geometries."""
    arr = np.asarray(geoms, dtype=object).reshape(-1)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    missing = shapely.is_missing(arr) | shapely.is_empty(arr)
    if missing.any():
        bad = np.flatnonzero(missing)[:5].tolist()
        raise ValueError(f"geometries {bad} are empty or missing and have no box")
    return shapely.bounds(arr).astype(np.float64)


def boxes_to_polygons(boxes) -> np.ndarray:
    """Boxes as an object array of shapely rectangles (vectorised with ``shapely.box``)."""
    b = as_boxes(boxes)
    return shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])


# --- overlaps ------------------------------------------------------------------------------


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of broadcastable box arrays ``a[..., 4]`` and ``b[..., 4]``."""
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _ratio(inter: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """``inter / denom`` with 0 where the denominator is 0 (degenerate boxes overlap nothing)."""
    out = np.zeros_like(inter)
    np.divide(inter, denom, out=out, where=denom > 0)
    return out


def overlap(a, b, metric: Metric = "iou") -> np.ndarray:
    """Element-wise overlap of box ``a[i]`` with box ``b[i]`` (both (N, 4)) under ``metric``.

    ``iou`` is intersection over union; ``ios`` is intersection over the smaller box's area,
    which is 1 when one box lies inside the other (the duplicate a seam leaves when a tile sees
    only part of an object).
    """
    a, b = as_boxes(a), as_boxes(b)
    if len(a) != len(b):
        raise ValueError(f"overlap needs as many boxes in a ({len(a)}) as in b ({len(b)})")
    return _overlap(a, b, box_areas(a), box_areas(b), metric)


def _overlap(a, b, area_a, area_b, metric: str) -> np.ndarray:
    inter = _intersections(a, b)
    if metric == "iou":
        return _ratio(inter, area_a + area_b - inter)
    if metric == "ios":
        return _ratio(inter, np.minimum(area_a, area_b))
    raise ValueError(f"unknown overlap metric {metric!r}; choose from {list(METRICS)}")


def pairwise_overlap(a, b, metric: Metric = "iou") -> np.ndarray:
    """(len(a), len(b)) matrix of overlaps under ``metric``; memory is N x M floats."""
    a, b = as_boxes(a), as_boxes(b)
    return _overlap(a[:, None, :], b[None, :, :], box_areas(a)[:, None], box_areas(b)[None, :], metric)


def pairwise_iou(a, b) -> np.ndarray:
    """(len(a), len(b)) intersection-over-union matrix."""
    return pairwise_overlap(a, b, "iou")


def pairwise_ios(a, b) -> np.ndarray:
    """(len(a), len(b)) intersection-over-smaller-area matrix."""
    return pairwise_overlap(a, b, "ios")


# --- windows (chips) -----------------------------------------------------------------------


def clip_boxes(boxes, window) -> np.ndarray:
    """Boxes clipped to ``window`` (a ``Window`` or xyxy bounds); boxes outside become degenerate."""
    b = as_boxes(boxes)
    x0, y0, x1, y1 = window_bounds_xyxy(window)
    out = np.empty_like(b)
    out[:, [0, 2]] = np.clip(b[:, [0, 2]], x0, x1)
    out[:, [1, 3]] = np.clip(b[:, [1, 3]], y0, y1)
    return out


def visible_fraction(boxes, window) -> np.ndarray:
    """Fraction of each box's area inside ``window``, in [0, 1].

    A degenerate (zero-area) box counts as fully visible when it lies within the window
    (edges included) and as invisible otherwise, so points and lines are not lost at random.
    """
    b = as_boxes(boxes)
    area = box_areas(b)
    frac = _ratio(box_areas(clip_boxes(b, window)), area)
    x0, y0, x1, y1 = window_bounds_xyxy(window)
    inside = (b[:, 0] >= x0) & (b[:, 1] >= y0) & (b[:, 2] <= x1) & (b[:, 3] <= y1)
    return np.where(area > 0, frac, inside.astype(np.float64))


def boxes_in_window(boxes, window, min_visible: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The objects a chip holds: ``(indices, local_boxes, truncated)``.

    An object counts in the chip when at least ``min_visible`` of its area is inside the
    window (a sliver at the chip edge teaches the detector nothing but noise). ``local_boxes``
    are clipped and relative to the window's origin (chip pixel coordinates); ``truncated`` is
    True where part of the object lies outside the chip.
    """
    if not 0 < min_visible <= 1:
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible}")
    b = as_boxes(boxes)
    frac = visible_fraction(b, window)
    idx = np.flatnonzero(frac >= min_visible)
    x0, y0, _, _ = window_bounds_xyxy(window)
    local = clip_boxes(b[idx], window) - np.array([x0, y0, x0, y0])
    return idx, local, frac[idx] < 1.0


# --- non-maximum suppression ---------------------------------------------------------------


def nms(boxes, scores, classes=None, iou: float = 0.5, class_agnostic: bool = False) -> np.ndarray:
    """Indices of the boxes kept by non-maximum suppression, highest score first.

    A box is dropped when it overlaps a higher-scoring kept box by IoU > ``iou`` (of the same
    class unless ``class_agnostic`` or ``classes`` is None). Runs ``torchvision.ops.nms`` /
    ``batched_nms`` in float64; torch is imported here only, so importing this module is cheap.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"nms got {len(b)} boxes but {len(s)} scores")
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    import torch
    import torchvision

    tb, ts = torch.from_numpy(np.ascontiguousarray(b)), torch.from_numpy(np.ascontiguousarray(s))
    if classes is None or class_agnostic:
        keep = torchvision.ops.nms(tb, ts, float(iou))
    else:
        c = np.asarray(classes).reshape(-1)
        if len(c) != len(b):
            raise ValueError(f"nms got {len(b)} boxes but {len(c)} classes")
        _, codes = np.unique(c, return_inverse=True)  # any labels (strings too) as integer ids
        keep = torchvision.ops.batched_nms(tb, ts, torch.from_numpy(codes.astype(np.int64)), float(iou))
    return keep.numpy().astype(np.int64)
