"""Merging seam duplicates: the methods on hand-made cases, and streaming against all-at-once merging."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.windows import Window

from terralearn.geo.boxes import boxes_in_window, pairwise_overlap, pixel_to_map
from terralearn.geo.merge_boxes import Detections, SeamMerger, merge_detections, merge_stream, row_frontier
from terralearn.geo.tiling import tile_starts

UTM33 = CRS.from_epsg(32633)
NORTH_UP = Affine(0.5, 0, 399_960.0, 0, -0.5, 5_800_020.0)  # 0.5 m pixels in WGS 84 / UTM 33N
SOUTH_UP = Affine(0.5, 0, 399_960.0, 0, 0.5, 5_790_000.0)


def matching_pairs(d: Detections, metric: str, threshold: float, class_agnostic: bool) -> int:
    """How many pairs of output detections still match (the merger promises none)."""
    m = pairwise_overlap(d.boxes, d.boxes, metric) > threshold
    if not class_agnostic:
        m &= d.classes[:, None] == d.classes[None, :]
    return int(np.triu(m, 1).sum())


def canonical(d: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((d.classes, d.boxes[:, 3], d.boxes[:, 2], d.boxes[:, 1], d.boxes[:, 0], -d.scores))
    return d.boxes[order], d.scores[order], d.classes[order]


def assert_same(a: Detections, b: Detections) -> None:
    for x, y in zip(canonical(a), canonical(b), strict=True):
        np.testing.assert_array_equal(x, y)


# --- the methods on hand-made seam cases ---------------------------------------------------------

# an object at x 90..130 seen by two tiles split at x = 100: the left tile sees a sliver, the right one all of it
SLIVER, WHOLE = [90.0, 10.0, 100.0, 40.0], [90.5, 10.0, 130.0, 40.0]


def test_nmm_with_ios_grows_the_partial_box_back_whole():
    out = merge_detections([SLIVER, WHOLE], [0.9, 0.8], [1, 1], method="nmm", metric="ios", threshold=0.5)
    assert out.boxes.tolist() == [[90.0, 10.0, 130.0, 40.0]]
    assert out.scores.tolist() == [0.9] and out.classes.tolist() == [1]
    greedy = merge_detections([SLIVER, WHOLE], [0.9, 0.8], [1, 1], method="greedy_nmm", metric="ios")
    assert_same(greedy, out)


def test_nms_with_iou_keeps_the_seam_duplicate_but_ios_removes_it():
    both = merge_detections([SLIVER, WHOLE], [0.9, 0.8], method="nms", metric="iou", threshold=0.5)
    assert len(both) == 2  # IoU of a sliver with the whole object is small: the classic seam failure
    one = merge_detections([SLIVER, WHOLE], [0.7, 0.8], method="nms", metric="ios", threshold=0.5)
    assert one.boxes.tolist() == [WHOLE] and one.scores.tolist() == [0.8]


def test_classes_are_merged_apart_unless_class_agnostic():
    boxes, scores, classes = [[0, 0, 10, 10], [1, 1, 11, 11]], [0.6, 0.9], [3, 7]
    apart = merge_detections(boxes, scores, classes, method="nmm")
    assert sorted(apart.classes.tolist()) == [3, 7]
    together = merge_detections(boxes, scores, classes, method="nmm", class_agnostic=True)
    assert together.boxes.tolist() == [[0, 0, 11, 11]]
    assert together.classes.tolist() == [7] and together.scores.tolist() == [0.9]  # the best member's class


def test_greedy_nmm_takes_only_the_leaders_matches_while_nmm_follows_chains():
    chain = [[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]]  # neighbours overlap by IoU 1/3, the ends not at all
    scores = [0.7, 0.9, 0.8]
    assert merge_detections(chain, scores, method="nmm", threshold=0.3).boxes.tolist() == [[0, 0, 20, 10]]
    assert merge_detections(chain, scores, method="greedy_nmm", threshold=0.3).boxes.tolist() == [[0, 0, 20, 10]]
    scores = [0.9, 0.7, 0.8]  # now the leader is an end: it takes the middle only, the other end stays alone
    greedy = merge_detections(chain, scores, method="greedy_nmm", threshold=0.3)
    assert greedy.boxes.tolist() == [[0, 0, 15, 10], [10, 0, 20, 10]]
    assert matching_pairs(greedy, "iou", 0.3, False) == 0


def test_an_envelope_that_grows_into_a_neighbour_never_leaves_a_matching_pair():
    # a and b match and merge into (0, 0, 16, 16), which now holds c although c touched neither of them
    a, b, c = [0, 0, 10, 10], [6, 6, 16, 16], [12, 0, 16, 4]
    for method in ("nmm", "greedy_nmm"):
        out = merge_detections([a, b, c], [0.9, 0.8, 0.95], method=method, metric="ios", threshold=0.1)
        assert matching_pairs(out, "ios", 0.1, False) == 0
        assert out.boxes.tolist() == [c]  # the better of the two matching results is kept


def test_degenerate_and_empty_inputs():
    assert len(merge_detections(np.zeros((0, 4)), [])) == 0
    out = merge_detections([[5, 5, 5, 9], [5, 5, 5, 9]], [0.5, 0.4], method="nmm")
    assert len(out) == 2  # zero-area boxes overlap nothing, so they never merge
    merger = SeamMerger()
    assert len(merger.release(10.0)) == 0 and len(merger.finish()) == 0


def test_settings_and_promises_are_checked():
    with pytest.raises(ValueError, match="unknown merge method 'wbf'"):
        merge_detections([[0, 0, 1, 1]], [1.0], method="wbf")
    with pytest.raises(ValueError, match="unknown match metric"):
        SeamMerger(metric="giou")
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        SeamMerger(threshold=1.5)
    with pytest.raises(ValueError, match="future_y"):
        SeamMerger(future_y="left")
    with pytest.raises(ValueError, match="as many"):
        merge_detections([[0, 0, 1, 1]], [1.0, 0.5])
    merger = SeamMerger(future_y="higher")  # pixel rows: the future lies at larger rows
    merger.add([[0, 0, 10, 10]], [0.9])
    merger.release(64)
    with pytest.raises(ValueError, match="crosses the released frontier y = 64"):
        merger.add([[0, 60, 10, 70]], [0.9])
    with pytest.raises(ValueError, match="frontier moved back"):
        merger.release(32)
    with pytest.raises(ValueError, match="rotated transform"):
        row_frontier(NORTH_UP @ Affine.rotation(10), 64)


def test_row_frontier_is_the_map_y_of_the_row():
    assert row_frontier(NORTH_UP, 64) == 5_800_020.0 - 32.0
    top = pixel_to_map([[3.0, 64.0, 9.0, 80.0]], NORTH_UP)[0, 3]
    assert top == row_frontier(NORTH_UP, 64)  # bit for bit, so a box on the frontier is never refused


# --- streaming == all at once ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["nmm", "greedy_nmm"])
def test_a_growing_envelope_may_still_reach_a_box_wholly_before_the_frontier(method):
    # pixel rows, the future at larger rows. After release(100): o crosses the frontier; m lies before
    # it and touches nothing. A later box f merges with o into (0, 90, 30, 110), which holds m.
    o, m, f = [0, 90, 10, 110], [10, 92, 30, 99], [0, 100, 30, 110]
    merger = SeamMerger(method, "ios", 0.4, future_y="higher")
    merger.add([o, m], [0.9, 0.5])
    early = merger.release(100)
    assert len(early) == 0  # m waits: a growing envelope may reach it
    merger.add([f], [0.8])
    out = Detections.concat([early, merger.release(120), merger.finish()])
    assert out.boxes.tolist() == [[0, 90, 30, 110]] and out.scores.tolist() == [0.9]
    assert_same(out, merge_detections([o, m, f], [0.9, 0.5, 0.8], method=method, metric="ios", threshold=0.4))
    nms = SeamMerger("nms", "ios", 0.4, future_y="higher")
    nms.add([o, m], [0.9, 0.5])
    assert nms.release(100).boxes.tolist() == [m]  # boxes never grow under nms: m is final at once


def seam_scene(seed: int, n_objects: int, width: int, height: int, tile: int = 64, stride: int = 48):
    """Objects seen by two overlapping tile grids (the second shifted by half a stride), as in
    detection with test-time shifts: returns per-tile (row_off, pixel boxes, scores, classes), in row order."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [width - 4, height - 4], (n_objects, 2))
    objects = np.c_[xy, np.minimum(xy + rng.uniform(4, 40, (n_objects, 2)), [width, height])]
    labels = rng.integers(0, 3, n_objects)
    tiles = []
    for shift in (0, stride // 2):
        rows = [r for r in tile_starts(height, tile, stride) + shift if r + tile <= height]
        cols = [c for c in tile_starts(width, tile, stride) + shift if c + tile <= width]
        tiles += [Window(int(c), int(r), tile, tile) for r in rows for c in cols]
    out = []
    for win in sorted(tiles, key=lambda w: (w.row_off, w.col_off)):
        idx, local, _ = boxes_in_window(objects, win, min_visible=0.3)
        jitter = rng.normal(0, 1.0, local.shape)
        boxes = np.clip(local + jitter, 0, tile) + np.array([win.col_off, win.row_off] * 2)
        classes = np.where(rng.random(len(idx)) < 0.1, (labels[idx] + 1) % 3, labels[idx])  # some confusions
        out.append((win.row_off, boxes, rng.uniform(0.05, 1.0, len(idx)).round(2), classes))  # ties happen
    return out


def stream(tiles, frame: str, **settings) -> tuple[Detections, Detections, int]:
    """Feed the tiles one by one, releasing after each tile row; also merge everything at once."""
    transform = {"map": NORTH_UP, "south_up": SOUTH_UP, "pixel": Affine.identity()}[frame]
    merger = SeamMerger(**settings, future_y="lower" if frame == "map" else "higher")
    parts, everything, most_pending = [], [], 0
    for k, (row, boxes, scores, classes) in enumerate(tiles):
        boxes = pixel_to_map(boxes, transform)
        everything.append(Detections.of(boxes, scores, classes))
        merger.add(boxes, scores, classes)
        next_row = tiles[k + 1][0] if k + 1 < len(tiles) else None
        if next_row is not None and next_row != row:
            parts.append(merger.release(row_frontier(transform, next_row)))
            most_pending = max(most_pending, merger.pending)
    parts.append(merger.finish())
    all_at_once = Detections.concat(everything)
    reference = merge_detections(*all_at_once, **settings)
    return Detections.concat(parts), reference, most_pending


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_objects=st.integers(0, 30),
    method=st.sampled_from(["nms", "nmm", "greedy_nmm"]),
    metric=st.sampled_from(["iou", "ios"]),
    threshold=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.8]),
    class_agnostic=st.booleans(),
    frame=st.sampled_from(["map", "south_up", "pixel"]),
)
def test_streaming_equals_merging_all_at_once_and_leaves_no_match(
    seed, n_objects, method, metric, threshold, class_agnostic, frame
):
    tiles = seam_scene(seed, n_objects, width=208, height=176)
    settings = {"method": method, "metric": metric, "threshold": threshold, "class_agnostic": class_agnostic}
    streamed, reference, _ = stream(tiles, frame, **settings)
    assert matching_pairs(reference, metric, threshold, class_agnostic) == 0
    assert matching_pairs(streamed, metric, threshold, class_agnostic) == 0
    assert_same(streamed, reference)
    n_raw = sum(len(t[2]) for t in tiles)
    assert len(reference) <= n_raw and (n_raw == 0 or len(reference) >= 1)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["nms", "nmm", "greedy_nmm"]))
