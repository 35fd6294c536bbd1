"""Merging the duplicate detections that tile-by-tile detection leaves across tile seams.

Tiles overlap, so an object near a seam is detected two or four times, often as partial boxes.
The methods are those SAHI offers:

- ``nms``: keep the highest-scoring box, drop those that match it (classic suppression);
- ``greedy_nmm``: the highest-scoring box absorbs every still-free box that matches it; the
  group becomes its union envelope with the highest score (a partial box grows back whole);
- ``nmm``: every chain of matches (connected component of the match graph) becomes one box,
  the union envelope, score = max, class = that of the best member.

Two boxes *match* when their overlap under ``metric`` (``iou``, or ``ios``: intersection over the
smaller box, 1 for a partial box inside a whole one) exceeds ``threshold`` and, unless
``class_agnostic``, they have the same class. Merging runs in two passes: (1) the method groups
the raw detections by their matches and merges each group; (2) a merged envelope is larger than
its members and may now match another merged box, so non-maximum suppression over the merged
boxes keeps the better of any such pair. The output therefore never holds a matching pair, and
merging never snowballs through a dense scene (SAHI's repeated merging can join a whole parking
lot), which is also what keeps streaming local.

Streaming (:class:`SeamMerger`). Both passes decompose over *clusters*: detections linked by
matches (raw, or between merged boxes). Tiles arrive in raster row order; once the caller promises
that future boxes lie beyond a frontier along y, a cluster is final when no future box can join it:
none of its raw boxes crosses the frontier and, for the merging methods, none of its merged boxes
lies within reach of a growing envelope (which stays below the far edge of the raw groups that cross
the frontier). Final clusters are merged and handed out at once; only those near the frontier stay
pending. Ties are broken by values, never by input order, so the streaming output equals
:func:`merge_detections` on all detections at once.

Complexity: candidate pairs come from an STRtree query, O(n log n) plus the pairs found; each pass
is linear in detections plus pairs (a Python loop visits only detections that have a match). A
release costs O(P log P) for the P pending detections: about the overlap band of one tile row plus
one object height, however large the raster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely
from affine import Affine
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from terralearn.geo.boxes import METRICS, Metric, as_boxes, box_areas, overlap

Method = Literal["nms", "nmm", "greedy_nmm"]
METHODS: tuple[str, ...] = ("nms", "nmm", "greedy_nmm")


@dataclass(frozen=True)
class Detections:
    """Boxes (N, 4) xyxy float64, scores (N,) float64 and integer classes (N,) int64.

    Unpacks as ``boxes, scores, classes = detections``; ``len()`` is the number of detections.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.boxes, self.scores, self.classes))

    @staticmethod
    def of(boxes, scores, classes=None) -> Detections:
        """Validated arrays; ``classes`` None means one class (0)."""
        b = as_boxes(boxes)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        c = np.zeros(len(b), np.int64) if classes is None else np.asarray(classes).reshape(-1).astype(np.int64)
        if not len(b) == len(s) == len(c):
            raise ValueError(f"got {len(b)} boxes, {len(s)} scores and {len(c)} classes; they must be as many")
        return Detections(b, s, c)

    def take(self, idx) -> Detections:
        return Detections(self.boxes[idx], self.scores[idx], self.classes[idx])

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        if not parts:
            return Detections.of(np.zeros((0, 4)), np.zeros(0))
        return Detections(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))


