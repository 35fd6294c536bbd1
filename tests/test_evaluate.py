"""`terralearn evaluate`: a classified map + reference data -> confusion, metrics, area estimates, report.

The synthetic map (64 x 48 pixels of 10 m, EPSG:32631) is built so that every expected count is known exactly:

    cols 0-3     nodata (255) on every row
    rows 0-39    cols 4-31 class 0 'wheat' (value 22531), cols 32-63 class 1 'water' (value 7)
    rows 40-47   cols 4-63 class 2 'forest' (value 3)

Reference polygons follow pixel edges (pixel centres are half a pixel from any edge, so reprojection to another CRS
and back cannot move a pixel in or out).
"""

from __future__ import annotations

import json
import re

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import typer
from typer.testing import CliRunner

import terralearn.evaluate.maps as ev
from terralearn.cli.evaluate import evaluate as evaluate_command
from terralearn.config import EvaluateConfig
from terralearn.errors import ConfigError, LabelError, OutputExistsError, RasterError
from terralearn.evaluate import evaluate
from terralearn.evaluate.area import area_adjusted_accuracy
from terralearn.io.raster import CLASS_TABLE_TAG, write_raster
from terralearn.io.vector import write_vector
from tests.data.make_data import make_grid, make_raster, pixel_box

CLASSES = [
    {"index": 0, "value": 22531, "name": "wheat", "colour": "#ffd92f"},
    {"index": 1, "value": 7, "name": "water", "colour": "#1f78b4"},
    {"index": 2, "value": 3, "name": "forest", "colour": "#1b7837"},
]
VALUES = [c["value"] for c in CLASSES]
PNG = b"\x89PNG\r\n\x1a\n"


def map_indices() -> np.ndarray:
    idx = np.full((48, 64), 255, dtype=np.uint8)
    idx[:40, 4:32] = 0
    idx[:40, 32:] = 1
    idx[40:, 4:] = 2
    return idx


MAPPED = [28 * 40, 32 * 40, 60 * 8]  # pixels per class over the whole map


def write_map(path, grid=None, indices=None, classes=CLASSES):
    grid = grid or make_grid()
    write_raster(path, map_indices() if indices is None else indices, grid, nodata=255)
    if classes is not None:
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(**{CLASS_TABLE_TAG: json.dumps(classes)})
    return path


def reference_polygons(grid, crs="EPSG:4326"):
    boxes = [
        (pixel_box(grid, 10, 5, 20, 15), 22531),  # 100 px, all mapped wheat
        (pixel_box(grid, 28, 20, 36, 25), 7),  # 20 px on wheat, 20 px on water
        (pixel_box(grid, 0, 40, 8, 46), 3),  # 24 px on map nodata (left out), 24 px on forest
        (pixel_box(grid, 60, 20, 70, 24), 3),  # partly outside the map: 16 px inside, mapped water
    ]
    gdf = gpd.GeoDataFrame({"code": [v for _, v in boxes], "note": ["a", "b", "c", "d"]},
                           geometry=[g for g, _ in boxes], crs=grid.crs)  # fmt: skip
    return gdf.to_crs(crs) if crs else gdf


# reference rows x map columns, in class order wheat, water, forest
EXPECTED = np.array([[100, 0, 0], [20, 20, 0], [0, 16, 24]])


