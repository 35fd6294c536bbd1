"""Pure geometry maths: tiling, splits, statistics, grids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from terralearn.geo.bandstats import BandStats
from terralearn.geo.grid import Grid, bounds_intersection, window_of_bounds
from terralearn.geo.split import TRAIN, VAL, block_split_window, split_blocks, split_polygons
from terralearn.geo.tiling import TileGrid, suggest_tile_size, tile_starts, window_sums
from tests.data.make_data import UTM31, make_grid

dims = st.tuples(st.integers(1, 300), st.integers(1, 64), st.integers(1, 80)).filter(lambda t: t[1] <= t[0])


@given(dims)
def test_tile_starts_cover_every_pixel_and_stay_inside(args):
    length, tile, stride = args
    starts = tile_starts(length, tile, stride)
    covered = np.zeros(length, bool)
    for s in starts:
        assert s >= 0 and s + tile <= length
        covered[s : s + tile] = True
    if stride <= tile:
        assert covered.all()
    assert covered[0] and covered[-1]
    assert np.all(np.diff(starts) > 0)


def test_tile_starts_snaps_last_tile_to_the_edge():
    assert tile_starts(10, 4, 4).tolist() == [0, 4, 6]
    assert tile_starts(8, 4, 4).tolist() == [0, 4]
    assert tile_starts(5, 5, 1).tolist() == [0]


@pytest.mark.parametrize("length,tile,stride", [(10, 11, 1), (10, 0, 1), (10, 3, 0), (10, 3, -2)])
def test_tile_starts_refuses_impossible_settings(length, tile, stride):
    with pytest.raises(ValueError):
        tile_starts(length, tile, stride)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 90), st.integers(1, 70), st.integers(1, 20), st.integers(1, 20), st.integers(1, 12),
       st.integers(1, 12), st.integers(8, 64))  # fmt: skip
def test_blocks_partition_the_tiles_and_contain_them(width, height, tx, ty, sx, sy, target):
    tx, ty = min(tx, width), min(ty, height)
    grid = TileGrid(width, height, tx, ty, sx, sy)
    seen = []
    for block, rs, cs in grid.blocks(target):
        for r in rs:
            for c in cs:
                assert block.col_off <= c and c + tx <= block.col_off + block.width
                assert block.row_off <= r and r + ty <= block.row_off + block.height
                seen.append((int(r), int(c)))
    expected = [(int(w.row_off), int(w.col_off)) for w in grid.windows()]
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen)) == len(grid)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6), st.integers(1, 6))
def test_window_sums_match_brute_force(seed, th, tw):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2, (12, 15)).astype(bool)
    rows = np.arange(0, 12 - th + 1, 2)
    cols = np.arange(0, 15 - tw + 1, 3)
    sums = window_sums(values, rows, cols, th, tw)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            assert sums[i, j] == values[r : r + th, c : c + tw].sum()


def test_suggest_tile_size_is_a_power_of_two_that_fits():
    assert suggest_tile_size(6, 1000) == 32
    assert suggest_tile_size(30, 1000) == 128
    assert suggest_tile_size(500, 1000) == 512
    assert suggest_tile_size(500, 100) == 64


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.floats(0.05, 0.6), st.integers(0, 1000))
def test_polygon_split_keeps_each_class_on_both_sides_when_possible(classes, fraction, seed):
    classes = np.array(classes)
    areas = np.random.default_rng(seed).uniform(1, 50, len(classes))
    split = split_polygons(classes, areas, fraction, seed)
    assert set(np.unique(split)) <= {TRAIN, VAL}
    for value in np.unique(classes):
        sel = split[classes == value]
        if len(sel) >= 2:
            assert (sel == TRAIN).any() and (sel == VAL).any()
        else:
            assert (sel == TRAIN).all()


def test_polygon_split_is_seeded_and_near_the_fraction():
    classes = np.repeat([1, 2], 50)
    areas = np.ones(100)
    a = split_polygons(classes, areas, 0.2, seed=3)
    assert np.array_equal(a, split_polygons(classes, areas, 0.2, seed=3))
    assert not np.array_equal(a, split_polygons(classes, areas, 0.2, seed=4))
    for value in (1, 2):
        assert (a[classes == value] == VAL).sum() == 10
    assert not split_polygons(classes, areas, 0.0, seed=3).any()


def test_block_split_and_window_lookup():
    blocks = split_blocks(3, 4, 0.25, seed=1)
    assert blocks.shape == (3, 4) and blocks.sum() == 3
    win = block_split_window(blocks, 10, row_off=5, col_off=15, height=10, width=10)
    assert win.shape == (10, 10)
    assert win[0, 0] == blocks[0, 1] and win[-1, -1] == blocks[1, 2]
    assert win[4, 4] == blocks[0, 1] and win[5, 5] == blocks[1, 2]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(2, 30), st.floats(0.1, 0.4))
def test_block_split_by_counts_never_holds_out_every_labelled_block(seed, n_labelled, fraction):
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(40, size=n_labelled, replace=False))
    counts = rng.integers(1, 300, (n_labelled, 2))
    blocks = split_blocks(5, 8, fraction, seed, ids, counts)
    assert blocks.shape == (5, 8) and set(np.unique(blocks)) <= {TRAIN, VAL}
    labelled = blocks.ravel()[ids]
    assert (labelled == TRAIN).any()
    held = counts[labelled == VAL].sum(0) / counts.sum(0)
    assert (held <= 0.5 + 1e-9).all()  # training keeps at least half of each class
    assert np.array_equal(blocks, split_blocks(5, 8, fraction, seed, ids, counts))  # seeded


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 5))
def test_band_stats_match_numpy_whatever_the_windows(seed, n_windows):
    rng = np.random.default_rng(seed)
    data = rng.normal(1000, 50, (3, 20, 30)).astype(np.float32)
    valid = rng.random((20, 30)) > 0.3
    stats = BandStats(3)
    edges = np.linspace(0, 30, n_windows + 1).astype(int)
    for a, b in itertools.pairwise(edges):
        stats.update(data[:, :, a:b], valid[:, a:b])
    ref = data[:, valid].astype(np.float64)
    assert np.allclose(stats.mean, ref.mean(axis=1))
    assert np.allclose(stats.std, ref.std(axis=1), rtol=1e-6)
    assert np.array_equal(stats.count, np.full(3, valid.sum()))
    assert np.allclose(stats.min, ref.min(axis=1)) and np.allclose(stats.max, ref.max(axis=1))


def test_grid_properties_and_windows():
    grid = make_grid(width=64, height=48, res=10)
    assert grid.res == (10, 10)
    assert grid.bounds == (500_000, 4_650_000 - 480, 500_640, 4_650_000)
    assert grid.is_north_up and not grid.is_rotated and not grid.is_geographic
    assert grid.window_bounds(Window(2, 3, 4, 5)) == (500_020, 4_650_000 - 80, 500_060, 4_650_000 - 30)
    assert window_of_bounds(grid, (500_015, 4_649_920, 500_061, 4_649_970)) == Window(1, 3, 6, 5)
    assert window_of_bounds(grid, (0, 0, 1, 1)) is None
    assert bounds_intersection((0, 0, 2, 2), (1, 1, 3, 3)) == (1, 1, 2, 2)
    assert bounds_intersection((0, 0, 1, 1), (2, 2, 3, 3)) is None
    rotated = Grid(UTM31, Affine(10, 1, 0, 1, -10, 0), 5, 5)
    assert rotated.is_rotated and not rotated.is_north_up
    assert Grid(UTM31, Affine(10, 0, 0, 0, 10, 0), 5, 5).is_south_up


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 100))
def test_block_windows_cover_each_pixel_exactly_once(width, height, block):
    from terralearn.geo.tiling import block_windows

    seen = np.zeros((height, width), int)
    for w in block_windows(width, height, block):
        seen[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (seen == 1).all()
