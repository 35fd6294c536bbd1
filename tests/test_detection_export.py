"""Export for object detection: chips and boxes in PASCAL VOC, KITTI or COCO, an honest split, plain-words checks."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from terralearn.config import ExportConfig
from terralearn.errors import ChecksFailedError, ConfigError, LabelError
from terralearn.export import export
from terralearn.io.annotations import read_coco, read_voc
from terralearn.io.chips import read_manifest
from terralearn.io.vector import write_vector
from tests.data.make_data import make_objects_scene, pixel_box

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(raster, labels, out, **kw):
    kw = {"class_field": "kind", "tile_size_x": 32, "tile_size_y": 32, "task": "detection", **kw}
    return export(ExportConfig.build(rasters=[raster], labels=labels, out=out, **kw))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_objects_scene(tmp_path_factory.mktemp("objects"))


def voc_boxes(root: Path, tiles: gpd.GeoDataFrame):
    """Every chip's objects moved back to raster pixels: (chip split, box, label, truncated)."""
    out = []
    for t in tiles.itertuples():
        xml = read_voc(root / t.label, allow_empty=True)
        for box, label, cut in zip(xml.boxes, xml.labels, xml.truncated, strict=True):
            out.append((t.split, tuple((box + np.array([t.col, t.row, t.col, t.row])).tolist()), label, bool(cut)))
    return out


def test_pascal_voc_chips_hold_every_whole_object_with_its_class(scene, tmp_path):
    raster, labels, grid, boxes, names = scene
    result = run(raster, labels, tmp_path / "voc", stride_x=16, stride_y=16, val_fraction=0.0)
    root = tmp_path / "voc"
    m = read_manifest(root)
    assert (m["schema_version"], m["task"], m["format"]) == (2, "detection", "pascal_voc")
    assert [c["name"] for c in m["classes"]] == ["boat", "car"] and m["band_count"] == 4
    assert m["objects"]["labelled"] == [names.count("boat"), names.count("car")]
    tiles = gpd.read_file(root / "tiles.gpkg")
    assert len(tiles) == result.chips > 0 and tiles.crs == grid.crs and (tiles["objects"] > 0).all()
    with rasterio.open(root / tiles.iloc[0].image) as chip:  # chips are georeferenced GeoTIFFs of all bands
        assert chip.count == 4 and chip.crs == grid.crs and chip.shape == (32, 32)
        assert chip.transform.c == grid.transform.c + tiles.iloc[0].col * 0.5
    found = voc_boxes(root, tiles)
    whole = {(b, lab) for _, b, lab, cut in found if not cut}
    # every object lies whole in some chip at stride 16, with its class, at its pixel position
    assert whole == {(tuple(map(float, b)), n) for b, n in zip(boxes.tolist(), names, strict=True)}
    xml = ET.parse(root / tiles.iloc[0].label).getroot()
    assert xml.find("size/depth").text == "4" and xml.find("filename").text.endswith(".tif")


def test_min_visible_counts_cut_objects_and_flags_them_truncated(scene, tmp_path):
    raster, labels, *_ = scene
    run(raster, labels, tmp_path / "cut", min_visible=0.3, val_fraction=0.0)
    tiles = gpd.read_file(tmp_path / "cut" / "tiles.gpkg")
    found = voc_boxes(tmp_path / "cut", tiles)
    assert any(cut for *_, cut in found)  # objects across chip edges are kept, flagged
    run(raster, labels, tmp_path / "whole", min_visible=1.0, val_fraction=0.0)
    whole = voc_boxes(tmp_path / "whole", gpd.read_file(tmp_path / "whole" / "tiles.gpkg"))
    assert whole and not any(cut for *_, cut in whole) and len(whole) < len(found)