@pytest.fixture
def case(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    ref = tmp_path / "reference.gpkg"
    write_vector(reference_polygons(grid), ref)
    return tmp_path, grid, pred, ref


def config(tmp_path, pred, ref, **kw):
    values = dict(prediction=pred, reference=ref, class_field="code", out=tmp_path / "eval")
    values.update(kw)
    return EvaluateConfig.build(**values)


# ----------------------------------------------------------------------------------------------- exact counts


def test_polygon_reference_in_another_crs_gives_the_exact_confusion(case):
    tmp_path, grid, pred, ref = case
    result = evaluate(config(tmp_path, pred, ref))
    m = result.metrics
    np.testing.assert_array_equal(m["confusion"], EXPECTED)
    assert m["reference_pixels"] == EXPECTED.sum() == 180
    assert m["reference_on_map_nodata"] == 24
    assert m["map_class_pixels"] == MAPPED
    assert m["reference_kind"] == "polygons"
    assert m["overall_accuracy"] == pytest.approx(144 / 180)
    wheat, water, forest = m["per_class"]
    assert (wheat["precision"], wheat["recall"]) == (pytest.approx(100 / 120), pytest.approx(1.0))
    assert (water["precision"], water["recall"]) == (pytest.approx(20 / 36), pytest.approx(0.5))
    assert forest["support"] == 40 and forest["iou"] == pytest.approx(24 / 40)
    assert [p["value"] for p in m["per_class"]] == VALUES
    assert {"kappa", "mean_iou", "dice", "classes", "inputs", "warnings", "grid"} <= set(m)
    assert "reference_on_nodata" in {w["code"] for w in m["warnings"]}
    # written files
    on_disk = json.loads((result.out / "metrics.json").read_text())
    assert on_disk["confusion"] == EXPECTED.tolist()
    assert result.confusion_png.read_bytes().startswith(PNG)
    assert result.report.exists() and result.report.parent == result.out
    assert not list(tmp_path.glob(".eval.tmp-*"))


def test_area_adjusted_estimates_use_the_whole_map(case):
    tmp_path, grid, pred, ref = case
    m = evaluate(config(tmp_path, pred, ref)).metrics
    aa = m["area_adjusted"]
    expected = area_adjusted_accuracy(EXPECTED, MAPPED, pixel_area=100.0)
    assert aa["overall_accuracy"] == pytest.approx(expected.overall_accuracy)
    assert aa["total_pixels"] == sum(MAPPED)
    rows = aa["per_class"]
    np.testing.assert_allclose([r["area_pixels"] for r in rows], expected.area_pixels)
    np.testing.assert_allclose([r["area"] for r in rows], expected.area_pixels * 100.0)  # m²
    np.testing.assert_allclose([r["area_km2"] for r in rows], expected.area_pixels * 100.0 / 1e6)
    assert aa["area_unit"] == "metre²"
    # user's accuracy of wheat = 100 / 120 reference pixels mapped wheat
    assert rows[0]["users_accuracy"] == pytest.approx(100 / 120)


def test_no_area_adjusted(case):
    tmp_path, grid, pred, ref = case
    m = evaluate(config(tmp_path, pred, ref, area_adjusted=False)).metrics
    assert "area_adjusted" not in m


def test_streaming_in_small_windows_counts_each_pixel_once(case, monkeypatch):
    tmp_path, grid, pred, ref = case
    big = evaluate(config(tmp_path, pred, ref, out=tmp_path / "a")).metrics
    monkeypatch.setattr(ev, "BLOCK", 7)  # windows that cut through polygons and leave ragged edges
    small = evaluate(config(tmp_path, pred, ref, out=tmp_path / "b")).metrics
    assert small["confusion"] == big["confusion"]
    assert small["map_class_pixels"] == big["map_class_pixels"] == MAPPED
    assert small["reference_on_map_nodata"] == big["reference_on_map_nodata"]


def test_point_reference_counts_the_pixel_under_each_point(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)

    def centre(col, row):
        return shapely.Point(*(grid.transform @ (col + 0.5, row + 0.5)))

    pts = [
        (centre(10, 10), 22531),  # wheat on wheat
        (centre(10, 10), 22531),  # a second sample in the same pixel counts again
        (centre(40, 10), 22531),  # wheat mapped water
        (centre(40, 11), 7),  # water on water
        (centre(2, 10), 7),  # on map nodata: left out
        (centre(20, 45), 3),  # forest on forest
        (shapely.Point(0, 0), 3),  # far outside the map
    ]
    gdf = gpd.GeoDataFrame({"code": [v for _, v in pts]}, geometry=[p for p, _ in pts], crs=grid.crs)
    ref = tmp_path / "points.geojson"
    write_vector(gdf.to_crs("EPSG:3857"), ref)
    m = evaluate(config(tmp_path, pred, ref)).metrics
    np.testing.assert_array_equal(m["confusion"], [[2, 1, 0], [0, 1, 0], [0, 0, 1]])
    assert m["reference_kind"] == "points"
    assert m["reference_on_map_nodata"] == 1
    assert m["map_class_pixels"] == MAPPED
    assert "reference_outside_map" in {w["code"] for w in m["warnings"]}


def test_reference_matched_by_class_name(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    gdf = reference_polygons(grid, crs=None)
    gdf["label"] = ["Wheat", "water", "forest", "forest"]  # names, any case
    ref = tmp_path / "names.gpkg"
    write_vector(gdf, ref)
    m = evaluate(config(tmp_path, pred, ref, class_field="label")).metrics
    np.testing.assert_array_equal(m["confusion"], EXPECTED)


def test_raster_reference_on_a_coarser_grid(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    coarse = make_grid(width=32, height=24, res=20.0)  # each reference pixel covers 2 x 2 map pixels
    ref_values = np.zeros((24, 32), dtype=np.uint16)  # 0 = no reference (nodata)
    ref_values[2:7, 5:10] = 22531  # map rows 4-13, cols 10-19: 100 px of wheat
    ref_values[10:12, 14:18] = 7  # map rows 20-23, cols 28-35: 16 px on wheat, 16 on water
    ref_values[21:23, 0:4] = 3  # map rows 42-45, cols 0-7: 16 on nodata, 16 on forest
    ref = tmp_path / "truth.tif"
    write_raster(ref, ref_values, coarse, nodata=0)
    m = evaluate(config(tmp_path, pred, ref, class_field=None)).metrics
    np.testing.assert_array_equal(m["confusion"], [[100, 0, 0], [16, 16, 0], [0, 0, 16]])
    assert m["reference_kind"] == "raster"
    assert m["reference_on_map_nodata"] == 16


def test_tagged_map_as_raster_reference(tmp_path):
    """A TerraLearn map as reference: its indices are translated through its own class table (nodata 255)."""
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    shuffled = [dict(c, index=i) for i, c in enumerate(reversed(CLASSES))]  # same classes, other indices
    ref_idx = np.full((48, 64), 255, dtype=np.uint8)
    idx = map_indices()
    for c in CLASSES:
        ref_idx[idx == c["index"]] = next(s["index"] for s in shuffled if s["value"] == c["value"])
    ref_idx[:, 40:] = 255  # no reference on the right
    ref = write_map(tmp_path / "truth.tif", grid, ref_idx, shuffled)
    m = evaluate(config(tmp_path, pred, ref, class_field=None)).metrics
    assert m["overall_accuracy"] == 1.0
    np.testing.assert_array_equal(m["confusion"], np.diag([28 * 40, 8 * 40, 36 * 8]))


def test_map_without_class_table_uses_pixel_values(tmp_path):
    grid = make_grid()
    values = np.zeros((48, 64), dtype=np.uint16)  # 0 = nodata
    idx = map_indices()
    for c in CLASSES:
        values[idx == c["index"]] = c["value"]
    pred = tmp_path / "plain.tif"
    write_raster(pred, values, grid, nodata=0)
    gdf = reference_polygons(grid)
    extra = gpd.GeoDataFrame({"code": [99], "note": ["e"]}, geometry=[pixel_box(grid, 50, 30, 52, 32)], crs=grid.crs)
    ref = tmp_path / "reference.gpkg"
    write_vector(gpd.pd.concat([gdf, extra.to_crs(gdf.crs)], ignore_index=True), ref)
    m = evaluate(config(tmp_path, pred, ref)).metrics
    # classes sorted by value: 3 (forest), 7 (water), 99 (never mapped), 22531 (wheat)
    assert [c["value"] for c in m["classes"]] == [3, 7, 99, 22531]
    cm = np.array(m["confusion"])
    pos = {22531: 3, 7: 1, 3: 0}
    for i, vi in enumerate(VALUES):
        for j, vj in enumerate(VALUES):
            assert cm[pos[vi], pos[vj]] == EXPECTED[i, j]
    assert cm[2].tolist() == [0, 4, 0, 0]  # the 99 polygon (2 x 2 px) lies on water
    assert m["map_class_pixels"] == [MAPPED[2], MAPPED[1], 0, MAPPED[0]]
    assert {"classes_never_mapped", "map_without_class_table"} <= {w["code"] for w in m["warnings"]}


# ----------------------------------------------------------------------------------------------- report


def test_report_holds_metrics_and_embedded_images(case):
    tmp_path, grid, pred, ref = case
    image = make_raster(tmp_path / "image.tif", make_grid(), bands=4, names=["blue", "green", "red", "nir"])
    result = evaluate(config(tmp_path, pred, ref, image=[image]))
    html = result.report.read_text()
    assert html.count("data:image/png;base64,") == 2  # confusion matrix and preview
    assert f"{144 / 180:.3f}" in html  # overall accuracy
    for name in ("wheat", "water", "forest", "Area-adjusted", "km²", "red, green, blue", "Producer"):
        assert name in html
    assert result.preview_png is not None and result.preview_png.read_bytes().startswith(PNG)
    assert (result.out / "confusion.png").exists()
    assert not re.search(r"<script", html)


def test_preview_with_chosen_bands_and_an_image_in_another_crs(case):
    tmp_path, grid, pred, ref = case
    other = make_grid(width=40, height=40, res=0.0002, crs=rasterio.crs.CRS.from_epsg(4326), origin=(2.99, 41.99))
    image = make_raster(tmp_path / "elsewhere.tif", other, bands=3)
    result = evaluate(config(tmp_path, pred, ref, image=[image], rgb_bands=[3, 2, 1]))
    html = result.report.read_text()
    assert "does not overlap the map" in html  # shown as a note; the map preview is still drawn
    assert result.preview_png is not None


def test_bad_rgb_bands_are_refused_before_any_work(case):
    tmp_path, grid, pred, ref = case
    image = make_raster(tmp_path / "image.tif", make_grid(), bands=3)
    with pytest.raises(ConfigError, match=r"band 9 does not exist; the image has 3 band"):
        evaluate(config(tmp_path, pred, ref, image=[image], rgb_bands=[1, 2, 9]))
    assert not (tmp_path / "eval").exists()


# ----------------------------------------------------------------------------------------------- bad inputs


def test_missing_class_field_lists_the_fields(case):
    tmp_path, grid, pred, ref = case
    with pytest.raises(LabelError, match=r"no field 'klass'; its fields are: code, note") as err:
        evaluate(config(tmp_path, pred, ref, class_field="klass"))
    assert "--class-field" in err.value.fix


def test_unknown_reference_value_lists_the_map_classes(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    gdf = reference_polygons(grid)
    gdf.loc[1, "code"] = 555
    ref = tmp_path / "reference.gpkg"
    write_vector(gdf, ref)
    with pytest.raises(LabelError, match=r"555.*0 = 22531 \(wheat\), 1 = 7 \(water\), 2 = 3 \(forest\)"):
        evaluate(config(tmp_path, pred, ref))


def test_unknown_values_outside_the_map_do_not_matter(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    gdf = reference_polygons(grid, crs=None)
    far = gpd.GeoDataFrame({"code": [555], "note": ["far"]}, geometry=[pixel_box(grid, 200, 0, 210, 10)], crs=grid.crs)
    ref = tmp_path / "reference.gpkg"
    write_vector(gpd.pd.concat([gdf, far], ignore_index=True), ref)
    m = evaluate(config(tmp_path, pred, ref)).metrics
    np.testing.assert_array_equal(m["confusion"], EXPECTED)
    assert m["reference_features"] == 4
    assert "reference_outside_map" in {w["code"] for w in m["warnings"]}


def test_unknown_raster_reference_value_lists_the_map_classes(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    ref_values = np.zeros((48, 64), dtype=np.uint16)
    ref_values[5:10, 10:20] = 42
    ref = tmp_path / "truth.tif"
    write_raster(ref, ref_values, grid, nodata=0)
    with pytest.raises(LabelError, match=r"42.*wheat"):
        evaluate(config(tmp_path, pred, ref, class_field=None))


def test_output_exists_needs_overwrite(case):
    tmp_path, grid, pred, ref = case
    out = tmp_path / "eval"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        evaluate(config(tmp_path, pred, ref))
    result = evaluate(config(tmp_path, pred, ref, overwrite=True))
    assert (result.out / "metrics.json").exists() and not (out / "old.txt").exists()


def test_reference_not_overlapping_the_map(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    far = make_grid(origin=(600_000.0, 4_650_000.0))
    ref = tmp_path / "far.gpkg"
    write_vector(reference_polygons(far, crs=None), ref)
    with pytest.raises(LabelError, match="does not overlap the map"):
        evaluate(config(tmp_path, pred, ref))


def test_reference_only_on_map_nodata(tmp_path):
    grid = make_grid()
    pred = write_map(tmp_path / "map.tif", grid)
    gdf = gpd.GeoDataFrame({"code": [3]}, geometry=[pixel_box(grid, 0, 0, 4, 10)], crs=grid.crs)
    ref = tmp_path / "nodata.gpkg"
    write_vector(gdf, ref)
    with pytest.raises(LabelError, match=r"No reference pixel .* \(40 fall on map nodata\)"):
        evaluate(config(tmp_path, pred, ref))


def test_multiband_map_is_refused(tmp_path, case):
    _, grid, _, ref = case
    pred = make_raster(tmp_path / "image.tif", grid, bands=3)
    with pytest.raises(RasterError, match="has 3 bands"):
        evaluate(config(tmp_path, pred, ref))


def test_missing_files(case):
    tmp_path, grid, pred, ref = case
    with pytest.raises(OSError, match="does not exist"):
        evaluate(config(tmp_path, tmp_path / "nope.tif", ref))
    with pytest.raises(OSError, match="does not exist"):
        evaluate(config(tmp_path, pred, tmp_path / "nope.gpkg"))


# ----------------------------------------------------------------------------------------------- CLI


def cli_app():
    app = typer.Typer()
    app.command()(evaluate_command)
    return app


def test_cli_prints_scores_and_outputs(case):
    tmp_path, grid, pred, ref = case
    out = tmp_path / "cli"
    args = ["--prediction", pred, "--reference", ref, "--class-field", "code", "--out", out,
            "--workspace", tmp_path / "ws"]  # fmt: skip
    result = CliRunner().invoke(cli_app(), [str(a) for a in args])
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert f"Overall accuracy {144 / 180:.3f}" in text
    assert "kappa" in text and "mean IoU" in text and "Area-adjusted overall accuracy" in text
    assert str(out / "report.html") in text.replace(" ", "") or "report.html" in text
    assert (out / "metrics.json").exists()


def test_cli_errors_are_one_clear_message(case):
    tmp_path, grid, pred, ref = case
    args = ["--prediction", pred, "--reference", ref, "--class-field", "klass", "--out", tmp_path / "cli"]
    result = CliRunner().invoke(cli_app(), [str(a) for a in args])
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "Traceback" not in text
    assert "no field 'klass'" in text and "code, note" in text
    bad = ["--prediction", pred, "--reference", ref, "--class-field", "code", "--out", tmp_path / "cli",
           "--rgb-bands", "red"]  # fmt: skip
    result = CliRunner().invoke(cli_app(), [str(a) for a in bad])
    assert result.exit_code == 2
    assert "3,2,1" in " ".join(result.output.split())
