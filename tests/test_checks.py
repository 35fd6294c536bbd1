"""Pre-flight checks: one test per pitfall."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from rasterio.crs import CRS

from terralearn.checks import run_checks
from terralearn.config import CheckConfig
from terralearn.io.raster import write_raster
from terralearn.io.vector import write_vector
from tests.data.make_data import make_grid, make_raster, make_scene, pixel_box, scene_polygons


def check(raster, labels, **kw):
    kw.setdefault("class_field", "code")
    kw.setdefault("tile_size_x", 16)
    kw.setdefault("tile_size_y", 16)
    return run_checks(CheckConfig.build(rasters=kw.pop("rasters", [raster]), labels=labels, **kw))


def only(report, name, severity=None):
    found = [f for f in report.findings if f.check == name and (severity is None or f.severity == severity)]
    assert found, f"no {severity or ''} finding '{name}' in {[(f.check, f.severity) for f in report.findings]}"
    return found[0]


def test_clean_inputs_have_no_error(scene):
    raster, labels, _ = scene
    report = check(raster, labels)
    assert report.ok
    assert only(report, "class_balance", "info").details["classes"][0]["value"] == 3


def test_labels_in_another_crs_are_an_info(tmp_path):
    raster, labels, _ = make_scene(tmp_path, labels_crs="EPSG:3857")
    f = only(check(raster, labels), "labels_crs", "info")
    assert "EPSG:3857" in f.message and "reprojected to the raster's CRS" in f.message


def test_labels_not_overlapping_are_an_error(scene, tmp_path):
    raster, _, grid = scene
    far = scene_polygons(grid).translate(xoff=100_000)
    path = tmp_path / "far.gpkg"
    write_vector(far, path)
    report = check(raster, path)
    assert not report.ok
    assert "No label feature overlaps the raster" in only(report, "labels_overlap", "error").message


def test_geographic_raster_is_a_warning(tmp_path):
    grid = make_grid(res=0.0001, crs=CRS.from_epsg(4326), origin=(2.0, 42.0))
    raster = make_raster(tmp_path / "geo.tif", grid)
    labels = tmp_path / "l.gpkg"
    write_vector(scene_polygons(grid), labels)
    f = only(check(raster, labels), "geographic_crs", "warning")
    assert "degrees" in f.message and "UTM" in f.fix


def test_invalid_empty_and_null_geometries_are_counted(scene, tmp_path):
    raster, _, grid = scene
    gdf = scene_polygons(grid)
    bowtie = shapely.Polygon([(500_100, 4_649_900), (500_200, 4_649_800), (500_200, 4_649_900), (500_100, 4_649_800)])
    extra = gpd.GeoDataFrame({"code": [7, 7, 7], "name": ["w"] * 3},
                             geometry=[bowtie, shapely.Polygon(), None], crs=grid.crs)  # fmt: skip
    path = tmp_path / "bad.gpkg"
    write_vector(gpd.GeoDataFrame(pd_concat(gdf, extra), crs=grid.crs), path)
    report = check(raster, path)
    invalid = next(f for f in report.findings if f.check == "geometries" and "invalid" in f.details)
    assert invalid.details["invalid"] == 1 and "repaired" in invalid.message
    nulls = next(f for f in report.findings if f.check == "geometries" and "null" in f.details)
    assert nulls.details["null"] + nulls.details["empty"] == 2
    dropped = check(raster, path, invalid_geometries="drop")
    assert any(f.details.get("action") == "drop" for f in dropped.findings if f.check == "geometries")
    assert dropped.ok and report.ok


def pd_concat(a, b):
    import pandas as pd

    return pd.concat([a, b], ignore_index=True)


def test_missing_class_field_lists_the_fields(scene):
    raster, labels, _ = scene
    report = check(raster, labels, class_field="klass")
    f = only(report, "class_field", "error")
    assert "'klass'" in f.message and "code" in f.message and "name" in f.message


def test_no_class_field_suggests_class_value(scene):
    raster, labels, _ = scene
    f = only(check(raster, labels, class_field=None), "class_field", "error")
    assert "--class-value" in f.fix


def test_fractional_and_missing_class_values(scene, tmp_path):
    raster, _, grid = scene
    gdf = scene_polygons(grid)
    gdf["code"] = gdf["code"].astype(float)
    gdf.loc[0, "code"] = 1.5
    path = tmp_path / "frac.gpkg"
    write_vector(gdf, path)
    f = only(check(raster, path), "class_values", "error")
    assert "1.5" in f.message
    gdf["code"] = [1, None, 2, 2, 3, 3, 1]
    write_vector(gdf, path)
    w = only(check(raster, path), "class_values", "warning")
    assert w.details["missing"] == 1


def test_string_class_values_are_accepted(scene):
    raster, labels, _ = scene
    report = check(raster, labels, class_field="name")
    assert report.ok
    assert [c.value for c in report.labels.classes] == ["forest", "water", "wheat"]


def test_conflicting_class_names_are_flagged(scene, tmp_path):
    raster, _, grid = scene
    gdf = scene_polygons(grid)
    gdf.loc[1, "name"] = "barley"
    path = tmp_path / "names.gpkg"
    write_vector(gdf, path)
    f = only(check(raster, path, class_name_field="name"), "class_names", "warning")
    assert "22531" in f.message and "barley" in f.message and "wheat" in f.message


def test_tile_much_larger_than_polygons_suggests_a_size(tmp_path):
    grid = make_grid(width=600, height=600, res=500.0)
    raster = make_raster(tmp_path / "r.tif", grid, nodata_cols=0)
    polys = [pixel_box(grid, c, r, c + 3, r + 3) for r in range(10, 590, 60) for c in range(10, 590, 60)]
    path = tmp_path / "small.gpkg"
    write_vector(gpd.GeoDataFrame({"code": [1, 2] * (len(polys) // 2)}, geometry=polys, crs=grid.crs), path)
    f = only(check(raster, path, tile_size_x=256, tile_size_y=256), "tile_size", "warning")
    assert "128 km" in f.message and "9 px" in f.message
    assert f.details["suggested_tile_size"] == 32 and "--tile-size 32" in f.fix


def test_tile_larger_than_raster_is_an_error(scene):
    raster, labels, _ = scene
    f = only(check(raster, labels, tile_size_x=128, tile_size_y=128), "tile_size", "error")
    assert "64 x 48" in f.message


def test_class_imbalance_warns_under_one_percent(tmp_path):
    grid = make_grid(width=128, height=128)
    raster = make_raster(tmp_path / "r.tif", grid, nodata_cols=0)
    geoms = [pixel_box(grid, 0, 0, 100, 100), pixel_box(grid, 110, 110, 113, 113), pixel_box(grid, 120, 0, 122, 2)]
    path = tmp_path / "imb.gpkg"
    write_vector(gpd.GeoDataFrame({"code": [1, 2, 2]}, geometry=geoms, crs=grid.crs), path)
    f = only(check(raster, path), "class_balance", "warning")
    assert "focal" in f.fix and "oversample" in f.fix
    assert f.details["classes"][1]["pixels"] == 13


def test_labels_on_nodata_are_reported(scene):
    raster, labels, _ = scene
    f = only(check(raster, labels), "nodata")
    assert f.details["labelled_on_nodata"] == 2 * 6  # cols 2-3 of the 7x6 polygon on the nodata strip


def split_findings(report, severity=None):
    return [f for f in report.findings if f.check == "split" and (severity is None or f.severity == severity)]


def test_single_polygon_class_is_cut_and_flagged(scene, tmp_path):
    raster, _, grid = scene
    gdf = scene_polygons(grid).iloc[[0, 1, 2, 4, 5]]  # class 7 keeps one polygon
    path = tmp_path / "one.gpkg"
    write_vector(gdf, path)
    report = check(raster, path, class_name_field="name")
    water = report.labels.classes[1]
    assert water.name == "water" and report.census.class_pixels[water.index, 1] > 0  # now in validation too
    warn = next(f for f in split_findings(report, "warning") if f.details.get("class") == "water")
    assert warn.message.startswith("water has 1 polygon: held-out estimates for it rest on one polygon")
    assert "draw more polygons of this class in different places" in warn.fix.lower()
    cut = next(f for f in split_findings(report, "info") if f.details.get("class") == "water")
    assert "was cut in two" in cut.message and "validation.gpkg" in cut.fix
    assert cut.details["val_pixels"] + cut.details["train_pixels"] == 64


def test_two_polygon_class_rests_on_one_polygon(tmp_path):
    grid = make_grid(width=128, height=128)
    raster = make_raster(tmp_path / "r.tif", grid, nodata_cols=0)
    boxes = [(0, 0, 6, 6), (20, 0, 30, 10)]  # Emergent Wetland: two polygons
    boxes += [(12 * i, 40, 12 * i + 8, 48) for i in range(10)]  # Sand: ten equal polygons
    names = ["Emergent Wetland"] * 2 + ["Sand"] * 10
    gdf = gpd.GeoDataFrame({"code": [1] * 2 + [2] * 10, "name": names},
                           geometry=[pixel_box(grid, *b) for b in boxes], crs=grid.crs)  # fmt: skip
    path = tmp_path / "wet.gpkg"
    write_vector(gdf, path)
    report = check(raster, path, class_name_field="name")
    warnings = split_findings(report, "warning")
    assert [f.details.get("class") for f in warnings] == ["Emergent Wetland"]
    assert warnings[0].message == "Emergent Wetland has 2 polygons: held-out estimates for it rest on one polygon."
    assert warnings[0].details == {"class": "Emergent Wetland", "polygons": 2, "validation_polygons": 1}
    assert "with 10 or more" in warnings[0].fix
    assert not any(f.details.get("class") == "Sand" for f in split_findings(report))  # ten whole polygons: fine
    sand = report.census.class_pixels[1]
    assert sand[1] == 2 * 64  # two of ten equal polygons held out: exactly 20 %


def test_small_area_shrinks_blocks_with_an_info(tmp_path):
    grid = make_grid(width=256, height=256)
    raster = make_raster(tmp_path / "r.tif", grid, nodata_cols=0)
    path = tmp_path / "obj.gpkg"
    write_vector(gpd.GeoDataFrame({"code": [1, 1]}, geometry=[pixel_box(grid, 100, 100, 110, 120),
                                                               pixel_box(grid, 130, 105, 140, 112)], crs=grid.crs),
                 path)  # fmt: skip
    mask = tmp_path / "aoi.gpkg"
    write_vector(gpd.GeoDataFrame(geometry=[pixel_box(grid, 96, 96, 176, 160)], crs=grid.crs), mask)
    report = check(raster, path, tile_size_x=32, tile_size_y=32, background_class=True, mask=mask)
    info = next(f for f in split_findings(report, "info") if "block_size" in f.details)
    assert info.details["block_size"] < info.details["requested_block_size"] == 64  # the default here
    assert f"uses {info.details['block_size']}-px blocks" in info.message and "--block-size" in info.fix
    assert report.labels.block_size == info.details["block_size"]
    assert report.ok


def test_one_block_leaves_classes_without_validation(scene):
    raster, labels, _ = scene
    report = run_checks(CheckConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=16,
                                          tile_size_y=16, background_class=True, block_size=64))  # fmt: skip
    f = next(f for f in split_findings(report, "warning") if "no validation pixels" in f.message)
    assert set(f.details["classes"]) == {"background", "3", "7", "22531"}
    assert report.census.class_pixels[:, 0].sum() > 0  # all stays in training, never all held out


def test_class_far_from_the_fraction_is_a_warning(scene):
    raster, labels, _ = scene
    from terralearn.checks.labels import check_split

    report = check(raster, labels, class_name_field="name")
    census = report.census
    census.class_pixels[0] = [10, 90]  # pretend forest lost most of its training pixels
    found = [f for f in check_split(report.inputs, report.labels, census) if "held_out_fraction" in f.details]
    assert found and found[0].details["class"] == "forest"
    assert "90% of forest's labelled pixels are held out" in found[0].message
    assert "training keeps only 10%" in found[0].message


def test_rasters_that_do_not_overlap_are_an_error(scene, tmp_path):
    raster, labels, _ = scene
    far = make_grid(origin=(900_000, 4_650_000))
    other = make_raster(tmp_path / "far.tif", far)
    f = only(check(raster, labels, rasters=[raster, other]), "raster_overlap", "error")
    assert "far.tif" in f.message


def test_raster_on_another_grid_is_resampled_info(scene, tmp_path):
    raster, labels, _ = scene
    coarse = make_grid(width=20, height=20, res=40.0)
    other = tmp_path / "coarse.tif"
    write_raster(other, np.ones((1, 20, 20), np.float32), coarse)
    f = only(check(raster, labels, rasters=[raster, other]), "raster_resampled", "info")
    assert f.details["resampling"] == "bilinear"
    fine = make_grid(width=160, height=120, res=4.0)
    other2 = tmp_path / "fine.tif"
    write_raster(other2, np.ones((1, 120, 160), np.float32), fine)
    f2 = only(check(raster, labels, rasters=[raster, other2]), "raster_resampled", "info")
    assert f2.details["resampling"] == "average"


def test_report_serialises(scene):
    raster, labels, _ = scene
    d = check(raster, labels).as_dict()
    assert d["ok"] is True and set(d["counts"]) == {"error", "warning", "info"}