def test_kitti_and_coco_layouts(scene, tmp_path):
    raster, labels, *_ = scene
    run(raster, labels, tmp_path / "kitti", metadata_format="kitti", val_fraction=0.0)
    tiles = gpd.read_file(tmp_path / "kitti" / "tiles.gpkg")
    line = (tmp_path / "kitti" / tiles.iloc[0].label).read_text().splitlines()[0].split()
    assert line[0] in ("car", "boat") and len(line) == 15
    run(raster, labels, tmp_path / "coco", metadata_format="coco", val_fraction=0.0)
    images = read_coco(tmp_path / "coco" / "annotations.json", allow_empty=True)
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert {c["name"] for c in doc["categories"]} == {"car", "boat"}
    assert len(images) == len(gpd.read_file(tmp_path / "coco" / "tiles.gpkg"))
    assert sum(len(i) for i in images) == len(doc["annotations"]) > 0


def test_the_split_never_shows_an_object_in_training_and_validation(scene, tmp_path):
    raster, labels, *_ = scene
    result = run(raster, labels, tmp_path / "split", stride_x=16, stride_y=16, val_fraction=0.3, block_size=64,
                 min_visible=0.01)  # fmt: skip
    assert result.train_chips > 0 and result.val_chips > 0
    found = voc_boxes(tmp_path / "split", gpd.read_file(tmp_path / "split" / "tiles.gpkg"))
    tiles = gpd.read_file(tmp_path / "split" / "tiles.gpkg")
    by_split = {s: [shapely.box(*b) for sp, b, *_ in found if sp == s] for s in ("train", "val")}
    # no box of one split overlaps a box (or a chip) of the other
    val_chips = [shapely.box(t.col, t.row, t.col + 32, t.row + 32) for t in tiles.itertuples() if t.split == "val"]
    assert not any(a.intersection(b).area > 0 for a in by_split["train"] for b in by_split["val"])
    assert not any(a.intersection(c).area > 0 for a in by_split["train"] for c in val_chips)


def test_empty_chips_are_kept_at_the_ratio_asked(scene, tmp_path):
    raster, labels, *_ = scene
    few = run(raster, labels, tmp_path / "few", val_fraction=0.0)
    more = run(raster, labels, tmp_path / "more", val_fraction=0.0, empty_ratio=0.5)
    tiles = gpd.read_file(tmp_path / "more" / "tiles.gpkg")
    assert (tiles["objects"] == 0).sum() == more.chips - few.chips > 0
    assert (tiles["objects"] == 0).sum() <= round(0.5 * few.chips)


def test_points_need_a_buffer_and_then_become_boxes(scene, tmp_path):
    _, _, grid, boxes, names = scene
    raster = scene[0]
    centres = [pixel_box(grid, *b).centroid for b in boxes.tolist()]
    points = tmp_path / "points.gpkg"
    write_vector(gpd.GeoDataFrame({"kind": names}, geometry=centres, crs=grid.crs), points)
    with pytest.raises(LabelError, match="--buffer-radius"):
        run(raster, points, tmp_path / "no")
    assert not (tmp_path / "no").exists()
    result = run(raster, points, tmp_path / "yes", buffer_radius=2.0, val_fraction=0.0)  # 4 m = 8 px boxes
    assert result.chips > 0 and sum(result.manifest["objects"]["labelled"]) == len(names)


def test_bad_inputs_are_refused_in_plain_words_without_output(scene, tmp_path):
    raster, labels, grid, *_ = scene
    with pytest.raises(LabelError, match=r"'class'.*fields are \['kind'\]"):
        run(raster, labels, tmp_path / "a", class_field="class")
    outside = tmp_path / "outside.gpkg"
    write_vector(gpd.GeoDataFrame({"kind": ["car"]}, geometry=[pixel_box(grid, 500, 500, 510, 510)], crs=grid.crs),
                 outside)  # fmt: skip
    with pytest.raises(ChecksFailedError, match="outside the image"):
        run(raster, outside, tmp_path / "b")
    empty = tmp_path / "empty.gpkg"
    write_vector(gpd.GeoDataFrame({"kind": []}, geometry=[], crs=grid.crs), empty)
    with pytest.raises(LabelError, match="no feature"):
        run(raster, empty, tmp_path / "c")
    with pytest.raises(ConfigError, match="random chip split"):
        run(raster, labels, tmp_path / "d", split="random")
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_checks_warn_of_small_large_few_and_duplicate_objects(scene, tmp_path):
    raster, _, grid, *_ = scene
    geoms = [pixel_box(grid, 5, 5, 7, 7), pixel_box(grid, 20, 20, 70, 70), pixel_box(grid, 80, 80, 90, 90),
             pixel_box(grid, 80, 80, 90, 90)]  # fmt: skip
    labels = tmp_path / "odd.gpkg"
    write_vector(gpd.GeoDataFrame({"kind": ["car"] * 4}, geometry=geoms, crs=grid.crs), labels)
    result = run(raster, labels, tmp_path / "odd", val_fraction=0.0)
    found = {f.check: f for f in result.findings}
    assert {"objects_small", "objects_large", "classes_few_objects", "duplicate_objects"} <= set(found)
    assert "--tile-size 64" in found["objects_large"].fix and found["duplicate_objects"].details["pairs"] == 1


