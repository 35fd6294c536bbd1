"""Instance maths: U-Net-ID targets, instances back from them by watershed, one polygon per instance."""

from __future__ import annotations

import numpy as np
from affine import Affine

from terralearn.geo.instances import instance_polygons, relabel, unet_id_targets, watershed_instances


def touching_squares() -> np.ndarray:
    """Two 10 x 10 objects side by side (no gap between them) and a 6 x 6 one apart, on 32 x 32 pixels."""
    m = np.zeros((32, 32), np.int32)
    m[4:14, 4:14] = 7
    m[4:14, 14:24] = 9  # touches object 7 along a whole side
    m[20:26, 20:26] = 3
    return m


def test_targets_band_the_outlines_and_erode_the_interiors():
    m = touching_squares()
    obj, border, interior = unet_id_targets(m, border_width=2, interior_erosion=2)
    assert obj.sum() == 236 and (obj == (m > 0)).all()
    # a 10-px square: its outer 2-px ring is border (100 - 36 = 64), its inner 6 x 6 beyond 2 px is interior
    assert border[4:14, 4:14].sum() == 64 and interior[4:14, 4:14].sum() == 36
    # where the two squares touch, both sides are border: the interiors never touch
    assert border[4:14, 12:16].all()
    assert not (interior[:, 13] | interior[:, 14]).any()
    assert (border & ~obj.astype(bool)).sum() == 0 and (interior & border).sum() == 0


def test_the_watershed_parts_touching_objects_and_grows_them_back_whole():
    m = touching_squares()
    obj, border, interior = (t.astype(np.float32) for t in unet_id_targets(m, 2, 2))
    labels = watershed_instances(obj, border, interior, min_area=4)
    assert labels.max() == 3  # the two touching squares are two objects
    for value in (7, 9, 3):
        [found] = np.unique(labels[m == value])
        assert found > 0 and ((labels == found) == (m == value)).all()  # each grown back to its exact pixels


def test_small_objects_and_markers_are_dropped():
    obj = np.zeros((16, 16), np.float32)
    obj[2:4, 2:4] = 1  # 4 px
    obj[8:14, 8:14] = 1
    interior = np.zeros_like(obj)
    interior[2, 2] = 1  # a one-pixel marker: too small
    interior[10:12, 10:12] = 1
    labels = watershed_instances(obj, 1 - interior, interior, min_area=5, min_marker=2)
    assert labels.max() == 1 and (labels > 0).sum() == 36
    assert watershed_instances(obj, obj, np.zeros_like(obj)).max() == 0  # no marker, no object
    assert relabel(np.array([[5, 5, 0], [2, 0, 0]]), min_area=2).tolist() == [[1, 1, 0], [0, 0, 0]]


def test_each_instance_is_one_polygon_in_map_coordinates():
    m = touching_squares()
    m[8:10, 8:10] = 0  # a hole in object 7
    transform = Affine(0.5, 0, 500_000, 0, -0.5, 4_650_000)
    polys = dict((k, p) for p, k in instance_polygons(m, transform))
    assert set(polys) == {3, 7, 9}
    assert polys[9].area == 100 * 0.25 and polys[3].area == 36 * 0.25
    assert polys[7].area == 96 * 0.25 and len(polys[7].interiors) == 1
    assert polys[3].bounds == (500_010.0, 4_649_987.0, 500_013.0, 4_649_990.0)


def tiles_of(height, width, tile, overlap):
    step = tile - overlap
    starts = lambda n: sorted({*range(0, max(1, n - tile) + 1, step), max(0, n - tile)})  # noqa: E731
    return [(r, c) for r in starts(height) for c in starts(width)]


def predicted_by_tiles(truth, tile, overlap, classes=None):
    """What per-tile prediction gives: each tile's objects clipped to the tile, as polygons with the tile box."""
    import shapely

    from terralearn.geo.merge_instances import Instances

    polys, tiles, cls = [], [], []
    for r, c in tiles_of(*truth.shape, tile, overlap):
        window = truth[r : r + tile, c : c + tile]
        for p, k in instance_polygons(window, Affine(1, 0, c, 0, 1, r)):
            polys.append(p)
            tiles.append(shapely.box(c, r, c + tile, r + tile))
            cls.append(0 if classes is None else classes[k])
    n = len(polys)
    return Instances(np.array(polys, object), np.full(n, 0.9, np.float32), np.array(cls, np.int64),
                     np.array(tiles, object))  # fmt: skip


def test_objects_cut_by_seams_come_out_once_and_whole():
    import shapely
    from skimage.draw import ellipse

    from terralearn.geo.merge_instances import merge_instances

    rng = np.random.default_rng(4)
    truth = np.zeros((160, 160), np.int32)
    k = 0
    for cy in range(12, 160, 32):  # tiles of 48 px every 32 px: seams at 32, 64, ... cross every row of objects
        for cx in range(16, 160, 32):
            k += 1
            rr, cc = ellipse(cy + rng.integers(-2, 3), cx + rng.integers(-2, 3), rng.integers(5, 9),
                             rng.integers(5, 12), shape=truth.shape)  # fmt: skip
            truth[rr, cc] = k
    truth[60:70, 2:150] = 0
    truth[61:69, 3:149] = k + 1  # a long object: longer than the overlap, cut by every tile it crosses
    found = predicted_by_tiles(truth, tile=48, overlap=16)
    assert len(found) > 2 * (k + 1)  # most objects are seen in pieces by several tiles
    merged = merge_instances(found)
    want = {v: p for p, v in instance_polygons(truth)}
    assert len(merged) == len(want)
    for poly in merged.polygons:
        best = max(want.values(), key=lambda q: shapely.area(shapely.intersection(q, poly)))
        iou = shapely.area(shapely.intersection(best, poly)) / shapely.area(shapely.union(best, poly))
        assert iou >= 0.9
    long = max(merged.polygons, key=shapely.area)
    assert abs(shapely.area(long) - 8 * 146) < 1e-6  # the long object, whole again


def test_objects_of_different_classes_or_without_a_shared_match_stay_apart():
    import shapely

    from terralearn.geo.merge_instances import Instances, merge_instances

    a, b = shapely.box(0, 0, 10, 10), shapely.box(40, 0, 50, 10)
    tile1, tile2 = shapely.box(0, 0, 30, 30), shapely.box(20, 0, 50, 30)
    same_place = Instances(np.array([a, a], object), np.array([0.9, 0.8], np.float32), np.array([0, 1]),
                           np.array([tile1, tile2], object))  # fmt: skip
    assert len(merge_instances(same_place)) == 2  # two classes: two objects
    apart = Instances(np.array([a, b], object), np.array([0.9, 0.8], np.float32), np.array([0, 0]),
                      np.array([tile1, tile2], object))  # fmt: skip
    assert len(merge_instances(apart)) == 2
    # one tile's copy and a sliver of it from the next tile (too little shared area to match): NMS keeps one
    sliver = shapely.box(0, 0, 10, 9)
    dup = Instances(np.array([a, sliver], object), np.array([0.9, 0.5], np.float32), np.array([0, 0]),
                    np.array([tile1, tile1], object))  # fmt: skip
    out = merge_instances(dup)
    assert len(out) == 1 and out.scores[0] == np.float32(0.9)
