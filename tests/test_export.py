"""Stage 1: export writes correct, georeferenced chips with an honest split."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from terralearn.config import UNLABELLED, ExportConfig
from terralearn.export import export
from terralearn.io.chips import read_manifest
from terralearn.io.raster import write_raster
from terralearn.io.vector import write_vector
from tests.data.make_data import make_grid, make_raster, pixel_box, random_polygons


def run(raster, labels, out, **kw):
    kw.setdefault("class_field", "code")
    kw.setdefault("tile_size_x", 16)
    kw.setdefault("tile_size_y", 16)
    return export(ExportConfig.build(rasters=kw.pop("rasters", [raster]), labels=labels, out=out, **kw))


def chips(out):
    tiles = gpd.read_file(out / "tiles.gpkg")
    for row in tiles.itertuples():
        with rasterio.open(out / row.image) as img, rasterio.open(out / row.label) as lab:
            yield row, img, lab


def test_chips_are_georeferenced_copies_of_the_source(scene, tmp_path):
    raster, labels, _grid = scene
    result = run(raster, labels, tmp_path / "out", stride_x=8, stride_y=8)
    assert result.chips > 0
    with rasterio.open(raster) as src:
        full = src.read()
        for row, img, lab in chips(tmp_path / "out"):
            assert img.crs == src.crs and lab.crs == src.crs
            assert img.transform == src.transform @ Affine.translation(row.col, row.row)
            assert lab.transform == img.transform
            assert img.count == 3 and lab.count == 1 and lab.dtypes[0] == "uint8"
            window = full[:, row.row : row.row + 16, row.col : row.col + 16]
            assert np.array_equal(img.read(), window)
            assert lab.nodata == UNLABELLED
            assert list(img.descriptions) == list(src.descriptions) or all(img.descriptions)


def test_classes_map_arbitrary_values_to_contiguous_indices(scene, tmp_path):
    raster, labels, _grid = scene
    result = run(raster, labels, tmp_path / "out", class_name_field="name")
    classes = result.manifest["classes"]
    assert [(c["index"], c["value"], c["name"]) for c in classes] == [
        (0, 3, "forest"), (1, 7, "water"), (2, 22531, "wheat"),
    ]  # fmt: skip
    assert classes[1]["colour"] == "#1f78b4"  # a water class is blue
    # L-shaped polygon: 4x15 + 10x4 pixels minus the 4x4 overlap = 60 + 40 - ... exactly rasterised
    l_pixels = 4 * 15 + 10 * 4
    total_wheat = l_pixels + 8 * 8
    assert classes[2]["pixels"]["total"] == total_wheat
    # the label chips hold only the indices and 255
    values = set()
    for _, _, lab in chips(tmp_path / "out"):
        values |= set(np.unique(lab.read(1)).tolist())
    assert values <= {0, 1, 2, UNLABELLED}


def test_no_validation_label_pixel_in_any_training_chip(scene, tmp_path):
    raster, labels, grid = scene
    result = run(raster, labels, tmp_path / "out", stride_x=4, stride_y=4, val_fraction=0.5)
    assert result.train_chips and result.val_chips
    assert_no_leak(tmp_path / "out", grid, result)


def assert_no_leak(out, grid, result):
    """Every labelled pixel of every train chip lies on a train pixel, and likewise for validation."""
    seen = {"train": np.zeros((grid.height, grid.width), bool), "val": np.zeros((grid.height, grid.width), bool)}
    for row, _, lab in chips(out):
        labelled = lab.read(1) != UNLABELLED
        seen[row.split][row.row : row.row + row.height, row.col : row.col + row.width] |= labelled
    assert not (seen["train"] & seen["val"]).any()
    return seen


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), split=st.sampled_from(["polygons", "blocks", "random"]),
       stride=st.integers(3, 16))  # fmt: skip
def test_no_leak_property(tmp_path_factory, seed, split, stride):
    folder = tmp_path_factory.mktemp("leak")
    grid = make_grid()
    raster = make_raster(folder / "r.tif", grid, nodata_cols=0)
    labels = folder / "l.gpkg"
    write_vector(random_polygons(grid, 25, seed), labels)
    result = run(raster, labels, folder / "out", stride_x=stride, stride_y=stride, split=split, seed=seed,
                 val_fraction=0.3, block_size=16 if split == "blocks" else None)  # fmt: skip
    seen = assert_no_leak(folder / "out", grid, result)
    assert seen["train"].any()


def test_polygon_split_holds_out_whole_polygons(scene, tmp_path):
    raster, labels, grid = scene
    result = run(raster, labels, tmp_path / "out", tile_size_x=8, tile_size_y=8, val_fraction=0.5)
    seen = assert_no_leak(tmp_path / "out", grid, result)
    gdf = gpd.read_file(labels)
    for geom in gdf.geometry:
        from rasterio.features import rasterize

        burn = rasterize([(geom, 1)], out_shape=(grid.height, grid.width), transform=grid.transform) > 0
        in_train, in_val = (seen["train"] & burn).any(), (seen["val"] & burn).any()
        assert not (in_train and in_val), "a polygon is split between train and validation"
    units = result.manifest["split"]["units"]
    assert units["kind"] == "polygons" and units["val"] >= 2
    held_out = gpd.read_file(tmp_path / "out" / "validation.gpkg")
    assert len(held_out) == units["val"] and set(held_out["class_value"]) <= {"3", "7", "22531"}
    assert held_out.crs == gdf.crs


def test_manifest_and_tile_index(scene, tmp_path):
    raster, labels, grid = scene
    out = tmp_path / "out"
    result = run(raster, labels, out, class_name_field="name")
    m = read_manifest(out)
    assert m["schema_version"] == 2 and m["task"] == "pixel_classification" and m["format"] == "classified_tiles"
    assert m["band_count"] == 3 and m["grid"]["epsg"] == 32631
    assert m["inputs"]["rasters"][0]["sha256"] and m["inputs"]["labels"]["sha256"]
    assert m["unlabelled_value"] == 255 and m["parameters"]["tile_size_x"] == 16
    stats = m["statistics"]
    assert len(stats) == 3 and all(s["count"] > 0 for s in stats)
    assert all(1000 * (i + 1) <= s["min"] and s["max"] < 1000 * (i + 1) + 1000 for i, s in enumerate(stats))
    assert any(f["check"] == "nodata" for f in m["findings"])  # a polygon crosses the nodata strip
    tiles = gpd.read_file(out / "tiles.gpkg")
    assert len(tiles) == result.chips == m["chips"]["count"]
    assert tiles.crs.to_epsg() == 32631
    assert set(tiles["split"]) <= {"train", "val"}
    first = tiles.iloc[0]
    assert first.geometry.bounds == pixel_box(grid, first.col, first.row, first.col + 16, first.row + 16).bounds
    assert (out / "map.txt").read_text().splitlines()[0] == "images/000000000.tif labels/000000000.tif"
    json.dumps(m)  # plain JSON throughout


def test_nodata_pixels_are_unlabelled_and_marked(scene, tmp_path):
    raster, labels, _grid = scene
    out = tmp_path / "out"
    run(raster, labels, out, tile_size_x=8, tile_size_y=8, max_nodata_fraction=1.0)
    for row, img, lab in chips(out):
        if row.col < 4:
            data, label = img.read(), lab.read(1)
            nodata_cols = slice(0, 4 - row.col)
            assert (data[:, :, nodata_cols] == -9999).all()
            assert (label[:, nodata_cols] == UNLABELLED).all()


def test_nodata_heavy_tiles_are_skipped(scene, tmp_path):
    raster, labels, _grid = scene
    kept = run(raster, labels, tmp_path / "a", tile_size_x=8, tile_size_y=8, max_nodata_fraction=1.0)
    skipped = run(raster, labels, tmp_path / "b", tile_size_x=8, tile_size_y=8, max_nodata_fraction=0.2)
    cols_a = set(gpd.read_file(tmp_path / "a" / "tiles.gpkg")["col"])
    cols_b = set(gpd.read_file(tmp_path / "b" / "tiles.gpkg")["col"])
    assert 0 in cols_a and 0 not in cols_b and skipped.chips < kept.chips


def test_all_tiles_mode_writes_every_tile(scene, tmp_path):
    raster, labels, _grid = scene
    result = run(raster, labels, tmp_path / "out", output_tiles="all", max_nodata_fraction=1.0)
    assert result.chips >= 4 * 3  # 64 x 48 in 16-px tiles, duplicates for tiles with both splits


def test_min_polygon_overlap_ratio_drops_slivers(scene, tmp_path):
    raster, labels, _grid = scene
    loose = run(raster, labels, tmp_path / "a", tile_size_x=8, tile_size_y=8, stride_x=8, stride_y=8)
    strict = run(raster, labels, tmp_path / "b", tile_size_x=8, tile_size_y=8, stride_x=8, stride_y=8,
                 min_polygon_overlap_ratio=0.5)  # fmt: skip
    assert strict.chips < loose.chips
    for _, _, lab in chips(tmp_path / "b"):
        assert (lab.read(1) != UNLABELLED).any()


def test_mask_keeps_only_tiles_inside(scene, tmp_path):
    raster, labels, grid = scene
    mask = tmp_path / "aoi.gpkg"
    write_vector(gpd.GeoDataFrame(geometry=[pixel_box(grid, 0, 0, 40, 24)], crs=grid.crs), mask)
    result = run(raster, labels, tmp_path / "out", tile_size_x=8, tile_size_y=8, mask=mask)
    tiles = gpd.read_file(tmp_path / "out" / "tiles.gpkg")
    assert result.chips > 0
    assert (tiles["col"] + 8 <= 40).all() and (tiles["row"] + 8 <= 24).all()


def test_buffer_radius_turns_points_into_areas(tmp_path):
    grid = make_grid()
    raster = make_raster(tmp_path / "r.tif", grid, nodata_cols=0)
    x, y = grid.transform @ (20.5, 20.5)
    x2, y2 = grid.transform @ (45.5, 30.5)
    import shapely

    pts = gpd.GeoDataFrame({"code": [1, 2]}, geometry=[shapely.Point(x, y), shapely.Point(x2, y2)], crs=grid.crs)
    labels = tmp_path / "pts.geojson"
    write_vector(pts, labels)
    bare = run(raster, labels, tmp_path / "a", val_fraction=0)
    buffered = run(raster, labels, tmp_path / "b", buffer_radius=30.0, val_fraction=0)
    count = lambda r: sum(c["pixels"]["total"] for c in r.manifest["classes"])  # noqa: E731
    assert count(bare) == 2
    assert count(buffered) > 40  # a 3-pixel radius disc is about 28 pixels each


def test_labels_in_another_crs_are_reprojected(tmp_path):
    from tests.data.make_data import make_scene

    raster, labels, _grid = make_scene(tmp_path, labels_crs="EPSG:4326")
    result = run(raster, labels, tmp_path / "out")
    assert any(f.check == "labels_crs" and f.severity == "info" for f in result.findings)
    wheat = next(c for c in result.manifest["classes"] if c["value"] == 22531)
    assert abs(wheat["pixels"]["total"] - (4 * 15 + 10 * 4 + 64)) <= 4  # reprojection may nudge an edge pixel


def test_rasters_on_different_grids_are_stacked_on_the_first(scene, tmp_path):
    raster, labels, grid = scene
    # a coarser single-band raster (20 m) in another CRS (UTM 31N on ETRS89) covering the scene
    coarse = make_grid(width=40, height=30, res=20.0, crs=CRS.from_epsg(25831), origin=(499_900, 4_650_100))
    dsm = tmp_path / "dsm.tif"
    write_raster(dsm, np.full((1, 30, 40), 42.5, dtype=np.float32), coarse, nodata=-1, band_names=["dsm"])
    result = run(raster, labels, tmp_path / "out", rasters=[raster, dsm], resampling=["nearest", "bilinear"])
    m = result.manifest
    assert m["band_count"] == 4 and m["band_names"][-1] == "dsm" and m["dtype"] == "float32"
    assert [r["resampling"] for r in m["inputs"]["rasters"]] == ["nearest", "bilinear"]
    for row, img, _ in chips(tmp_path / "out"):
        data = img.read()
        valid = ~np.isnan(data[0])  # float32 stack: nodata is NaN in every band
        assert valid.any() and np.allclose(data[3][valid], 42.5)
        assert np.isnan(data[:, ~valid]).all()
        assert img.transform == grid.transform @ Affine.translation(row.col, row.row)


def test_raster_labels_with_block_split(scene, tmp_path):
    raster, _, grid = scene
    classes = np.zeros((1, grid.height, grid.width), np.uint16)
    classes[0, 5:40, 10:30] = 101
    classes[0, 10:30, 35:60] = 202
    lab_path = tmp_path / "classes.tif"
    write_raster(lab_path, classes, grid, nodata=0)
    result = run(raster, lab_path, tmp_path / "out", class_field=None, block_size=16, tile_size_x=8, tile_size_y=8)
    m = result.manifest
    assert [c["value"] for c in m["classes"]] == [101, 202]
    assert m["split"]["method"] == "blocks" and m["split"]["block_size"] == 16
    assert_no_leak(tmp_path / "out", grid, result)


def test_background_class_labels_everything(scene, tmp_path):
    raster, labels, _grid = scene
    result = run(raster, labels, tmp_path / "out", background_class=True, max_nodata_fraction=1.0)
    m = result.manifest
    assert m["classes"][0]["name"] == "background" and m["split"]["method"] == "blocks"
    for _, _, lab in chips(tmp_path / "out"):
        label = lab.read(1)
        assert (label[:, 4:] != UNLABELLED).sum() > 0


def test_failure_midway_leaves_no_output(scene, tmp_path, monkeypatch):
    raster, labels, _grid = scene
    from terralearn.io import chips as chips_mod

    calls = {"n": 0}
    real = chips_mod.GeoTiffChipWriter.write

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(chips_mod.GeoTiffChipWriter, "write", flaky)
    with pytest.raises(OSError, match="disk full"):
        run(raster, labels, tmp_path / "out", tile_size_x=8, tile_size_y=8)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
