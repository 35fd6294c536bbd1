"""Pure box maths: pixel/map conversion, shapely round trips, overlaps, chip windows, NMS."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from terralearn.geo.boxes import (
    as_boxes,
    box_areas,
    boxes_in_window,
    boxes_to_polygons,
    clip_boxes,
    map_to_pixel,
    nms,
    overlap,
    pairwise_ios,
    pairwise_iou,
    pairwise_overlap,
    pixel_to_map,
    polygons_to_boxes,
    visible_fraction,
)

UTM33 = CRS.from_epsg(32633)  # WGS 84 / UTM 33N: the grids below are in metres of this CRS
NORTH_UP = Affine(0.5, 0, 399_960.0, 0, -0.5, 5_800_020.0)  # a 0.5 m aerial grid in UTM 33N
SOUTH_UP = Affine(0.5, 0, 399_960.0, 0, 0.5, 5_790_000.0)  # the same, rows growing northwards


def random_boxes(rng: np.random.Generator, n: int, extent: float = 100.0, max_size: float = 30.0) -> np.ndarray:
    xy = rng.uniform(0, extent, (n, 2))
    return np.c_[xy, xy + rng.uniform(0.5, max_size, (n, 2))]


def test_as_boxes_shapes_and_refusals():
    assert as_boxes([]).shape == (0, 4)
    assert as_boxes([[1, 2, 3, 4]]).dtype == np.float64
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        as_boxes([[1, 2, 3]])
    with pytest.raises(ValueError, match="box 1 is not finite"):
        as_boxes([[0, 0, 1, 1], [0, np.nan, 1, 1]])


def test_areas_never_negative():
    assert box_areas([[0, 0, 2, 3], [5, 5, 4, 6], [1, 1, 1, 9]]).tolist() == [6.0, 0.0, 0.0]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # inside rasterio.windows.bounds
def test_pixel_to_map_matches_rasterio_window_bounds_north_and_south_up():
    assert UTM33.is_projected
    for transform in (NORTH_UP, SOUTH_UP):
        windows = [Window(0, 0, 10, 10), Window(13, 7, 5, 22), Window(100, 250, 1, 1)]
        pixel = np.array([[w.col_off, w.row_off, w.col_off + w.width, w.row_off + w.height] for w in windows])
        b = np.array([window_bounds(w, transform) for w in windows])  # rasterio keeps the corners' order
        expected = np.c_[np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])]
        np.testing.assert_allclose(pixel_to_map(pixel, transform), expected, rtol=0, atol=1e-6)


def test_map_box_of_north_up_grid_by_hand():
    # pixel box cols 10..20, rows 4..8 with 0.5 m pixels: x from +5 m to +10 m, y from -2 m to -4 m below the top
    got = pixel_to_map([[10, 4, 20, 8]], NORTH_UP)[0]
    assert got.tolist() == [399_965.0, 5_800_016.0, 399_970.0, 5_800_018.0]


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([NORTH_UP, SOUTH_UP, Affine(-2.0, 0, 1000.0, 0, -2.0, 500.0)]))
def test_pixel_map_round_trip_is_exact_for_unrotated_grids(seed, transform):
    boxes = random_boxes(np.random.default_rng(seed), 20, extent=5000)
    there = pixel_to_map(boxes, transform)
    assert np.all(there[:, 2] >= there[:, 0]) and np.all(there[:, 3] >= there[:, 1])
    np.testing.assert_allclose(box_areas(there), box_areas(boxes) * abs(transform.determinant), atol=1e-6)
    np.testing.assert_allclose(map_to_pixel(there, transform), boxes, rtol=0, atol=1e-6)


def test_rotated_grid_gives_the_envelope_of_the_rotated_box():
    rotated = NORTH_UP @ Affine.rotation(30)
    box = np.array([[2.0, 3.0, 12.0, 9.0]])
    corners = [rotated @ (x, y) for x in (2, 12) for y in (3, 9)]
    env = pixel_to_map(box, rotated)[0]
    assert env.tolist() == pytest.approx(
        [min(c[0] for c in corners), min(c[1] for c in corners), max(c[0] for c in corners), max(c[1] for c in corners)]
    )
    assert box_areas(env[None])[0] > box_areas(box)[0] * abs(rotated.determinant)  # the envelope is larger


def test_polygons_to_boxes_and_back():
    ell = shapely.Polygon([(0, 0), (4, 0), (4, 1), (1, 1), (1, 3), (0, 3)])  # concave: its box holds empty space
    multi = shapely.MultiPolygon([shapely.box(10, 10, 11, 11), shapely.box(14, 12, 15, 16)])
    boxes = polygons_to_boxes([ell, multi, shapely.Point(7, 8)])
    assert boxes.tolist() == [[0, 0, 4, 3], [10, 10, 15, 16], [7, 8, 7, 8]]
    polys = boxes_to_polygons(boxes[:2])
    np.testing.assert_allclose(shapely.area(polys), box_areas(boxes[:2]))
    np.testing.assert_array_equal(polygons_to_boxes(polys), boxes[:2])
    with pytest.raises(ValueError, match=r"geometries \[1\] are empty"):
        polygons_to_boxes([ell, shapely.Polygon()])
    assert polygons_to_boxes([]).shape == (0, 4)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_iou_and_ios_match_shapely_areas(seed):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 7, extent=40), random_boxes(rng, 5, extent=40)
    pa, pb = boxes_to_polygons(a), boxes_to_polygons(b)
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter
    smaller = np.minimum(shapely.area(pa)[:, None], shapely.area(pb)[None, :])
    np.testing.assert_allclose(pairwise_iou(a, b), inter / union, atol=1e-12)
    np.testing.assert_allclose(pairwise_ios(a, b), inter / smaller, atol=1e-12)
    assert np.all(pairwise_ios(a, b) >= pairwise_iou(a, b) - 1e-15)
    np.testing.assert_allclose(overlap(a[:5], b, "ios"), np.diag(pairwise_ios(a[:5], b)))


def test_iou_agrees_with_torchvision():
    import torch
    from torchvision.ops import box_iou

    rng = np.random.default_rng(3)
    a, b = random_boxes(rng, 30), random_boxes(rng, 20)
    expected = box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(pairwise_iou(a, b), expected, rtol=1e-12, atol=1e-12)


def test_overlaps_of_special_cases():
    inner, outer, apart, point = [2, 2, 4, 4], [0, 0, 10, 10], [20, 20, 30, 30], [3, 3, 3, 3]
    m = pairwise_overlap([inner, apart, point], [outer], "ios")
    assert m[:, 0].tolist() == [1.0, 0.0, 0.0]  # a box inside another; disjoint; a degenerate box overlaps nothing
    assert pairwise_iou([inner], [outer])[0, 0] == pytest.approx(4 / 100)
    assert pairwise_iou([inner], [inner])[0, 0] == 1.0
    with pytest.raises(ValueError, match="unknown overlap metric 'giou'"):
        pairwise_overlap([inner], [outer], "giou")
    with pytest.raises(ValueError, match="as many boxes"):
        overlap([inner], [inner, outer])


def test_clip_and_visible_fraction_in_a_window():
    window = Window(10, 20, 64, 64)  # x 10..74, y 20..84
    boxes = np.array([
        [20, 30, 30, 40],  # inside
        [0, 30, 20, 40],   # half outside on the left
        [70, 80, 75, 85],  # 80% by 80% inside the corner
        [100, 100, 110, 110],  # outside
        [40, 40, 40, 40],  # a point inside
    ], dtype=float)  # fmt: skip
    clipped = clip_boxes(boxes, window)
    assert clipped[1].tolist() == [10, 30, 20, 40]
    assert box_areas(clipped)[3] == 0
    frac = visible_fraction(boxes, window)
    np.testing.assert_allclose(frac, [1.0, 0.5, 0.64, 0.0, 1.0])
    np.testing.assert_allclose(visible_fraction(boxes, (10, 20, 74, 84)), frac)  # bounds work like a Window


def test_boxes_in_window_keeps_objects_mostly_inside_in_chip_coordinates():
    window = Window(100, 200, 50, 50)
    boxes = np.array([[110, 210, 120, 220], [95, 210, 105, 220], [141, 210, 151, 220], [148, 210, 158, 220]], float)
    idx, local, truncated = boxes_in_window(boxes, window, min_visible=0.8)
    assert idx.tolist() == [0, 2]  # 50% and 20% visible are dropped, 90% is kept and flagged
    assert local.tolist() == [[10, 10, 20, 20], [41, 10, 50, 20]]
    assert truncated.tolist() == [False, True]
    idx, _, _ = boxes_in_window(boxes, window, min_visible=0.5)
    assert idx.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="min_visible"):
        boxes_in_window(boxes, window, min_visible=0)


def reference_nms(boxes, scores, thr):
    keep, order = [], list(np.argsort(-scores, kind="stable"))
    while order:
        k = order.pop(0)
        keep.append(k)
        order = [j for j in order if pairwise_iou(boxes[[k]], boxes[[j]])[0, 0] <= thr]
    return keep


def test_nms_matches_a_plain_reference_per_class_and_agnostic():
    rng = np.random.default_rng(11)
    boxes = random_boxes(rng, 60, extent=60, max_size=25)
    scores = rng.permutation(60) / 60 + 0.01  # distinct scores: one right answer
    classes = rng.integers(0, 3, 60)
    assert nms(boxes, scores, iou=0.3).tolist() == reference_nms(boxes, scores, 0.3)
    kept = nms(boxes, scores, classes, iou=0.3)
    for c in range(3):
        sel = np.flatnonzero(classes == c)
        expected = sel[reference_nms(boxes[sel], scores[sel], 0.3)]
        assert sorted(k for k in kept if classes[k] == c) == sorted(expected)
    assert nms(boxes, scores, classes, iou=0.3, class_agnostic=True).tolist() == reference_nms(boxes, scores, 0.3)
    assert len(kept) > len(nms(boxes, scores, iou=0.3))  # per class keeps overlapping boxes of other classes
    assert nms(np.zeros((0, 4)), []).shape == (0,)
    assert nms(boxes, scores, np.array(["ship", "car"] * 30), iou=0.3).dtype == np.int64  # string classes work


def test_importing_boxes_does_not_import_torch():
    code = "import sys, terralearn.geo.boxes, terralearn.geo.merge_boxes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