def test_the_result_does_not_depend_on_input_order(seed, method):
    tiles = seam_scene(seed, 20, width=160, height=160)
    d = Detections.concat([Detections.of(b, s, c) for _, b, s, c in tiles])
    perm = np.random.default_rng(seed).permutation(len(d))
    assert_same(merge_detections(*d, method=method), merge_detections(*d.take(perm), method=method))


@pytest.mark.parametrize("method", ["nms", "nmm", "greedy_nmm"])
def test_streaming_holds_only_detections_near_the_frontier(method):
    tiles = seam_scene(7, 900, width=640, height=1600)  # 30 tile rows, ~3,000 raw detections
    streamed, reference, most_pending = stream(tiles, "map", method=method, metric="ios", threshold=0.5)
    n_raw = sum(len(t[2]) for t in tiles)
    assert n_raw > 2500
    assert most_pending < 0.1 * n_raw  # about one band of tile overlap, not the raster
    assert_same(streamed, reference)
    assert len(reference) < 0.6 * n_raw  # the duplicates of the two tile grids were merged


def test_merge_stream_yields_batches_as_rows_finish():
    tiles = seam_scene(3, 60, width=208, height=400)
    feed = []
    for k, (row, boxes, scores, classes) in enumerate(tiles):
        next_row = tiles[k + 1][0] if k + 1 < len(tiles) else None
        feed.append((boxes, scores, classes, next_row if next_row != row else None))
    batches = list(merge_stream(feed, method="nmm", metric="ios", future_y="higher"))
    assert len(batches) > 3  # results come out before the end
    assert all(len(b) for b in batches)
    everything = Detections.concat([Detections.of(b, s, c) for b, s, c, _ in feed])
    assert_same(Detections.concat(batches), merge_detections(*everything, method="nmm", metric="ios"))
