"""The honest splits hold out close to val_fraction of every class, on few polygons and small areas too."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.features import rasterize

from terralearn.checks import run_checks
from terralearn.config import UNLABELLED, CheckConfig, ExportConfig
from terralearn.export import export
from terralearn.geo.split import VAL, choose_units, cut_by_area, held_out_fractions, split_polygon_geometries
from terralearn.io.vector import write_vector
from tests.data.make_data import make_grid, make_raster, pixel_box

GRID = make_grid(width=200, height=200)
FOOTPRINT = shapely.box(*GRID.bounds)
SNAP = (GRID.transform.c, GRID.transform.a, GRID.transform.f, GRID.transform.e)
PX = GRID.pixel_area


# --------------------------------------------------------------------------- generated polygon sets


@st.composite
def polygon_sets(draw):
    """Classes of very different make-up, as pixel boxes side by side on a 200 x 200 px grid (no overlap).

    Each class is one polygon, one huge polygon with several tiny ones, two polygons of very
    different sizes, or a handful of random sizes. Boxes are laid out left to right in rows.
    """
    n_classes = draw(st.integers(1, 4))
    sizes: list[tuple[int, int, int]] = []  # (class, width, height)
    for c in range(n_classes):
        kind = draw(st.sampled_from(["one", "huge_and_tiny", "two_unequal", "random"]))
        if kind == "one":
            sizes.append((c, draw(st.integers(4, 30)), draw(st.integers(4, 30))))
        elif kind == "huge_and_tiny":
            sizes.append((c, draw(st.integers(20, 40)), draw(st.integers(20, 40))))
            sizes += [(c, draw(st.integers(1, 3)), draw(st.integers(1, 3))) for _ in range(draw(st.integers(1, 6)))]
        elif kind == "two_unequal":
            sizes += [(c, draw(st.integers(2, 4)), draw(st.integers(2, 4))), (c, draw(st.integers(8, 20)),
                                                                                  draw(st.integers(8, 20)))]  # fmt: skip
        else:
            sizes += [(c, draw(st.integers(1, 20)), draw(st.integers(1, 20))) for _ in range(draw(st.integers(2, 8)))]
    order = draw(st.permutations(range(len(sizes))))
    geoms, classes = [], []
    col, row, row_h = 0, 0, 0
    for i in order:
        c, w, h = sizes[i]
        if col + w > GRID.width:
            col, row, row_h = 0, row + row_h + 1, 0
        geoms.append(pixel_box(GRID, col, row, col + w, row + h))
        classes.append(c)
        col, row_h = col + w + 1, max(row_h, h)
    return geoms, np.array(classes)


def class_fractions(ps, classes):
    """Per class: (held-out fraction of the area, class area in pixels)."""
    areas = shapely.area(ps.geometries) / PX
    out = {}
    for c in np.unique(classes):
        sel = ps.classes == c
        total = areas[sel].sum()
        out[int(c)] = (areas[sel & (ps.split == VAL)].sum() / total, total)
    return out


@settings(max_examples=150, deadline=None)
@given(polygon_sets(), st.sampled_from([0.1, 0.2, 0.3, 0.4]), st.integers(0, 10_000))
def test_polygon_split_holds_out_about_the_fraction_of_every_class(polys, fraction, seed):
    geoms, classes = polys
    ps = split_polygon_geometries(geoms, classes, fraction, seed, clip=FOOTPRINT, snap=SNAP)
    for c, (held, total) in class_fractions(ps, classes).items():
        assert 1 - held >= 0.5 - 1e-9, f"class {c} keeps only {1 - held:.0%} of its area for training"
        if total >= 100:
            assert abs(held - fraction) <= 0.1, f"class {c} ({total:.0f} px): {held:.0%} held out, aim {fraction:.0%}"
        if total >= 10:
            assert held > 0, f"class {c} ({total:.0f} px) has nothing held out"
    # the units partition the input polygons: each polygon's parts add up to it and do not overlap
    for i, geom in enumerate(geoms):
        parts = ps.geometries[ps.source == i]
        assert abs(shapely.area(shapely.union_all(parts)) - geom.area) < 1e-6 * geom.area
        assert abs(shapely.area(parts).sum() - geom.area) < 1e-6 * geom.area
        assert set(ps.classes[ps.source == i].tolist()) == {classes[i]}
    assert ps.cut.sum() == 2 * len(ps.cuts)


def test_cuts_snap_to_pixel_edges_unless_that_overshoots():
    """Snapped cuts are whole pixels (validation.gpkg matches the burned pixels); on a polygon too small
    for that, the exact cut is kept instead of an overshoot."""
    ps = split_polygon_geometries([pixel_box(GRID, 0, 0, 23, 7)], np.array([0]), 0.2, seed=2, clip=FOOTPRINT,
                                  snap=SNAP)  # fmt: skip
    assert all(abs(g.area / PX - round(g.area / PX)) < 1e-9 for g in ps.geometries)
    tiny = [pixel_box(GRID, 0, 0, 1, 1), pixel_box(GRID, 3, 0, 5, 2)]  # 1 px and 4 px, aim 30 % of 5 px
    ps = split_polygon_geometries(tiny, np.array([0, 0]), 0.3, seed=0, clip=FOOTPRINT, snap=SNAP)
    held, _ = class_fractions(ps, np.array([0, 0]))[0]
    assert held == pytest.approx(0.3)


def test_the_measured_sentinel2_case_no_longer_holds_out_the_larger_polygon():
    # Two polygons per class, one much larger: whole polygons held out 82 of 88 Sand pixels before.
    layout = {"sand": [(2, 3), (41, 2)], "emergent": [(2, 2), (31, 1)], "forested": [(4, 13), (8, 10)]}
    geoms, classes, row = [], [], 0
    for c, boxes in enumerate(layout.values()):
        col = 0
        for w, h in boxes:
            geoms.append(pixel_box(GRID, col, row, col + w, row + h))
            classes.append(c)
            col += w + 2
        row += 20
    classes = np.array(classes)
    for seed in range(20):
        ps = split_polygon_geometries(geoms, classes, 0.2, seed, clip=FOOTPRINT, snap=SNAP)
        for c, (held, total) in class_fractions(ps, classes).items():
            assert 1 - held >= 0.7, (seed, c, held)
            assert abs(held - 0.2) <= 0.1 or total < 40, (seed, c, held, total)


def test_whole_polygons_are_kept_when_they_can_hold_out_the_fraction():
    geoms = [pixel_box(GRID, 10 * i, 0, 10 * i + 8, 8) for i in range(10)]
    ps = split_polygon_geometries(geoms, np.zeros(10, int), 0.2, seed=1, clip=FOOTPRINT, snap=SNAP)
    assert not ps.cut.any() and len(ps.geometries) == 10 and (ps.split == VAL).sum() == 2


def test_one_polygon_is_cut_across_its_longer_axis():
    geom = pixel_box(GRID, 0, 0, 50, 10)  # 50 px wide, 10 high: cut by a vertical line
    ps = split_polygon_geometries([geom], np.array([0]), 0.2, seed=0, clip=FOOTPRINT, snap=SNAP)
    assert len(ps.geometries) == 2 and ps.cut.all() and sorted(ps.split.tolist()) == [0, 1]
    val = ps.geometries[ps.split == VAL][0]
    x0, y0, x1, y1 = val.bounds
    assert (y1 - y0) == 10 * GRID.res[1] and (x1 - x0) == 10 * GRID.res[0]  # 10 of 50 columns, full height
    assert ps.cuts[0]["val_area"] / PX == pytest.approx(100)


def test_cut_by_area_measures_inside_the_clip():
    geom = shapely.box(0, 0, 100, 10)
    piece, rest = cut_by_area(geom, 50, clip=shapely.box(0, 0, 50, 10), side=1)
    assert shapely.intersection(piece, shapely.box(0, 0, 50, 10)).area == pytest.approx(50)
    assert piece.area + rest.area == pytest.approx(geom.area)


def test_choose_units_balances_every_class_and_keeps_training():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 500, (60, 4)) * (rng.random((60, 4)) < 0.4)
    val = choose_units(counts, 0.2, seed=3)
    assert np.all(np.abs(held_out_fractions(counts, val) - 0.2) < 0.05)
    two = choose_units(np.array([[100], [100]]), 0.2, seed=0)
    assert not two.all()  # never everything held out


# --------------------------------------------------------------------------- block split on a small area


def small_aoi(folder, tile: int):
    """A 256 x 256 px raster labelled everywhere (background class), a few objects, a small AOI mask."""
    grid = make_grid(width=256, height=256)
    raster = make_raster(folder / "r.tif", grid, nodata_cols=0)
    objects = [pixel_box(grid, 100, 100, 110, 120), pixel_box(grid, 130, 105, 140, 112),
               pixel_box(grid, 150, 125, 158, 133)]  # fmt: skip
    labels = folder / "objects.gpkg"
    write_vector(gpd.GeoDataFrame({"code": [1, 1, 2]}, geometry=objects, crs=grid.crs), labels)
    mask = folder / "aoi.gpkg"
    # 64 px tiles: exactly three tile positions (one row of three at stride 16) fit in the AOI
    width, height = (tile + 2 * 16, tile) if tile == 64 else (70, 50)
    write_vector(gpd.GeoDataFrame(geometry=[pixel_box(grid, 96, 96, 96 + width, 96 + height)], crs=grid.crs), mask)
    return grid, raster, labels, mask


def chip_pixels(out, grid):
    tiles = gpd.read_file(out / "tiles.gpkg")
    seen = {"train": np.zeros((grid.height, grid.width), bool), "val": np.zeros((grid.height, grid.width), bool)}
    for row in tiles.itertuples():
        with rasterio.open(out / row.label) as lab:
            seen[row.split][row.row : row.row + row.height, row.col : row.col + row.width] |= lab.read(1) != UNLABELLED
    return tiles, seen


@pytest.mark.parametrize("tile", [32, 64])
def test_block_split_on_a_small_aoi_holds_out_about_the_fraction(tmp_path, tile):
    grid, raster, labels, mask = small_aoi(tmp_path, tile)
    out = tmp_path / "out"
    result = export(ExportConfig.build(rasters=[raster], labels=labels, out=out, class_field="code",
                                       tile_size_x=tile, tile_size_y=tile, stride_x=16, stride_y=16,
                                       background_class=True, mask=mask))  # fmt: skip
    assert result.train_chips > 0 and result.val_chips > 0
    tiles, seen = chip_pixels(out, grid)
    assert not (seen["train"] & seen["val"]).any()  # no validation label pixel in a training chip
    held = seen["val"].sum() / (seen["train"] | seen["val"]).sum()
    assert abs(held - 0.2) <= 0.1, f"{held:.0%} of the chips' labelled pixels held out"
    split = result.manifest["split"]
    assert split["method"] == "blocks" and split["block_size"] < 4 * tile  # shrunk on the small area
    shrunk = [f for f in result.findings if f.check == "split" and "block_size" in f.details]
    assert shrunk and shrunk[0].severity == "info"


def test_block_split_counts_only_where_chips_can_go(tmp_path):
    """The labels outside the mask do not count: the held-out share is measured inside it."""
    grid, raster, labels, mask = small_aoi(tmp_path, 32)
    report = run_checks(CheckConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=32,
                                          tile_size_y=32, background_class=True, mask=mask))  # fmt: skip
    info = report.labels.split_info
    assert info["labelled_blocks"] >= 10 and 0 < info["held_out_blocks"] < info["labelled_blocks"]
    assert all(abs(f - 0.2) <= 0.1 for f in info["fractions"])
    explicit = run_checks(CheckConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=32,
                                            tile_size_y=32, background_class=True, mask=mask, block_size=64))  # fmt: skip
    assert explicit.labels.block_size == 64  # a block size given is kept


def test_validation_polygons_are_the_held_out_parts(tmp_path):
    grid = make_grid()
    raster = make_raster(tmp_path / "r.tif", grid, nodata_cols=0)
    geoms = [pixel_box(grid, 5, 5, 35, 15), pixel_box(grid, 40, 20, 60, 44)]  # one polygon per class: both cut
    labels = tmp_path / "l.gpkg"
    write_vector(gpd.GeoDataFrame({"code": [1, 2]}, geometry=geoms, crs=grid.crs), labels)
    out = tmp_path / "out"
    result = export(ExportConfig.build(rasters=[raster], labels=labels, out=out, class_field="code",
                                       tile_size_x=16, tile_size_y=16, stride_x=8, stride_y=8))  # fmt: skip
    _, seen = chip_pixels(out, grid)
    assert not (seen["train"] & seen["val"]).any()
    held_out = gpd.read_file(out / "validation.gpkg")
    assert len(held_out) == 2 == result.manifest["split"]["units"]["val"]
    burned = rasterize([(g, 1) for g in held_out.geometry], out_shape=(grid.height, grid.width),
                       transform=grid.transform) > 0  # fmt: skip
    assert np.array_equal(burned, seen["val"])  # the written polygons are exactly the held-out pixels
    for c in result.manifest["classes"]:
        assert abs(c["pixels"]["val"] / c["pixels"]["total"] - 0.2) <= 0.05