def _check_settings(method: str, metric: str, threshold: float) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; choose from {list(METHODS)}")
    if metric not in METRICS:
        raise ValueError(f"unknown match metric {metric!r}; choose from {list(METRICS)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"match threshold must be in [0, 1], got {threshold}")


def _overlapping_pairs(boxes: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of boxes with the same key whose intersection has positive area.

    An STRtree query without predicate returns the pairs whose envelopes intersect, which for
    rectangles is the exact test (edges touching included, filtered out here).
    """
    solid = np.flatnonzero(box_areas(boxes) > 0)  # degenerate boxes overlap nothing
    if len(solid) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    b = boxes[solid]
    geoms = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
    left, right = shapely.STRtree(geoms).query(geoms)
    keep = left < right
    i, j = solid[left[keep]], solid[right[keep]]
    bi, bj = boxes[i], boxes[j]
    positive = (np.minimum(bi[:, 2], bj[:, 2]) > np.maximum(bi[:, 0], bj[:, 0])) & (
        np.minimum(bi[:, 3], bj[:, 3]) > np.maximum(bi[:, 1], bj[:, 1])
    )
    same = keys[i] == keys[j]
    return i[positive & same], j[positive & same]


def _match_pairs(d: Detections, metric: str, threshold: float, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) that match: same key and overlap under ``metric`` above ``threshold``."""
    i, j = _overlapping_pairs(d.boxes, keys)
    m = overlap(d.boxes[i], d.boxes[j], metric) > threshold
    return i[m], j[m]


def _rank_order(d: Detections) -> np.ndarray:
    """Indices from best to worst: score descending, ties broken by box then class.

    The order depends on the values only, never on input order, so merging a cluster alone
    gives exactly what merging it among all detections gives.
    """
    b = d.boxes
    return np.lexsort((d.classes, b[:, 3], b[:, 2], b[:, 1], b[:, 0], -d.scores))


def _neighbours(n: int, i: np.ndarray, j: np.ndarray):
    """Symmetric adjacency as CSR (``indptr``, ``indices``) for the n detections."""
    g = coo_matrix((np.ones(2 * len(i), np.int8), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    return g.indptr, g.indices


def _groups_to_detections(d: Detections, inv: np.ndarray, order: np.ndarray) -> Detections:
    """Each group (ids 0..k-1 per detection) as its union envelope, max score and the best member's class."""
    k = int(inv.max()) + 1 if len(inv) else 0
    boxes = np.empty((k, 4))
    boxes[:, :2] = np.inf
    boxes[:, 2:] = -np.inf
    np.minimum.at(boxes[:, 0], inv, d.boxes[:, 0])
    np.minimum.at(boxes[:, 1], inv, d.boxes[:, 1])
    np.maximum.at(boxes[:, 2], inv, d.boxes[:, 2])
    np.maximum.at(boxes[:, 3], inv, d.boxes[:, 3])
    scores = np.full(k, -np.inf)
    np.maximum.at(scores, inv, d.scores)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    best_rank = np.full(k, len(order))
    np.minimum.at(best_rank, inv, rank)
    best = order[best_rank]
    return Detections(boxes, scores, d.classes[best])


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected component id of each of n nodes joined by edges (i, j)."""
    return connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)[1]


def _suppress(d: Detections, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Indices kept by non-maximum suppression over match pairs (i, j), in rank order."""
    n = len(d)
    order = _rank_order(d)
    indptr, indices = _neighbours(n, i, j)
    dropped = np.zeros(n, bool)
    for k in order[np.diff(indptr)[order] > 0]:  # only detections with a match need the Python loop
        if not dropped[k]:
            dropped[indices[indptr[k] : indptr[k + 1]]] = True
    return order[~dropped[order]]


def _group(d: Detections, method: str, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, Detections]:
    """Pass 1: (merged index of each raw detection, the merged detections) for ``method``."""
    n = len(d)
    order = _rank_order(d)
    if method == "nms":
        group = np.arange(n)
    elif method == "nmm":
        group = _components(n, i, j)
    else:  # greedy_nmm: the best free box takes its free matches
        indptr, indices = _neighbours(n, i, j)
        group = np.full(n, -1, np.int64)
        for k in order[np.diff(indptr)[order] > 0]:
            if group[k] < 0:
                group[k] = k
                nb = indices[indptr[k] : indptr[k + 1]]
                group[nb[group[nb] < 0]] = k
        free = group < 0
        group[free] = np.flatnonzero(free)
    _, inv = np.unique(group, return_inverse=True)
    return inv, _groups_to_detections(d, inv, order)


class _Passes:
    """Both passes over a set of raw detections, with what streaming needs to cut clusters."""

    def __init__(self, d: Detections, method: str, metric: str, threshold: float, class_agnostic: bool) -> None:
        self.raw = d
        self.keys = np.zeros(len(d), np.int64) if class_agnostic else d.classes
        self.ri, self.rj = _match_pairs(d, metric, threshold, self.keys)
        self.merged_of, self.merged = _group(d, method, self.ri, self.rj)
        self.merged_keys = np.zeros(len(self.merged), np.int64) if class_agnostic else self.merged.classes
        self.mi, self.mj = _match_pairs(self.merged, metric, threshold, self.merged_keys)

    def result(self) -> Detections:
        return self.merged.take(_suppress(self.merged, self.mi, self.mj))


def _merge(d: Detections, method: str, metric: str, threshold: float, class_agnostic: bool) -> Detections:
    """Both passes over ``d``; the result sorted best first."""
    return _Passes(d, method, metric, threshold, class_agnostic).result()


def merge_detections(
    boxes,
    scores,
    classes=None,
    method: Method = "nms",
    metric: Metric = "iou",
    threshold: float = 0.5,
    class_agnostic: bool = False,
) -> Detections:
    """Merge all detections at once (the reference for :class:`SeamMerger`); best first."""
    _check_settings(method, metric, threshold)
    return _merge(Detections.of(boxes, scores, classes), method, metric, threshold, class_agnostic)


def row_frontier(transform: Affine, row: float) -> float:
    """The map y of pixel row ``row``: the frontier to release after the tiles above that row.

    Computed as ``transform @ (0, row)`` so it compares exactly with boxes from
    :func:`terralearn.geo.boxes.pixel_to_map`. Rotated grids have no such frontier: merge in
    pixel coordinates there (``future_y="higher"``, frontier = the row).
    """
    if transform.b != 0 or transform.d != 0:
        raise ValueError(f"a rotated transform has no row frontier in map y: {tuple(transform)[:6]}")
    return (transform @ (0, row))[1]


class SeamMerger:
    """Streaming merger fed tile by tile in raster row order.

    ``future_y`` says where the tiles still to come lie along y: ``"lower"`` for map boxes of a
    north-up raster (y falls as rows rise), ``"higher"`` for pixel boxes or south-up rasters.
    Call :meth:`add` per tile, :meth:`release` with the frontier once no future box will cross
    it (the next tile row's top edge, see :func:`row_frontier`), and :meth:`finish` at the end;
    both return the detections that became final, already merged.
    """

    def __init__(
        self,
        method: Method = "nms",
        metric: Metric = "iou",
        threshold: float = 0.5,
        class_agnostic: bool = False,
        future_y: Literal["lower", "higher"] = "lower",
    ) -> None:
        _check_settings(method, metric, threshold)
        if future_y not in ("lower", "higher"):
            raise ValueError(f"future_y must be 'lower' or 'higher', got {future_y!r}")
        self.method, self.metric, self.threshold = method, metric, float(threshold)
        self.class_agnostic = class_agnostic
        self._sign = 1.0 if future_y == "lower" else -1.0  # the maths below assumes "lower"
        self._frontier: float | None = None  # in the signed frame: future boxes have max y <= it
        self._parts: list[Detections] = []

    @property
    def pending(self) -> int:
        """How many raw detections wait for their cluster to be final."""
        return sum(len(p) for p in self._parts)

    def add(self, boxes, scores, classes=None) -> None:
        """Queue one tile's detections (same coordinates as the frontier)."""
        d = Detections.of(boxes, scores, classes)
        if len(d) == 0:
            return
        if self._frontier is not None:
            far = d.boxes[:, 3] if self._sign > 0 else -d.boxes[:, 1]
            bad = np.flatnonzero(far > self._frontier)
            if len(bad):
                raise ValueError(
                    f"box {d.boxes[bad[0]].tolist()} crosses the released frontier y = {self._sign * self._frontier}; "
                    "release a frontier only once every later tile lies beyond it"
                )
        self._parts.append(d)

    def release(self, frontier: float) -> Detections:
        """Promise that no future box crosses ``frontier``; return the detections now final."""
        f = self._sign * float(frontier)
        if self._frontier is not None and f > self._frontier:
            raise ValueError(f"the frontier moved back, from y = {self._sign * self._frontier} to y = {frontier}")
        self._frontier = f
        d = Detections.concat(self._parts)
        if len(d) == 0:
            return d
        p = _Passes(d, self.method, self.metric, self.threshold, self.class_agnostic)
        held = self._held(p, f)
        self._parts = [d.take(np.flatnonzero(held))]
        return _merge(d.take(np.flatnonzero(~held)), self.method, self.metric, self.threshold, self.class_agnostic)

    def _held(self, p: _Passes, f: float) -> np.ndarray:
        """Which raw detections must wait: those in a cluster that a future box may still change."""
        n, m = len(p.raw), len(p.merged)
        near, far = (
            (p.raw.boxes[:, 1], p.raw.boxes[:, 3]) if self._sign > 0 else (-p.raw.boxes[:, 3], -p.raw.boxes[:, 1])
        )
        raw_comp = _components(n, p.ri, p.rj)
        crossing = near < f  # a future box may overlap these raw boxes
        open_comp = np.zeros(raw_comp.max() + 1, bool)
        open_comp[raw_comp[crossing]] = True
        is_open = open_comp[raw_comp]
        seed = np.zeros(m, bool)
        seed[p.merged_of[is_open]] = True
        if self.method != "nms":
            # an open group may grow, through future boxes, anywhere along x but never past the far
            # edge of its raw boxes: a merged box of its key nearer than that may be matched later
            _, key_idx = np.unique(np.r_[p.keys, p.merged_keys], return_inverse=True)
            reach = np.full(key_idx.max() + 1, f)
            np.maximum.at(reach, key_idx[:n][is_open], far[is_open])
            m_near = p.merged.boxes[:, 1] if self._sign > 0 else -p.merged.boxes[:, 3]
            seed |= m_near < reach[key_idx[n:]]
        # clusters: merged boxes linked by pass-2 matches. A closed raw component may be split
        # between held and final clusters: its groups stay the same when whole groups leave
        # (one group per component for nmm, single boxes for nms, and a greedy leader's turn
        # comes before all its followers, who are free then whoever else is present)
        cluster = _components(m, p.mi, p.mj)
        held_cluster = np.zeros(cluster.max() + 1, bool)
        held_cluster[cluster[seed]] = True
        return held_cluster[cluster[p.merged_of]]

    def finish(self) -> Detections:
        """Merge and return everything still pending (the end of the raster)."""
        d = Detections.concat(self._parts)
        self._parts = []
        return _merge(d, self.method, self.metric, self.threshold, self.class_agnostic)


def merge_stream(tiles: Iterable[tuple], **settings) -> Iterator[Detections]:
    """Merge ``(boxes, scores, classes, frontier)`` per tile; yield each non-empty final batch.

    ``frontier`` may be None for a tile after which nothing is released (tiles of one row).
    ``settings`` are those of :class:`SeamMerger`.
    """
    merger = SeamMerger(**settings)
    for boxes, scores, classes, frontier in tiles:
        merger.add(boxes, scores, classes)
        if frontier is not None:
            out = merger.release(frontier)
            if len(out):
                yield out
    out = merger.finish()
    if len(out):
        yield out