@pytest.mark.shared
def test_dota_ships_export_from_an_image_without_georeferencing(tmp_path):
    dota = SHARED / "dota_samples"
    if not dota.is_dir():
        pytest.skip("../shared/data is not here")
    result = run(dota / "images" / "P0706.png", dota / "labelTxt" / "P0706.txt", tmp_path / "dota", class_field=None,
                 tile_size_x=256, tile_size_y=256, stride_x=128, stride_y=128, val_fraction=0.0)  # fmt: skip
    m = result.manifest
    assert m["grid"]["georeferenced"] is False and m["objects"]["labelled"] == [5, 531]  # harbor, ship
    assert "objects_large" in {f.check for f in result.findings}  # harbours are larger than a chip
    tiles = gpd.read_file(tmp_path / "dota" / "tiles.gpkg")
    ships = {b for _, b, lab, cut in voc_boxes(tmp_path / "dota", tiles) if lab == "ship" and not cut}
    assert len(ships) > 500
    assert np.isfinite(m["statistics"][0]["mean"])


def test_cli_exports_detection_chips_and_evaluates_detections(scene, tmp_path):
    from typer.testing import CliRunner

    from terralearn.cli.app import app
    from terralearn.geo.boxes import pixel_to_map
    from terralearn.io.detections import write_detections

    raster, labels, grid, boxes, names = scene
    runner = CliRunner()
    env = {"TERRALEARN_WORKSPACE": str(tmp_path / "ws")}
    args = ["export", "--task", "detection", "-r", raster, "-l", labels, "--class-field", "kind", "--tile-size", 32,
            "--format", "coco", "--empty-ratio", "0.2", "--out", tmp_path / "chips"]  # fmt: skip
    done = runner.invoke(app, [str(a) for a in args], env=env)
    assert done.exit_code == 0, done.output
    assert "objects" in done.output and (tmp_path / "chips" / "annotations.json").exists()
    # the reference itself as detections (score 0.9) and one false positive: every object found, one FP
    classes = [{"index": 0, "value": 1, "name": "boat", "colour": "#1f77b4"},
               {"index": 1, "value": 2, "name": "car", "colour": "#d62728"}]  # fmt: skip
    fake = np.vstack([boxes, [[100, 100, 108, 108]]])
    kinds = [*names, "car"]
    values = [1 if k == "boat" else 2 for k in kinds]  # matched to the reference's text classes by name
    write_detections(tmp_path / "det.gpkg", pixel_to_map(fake, grid.transform), values, kinds,
                     [0.9] * len(names) + [0.1], grid.crs, classes)  # fmt: skip
    args = ["evaluate", "-p", tmp_path / "det.gpkg", "-r", labels, "--class-field", "kind", "-o", tmp_path / "eval"]
    done = runner.invoke(app, [str(a) for a in args], env=env)
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    car = next(r for r in metrics["per_class"] if r["class_name"] == "car")
    assert metrics["map50"] == pytest.approx(1.0, abs=0.01) and (car["tp"], car["fp"], car["fn"]) == (12, 1, 0)
    assert "mAP@0.5 1.000" in done.output and (tmp_path / "eval" / "report.html").exists()
