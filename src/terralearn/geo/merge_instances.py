"""Merging instance polygons across tile seams, pure (shapely geometries in, geometries out).

Tiles overlap, so an object near a seam is predicted by two or four tiles: whole by a tile that contains it, cut
at the edge of one that does not, or cut by every tile when it is larger than the overlap. Box NMS keeps one of
the copies, which leaves half an object wherever no tile saw it whole. Here the copies are compared where they
can be compared, **inside the part of the raster that both tiles saw**:

1. two polygons of the same class from different tiles whose tiles overlap are the same object when their parts
   inside that shared window match: IoU of ``a ∩ w`` and ``b ∩ w`` at least ``match`` (default 0.5);
2. every chain of matches is one object: the union of its polygons, with the area-weighted mean score;
3. what remains goes through NMS on the whole polygons (IoU above ``nms``, the higher score kept), which removes a
   copy that a tile cut so short that its shared part was too small to match.

An object larger than the overlap is cut by every tile, but neighbouring pieces agree inside the overlap, so
their union restores it whole. Candidate pairs come from a shapely STRtree, so the work grows with the number
of nearby pairs, not with the square of the polygons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

__all__ = ["Instances", "merge_instances"]


@dataclass
class Instances:
    """Instance polygons with a score, a class and the window (a box polygon) of the tile that predicted each."""

    polygons: np.ndarray  # shapely geometries (object array)
    scores: np.ndarray
    classes: np.ndarray
    tiles: np.ndarray  # shapely boxes: the footprint of each polygon's tile

    def __len__(self) -> int:
        return len(self.polygons)

    @classmethod
    def empty(cls) -> Instances:
        return cls(np.empty(0, object), np.empty(0, np.float32), np.empty(0, np.int64), np.empty(0, object))

    @classmethod
    def concat(cls, parts: list[Instances]) -> Instances:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("polygons", "scores", "classes",
                                                                                "tiles")))  # fmt: skip

    def take(self, idx) -> Instances:
        idx = np.asarray(idx, np.int64)
        return Instances(self.polygons[idx], self.scores[idx], self.classes[idx], self.tiles[idx])


def _iou(a, b) -> float:
    union = shapely.area(shapely.union(a, b))
    return float(shapely.area(shapely.intersection(a, b)) / union) if union > 0 else 0.0


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def merge_instances(found: Instances, match: float = 0.5, nms: float = 0.5) -> Instances:
    """One polygon per object (see the module documentation); the tile of a merged object is its tiles' union."""
    n = len(found)
    if n == 0:
        return found
    polys = shapely.make_valid(found.polygons)
    tree = shapely.STRtree(polys)
    left, right = tree.query(polys, predicate="intersects")
    parent = list(range(n))
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j or found.classes[i] != found.classes[j] or shapely.equals(found.tiles[i], found.tiles[j]):
            continue
        shared = shapely.intersection(found.tiles[i], found.tiles[j])
        if shapely.area(shared) <= 0:
            continue
        if _iou(shapely.intersection(polys[i], shared), shapely.intersection(polys[j], shared)) >= match:
            a, b = _find(parent, i), _find(parent, j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(_find(parent, i), []).append(i)
    merged_polys, scores, classes, tiles = [], [], [], []
    for members in groups.values():
        areas = shapely.area(polys[members])
        merged_polys.append(polys[members[0]] if len(members) == 1 else shapely.union_all(polys[members]))
        weights = areas if areas.sum() > 0 else np.ones(len(members))
        scores.append(float(np.average(found.scores[members], weights=weights)))
        classes.append(found.classes[members[0]])
        tiles.append(found.tiles[members[0]] if len(members) == 1 else shapely.union_all(found.tiles[members]))
    out = Instances(np.array(merged_polys, object), np.array(scores, np.float32), np.array(classes, np.int64),
                    np.array(tiles, object))  # fmt: skip
    return _nms(out, nms)


def _nms(found: Instances, threshold: float) -> Instances:
    """Drop a polygon that overlaps a better-scoring one of its class by IoU above ``threshold``."""
    order = np.argsort(-found.scores, kind="stable")
    tree = shapely.STRtree(found.polygons)
    kept: set[int] = set()
    dropped = np.zeros(len(found), bool)
    for i in order.tolist():
        if dropped[i]:
            continue
        kept.add(i)
        for j in tree.query(found.polygons[i], predicate="intersects").tolist():
            same = j != i and not dropped[j] and j not in kept and found.classes[j] == found.classes[i]
            if same and _iou(found.polygons[i], found.polygons[j]) > threshold:
                dropped[j] = True
    return found.take(sorted(kept))
