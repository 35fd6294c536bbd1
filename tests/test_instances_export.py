"""`terralearn export --task instances`: image chips with instance masks, RCNN Masks, COCO polygons, U-Net-ID."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from terralearn.config import ExportConfig, TrainConfig
from terralearn.errors import ConfigError, LabelError
from terralearn.export import export
from terralearn.io.chips import open_chipset
from terralearn.io.raster import write_raster
from terralearn.io.vector import write_vector
from terralearn.train import train
from tests.data.make_data import make_grid, make_objects_scene, pixel_box


def run(raster, labels, out, **kw):
    kw = {"class_field": "kind", "tile_size_x": 64, "tile_size_y": 64, "stride_x": 32, "stride_y": 32,
          "task": "instances", "val_fraction": 0.25, **kw}  # fmt: skip
    return export(ExportConfig.build(rasters=[raster], labels=labels, out=out, **kw))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("instances")
    raster, labels, grid, boxes, names = make_objects_scene(root, bands=3, size=192, n=40, seed=3)
    return root, raster, labels, grid, boxes, names


def read(path):
    with rasterio.open(path) as src:
        return src.read(), src.transform, src.crs


def test_every_chip_gets_an_instance_mask_with_the_objects_it_shows(scene, tmp_path):
    root, raster, labels, grid, boxes, names = scene
    result = run(raster, labels, tmp_path / "chips")
    chipset = open_chipset(tmp_path / "chips")
    m = chipset.manifest
    assert (m["task"], m["format"], m["schema_version"]) == ("instances", "rcnn_masks", 2)
    assert result.train_chips > 0 and result.val_chips > 0 and m["chips"]["count"] == result.chips
    classes = {c["name"]: c["index"] + 1 for c in m["classes"]}
    for tile in chipset.tiles:
        stem = f"{tile['chip_id']:09d}"
        (ids, cls), transform, crs = read(tmp_path / "chips" / "instances" / f"{stem}.tif")
        assert crs == grid.crs and transform.c == pytest.approx(grid.transform.c + tile["col"] * grid.transform.a)
        # each labelled square showing in the chip is one instance with its class, pixel for pixel
        r0, c0 = tile["row"], tile["col"]
        for (x0, y0, x1, y1), name in zip(boxes.astype(int), names, strict=True):
            part = ids[max(y0 - r0, 0) : max(y1 - r0, 0), max(x0 - c0, 0) : max(x1 - c0, 0)]
            if part.size:
                assert len(np.unique(part)) == 1 and part[0, 0] > 0
                assert (cls[ids == part[0, 0]] == classes[name]).all()
        assert (ids > 0).sum() == sum(
            max(0, min(y1 - r0, 64) - max(y0 - r0, 0)) * max(0, min(x1 - c0, 64) - max(x0 - c0, 0))
            for x0, y0, x1, y1 in boxes.astype(int)
        )  # fmt: skip
        # RCNN Masks: one mask per class present, unique IDs per instance
        for value in np.unique(cls[cls > 0]).tolist():
            (mask,), _, _ = read(tmp_path / "chips" / "labels" / str(value) / f"{stem}.tif")
            assert (mask == np.where(cls == value, ids, 0)).all()


def test_coco_instances_and_unet_id_targets(scene, tmp_path):
    root, raster, labels, *_ = scene
    run(raster, labels, tmp_path / "coco", metadata_format="coco_instances")
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert {c["name"] for c in coco["categories"]} == {"car", "boat"}
    ann = coco["annotations"][0]
    xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
    assert ann["bbox"] == [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    assert ann["area"] == pytest.approx(shapely.Polygon(list(zip(xs, ys, strict=True))).area)
    run(raster, labels, tmp_path / "uid", metadata_format="unet_id", border_width=1, interior_erosion=1)
    chipset = open_chipset(tmp_path / "uid")
    stem = f"{chipset.tiles[0]['chip_id']:09d}"
    (obj, border, interior), _, _ = read(tmp_path / "uid" / "labels" / f"{stem}.tif")
    (ids, _), _, _ = read(tmp_path / "uid" / "instances" / f"{stem}.tif")
    assert (obj == (ids > 0)).all() and border.sum() > 0 and interior.sum() > 0
    assert not (border & interior).any() and ((border | interior) == obj).all()  # 1-px border, 1-px erosion


def test_an_instance_id_raster_is_a_label_source(tmp_path):
    grid = make_grid(width=96, height=96, res=1.0)
    image = np.random.default_rng(0).normal(100, 5, (1, 96, 96)).astype("float32")
    ids = np.zeros((96, 96), np.int32)
    for k, (r, c) in enumerate([(r, c) for r in range(4, 90, 24) for c in range(4, 90, 24)], start=1):
        ids[r : r + 10, c : c + 10] = k
        ids[r + 10 : r + 14, c : c + 4] = k  # an L: not a box
        image[0, r : r + 10, c : c + 10] += 50
    write_raster(tmp_path / "img.tif", image, grid)
    write_raster(tmp_path / "ids.tif", ids[None].astype("uint16"), grid, nodata=0)
    result = run(tmp_path / "img.tif", tmp_path / "ids.tif", tmp_path / "chips", class_field=None,
                 class_value="building")  # fmt: skip
    m = result.manifest
    assert [c["name"] for c in m["classes"]] == ["building"] and m["objects"]["labelled"] == [16]
    # an instance raster with no ID: a plain error, nothing written
    write_raster(tmp_path / "none.tif", np.zeros((1, 96, 96), "uint16"), grid, nodata=0)
    with pytest.raises(LabelError, match="holds no object ID"):
        run(tmp_path / "img.tif", tmp_path / "none.tif", tmp_path / "none", class_field=None, class_value="b")
    assert not (tmp_path / "none").exists()


def test_bad_instance_inputs_are_refused_in_plain_words(scene, tmp_path):
    root, raster, labels, grid, *_ = scene
    points = gpd.GeoDataFrame({"kind": ["car"]}, geometry=[shapely.Point(grid.transform @ (10, 10))], crs=grid.crs)
    write_vector(points, tmp_path / "points.gpkg")
    with pytest.raises(LabelError, match="no polygons"):
        run(raster, tmp_path / "points.gpkg", tmp_path / "p")
    assert not (tmp_path / "p").exists()
    with pytest.raises(LabelError, match="class field 'nope'"):
        run(raster, labels, tmp_path / "f", class_field="nope")
    with pytest.raises(ConfigError, match="random chip split"):
        run(raster, labels, tmp_path / "r", split="random")
    with pytest.raises(ValueError, match="not one for instances"):
        run(raster, labels, tmp_path / "v", metadata_format="pascal_voc")
    # overlapping outlines are exported with a warning
    a, b = pixel_box(grid, 10, 10, 30, 30), pixel_box(grid, 20, 20, 40, 40)
    write_vector(gpd.GeoDataFrame({"kind": ["car", "car"]}, geometry=[a, b], crs=grid.crs), tmp_path / "o.gpkg")
    result = run(raster, tmp_path / "o.gpkg", tmp_path / "o")
    assert any(f.check == "overlapping_instances" for f in result.findings)
    # a detector is no instance model
    with pytest.raises(ConfigError, match="is an object detector; the chip set is for instance segmentation"):
        train(TrainConfig.build(chips=tmp_path / "o", out=tmp_path / "pkg", model="faster_rcnn_resnet18_fpn",
                                workspace=tmp_path / "ws"))  # fmt: skip
    assert not (tmp_path / "pkg").exists()


def test_mask_rcnn_trains_on_instance_chips_and_scores_masks_on_held_out_blocks(tmp_path):
    import torch

    from terralearn.errors import PackageError
    from terralearn.predict.detector_loader import load_detector
    from terralearn.train.detection import load_detection_data

    raster, labels, *_ = make_objects_scene(tmp_path, bands=2, size=192, n=14, seed=5)
    run(raster, labels, tmp_path / "chips")  # few objects: a quick run
    rows = []
    result = train(TrainConfig.build(chips=tmp_path / "chips", out=tmp_path / "pkg", epochs=2, batch_size=4,
                                     workspace=tmp_path / "ws"), on_epoch=rows.append)  # fmt: skip
    card = result.card
    assert (result.status, card["task"], card["architecture"]) == ("finished", "instances", "mask_rcnn_resnet18_fpn")
    # validation is mask mAP on the held-out blocks' true masks (a few CPU epochs: a figure, not a goal)
    assert result.metrics["val_objects"] > 0, result.metrics
    assert 0.0 <= result.metrics["map50"] <= 1.0, result.metrics
    epochs = [r for r in rows if "stage" not in r]
    assert [r["epoch"] for r in epochs] == [1, 2] and "train_loss_mask" in epochs[0]  # the mask branch trains
    assert card["refit"]["epochs"] == 2  # refitted on every chip, as detectors are
    data = load_detection_data(open_chipset(tmp_path / "chips"))
    image, target = data.val[0]
    assert target["masks"].shape[1:] == image.shape[1:] and len(target["masks"]) == len(target["labels"])
    loaded = load_detector(tmp_path / "pkg", task="instances")
    with torch.no_grad():
        out = loaded.network([image])[0]
    assert out["masks"].shape[-2:] == image.shape[-2:]
    with pytest.raises(PackageError, match="instance segmentation"):
        load_detector(tmp_path / "pkg")  # a box detector is asked for
    # `detect` on the instance package: a GeoPackage of polygons (untrained enough to find anything or not)
    from terralearn.config import DetectConfig
    from terralearn.predict.detect import detect

    found = detect(DetectConfig(model=tmp_path / "pkg", rasters=[raster], out=tmp_path / "obj.gpkg", tile_size=64))
    assert found.out.exists() and found.tiles > 1
    assert "Mask mAP at IoU 0.5" in result.report.read_text()
