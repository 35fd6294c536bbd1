"""The task registry, schema version 2 of chip sets and packages (version 1 still loads), tasks in the run table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from terralearn.config import ClassifyConfig, ExportConfig
from terralearn.errors import ChipSetError, ConfigError, PackageError
from terralearn.export import export
from terralearn.io.chips import MANIFEST, open_chipset, read_manifest
from terralearn.io.package import CARD, load_package, save_package
from terralearn.predict import classify
from terralearn.runs import Registry
from terralearn.tasks import TASKS, get_task
from tests.data.make_data import make_raster, make_scene

CLASSES = [{"index": 0, "value": 1, "name": "ship", "colour": "#ff0000"}]


def fake_package(path, task, schema_version=None):
    card = {"task": task, "architecture": "faster_rcnn_resnet18_fpn", "bands": ["b1", "b2", "b3"], "band_count": 3,
            "classes": CLASSES, "normalisation": {"mean": [0, 0, 0], "std": [1, 1, 1]}}  # fmt: skip
    out = save_package(path, {"w": np.zeros(3, np.float32)}, card)
    if schema_version is not None:
        saved = json.loads((out / CARD).read_text())
        (out / CARD).write_text(json.dumps({**saved, "schema_version": schema_version}))
    return out


def test_every_task_declares_its_contract():
    for name, task in TASKS.items():
        assert task.name == name and task.label_formats and task.headline and task.command
    assert get_task("detection").headline == "map50" and get_task("detection").label_formats[0] == "pascal_voc"
    with pytest.raises(ConfigError, match="pixel_classification, detection"):
        get_task("segmentation")


def test_the_stages_run_through_the_registry():
    import inspect

    every = ("export", "train", "summary", "report", "onnx", "predict", "evaluate")
    for name in ("pixel_classification", "detection"):  # the two tasks share one path: each has every stage
        task = get_task(name)
        assert set(task.stages) == set(every) and task.batch_size > 0
        for stage in every:
            assert callable(task.stage(stage)), (name, stage)
    # one signature per stage across tasks (what the shared path calls)
    for stage in ("export", "train", "summary", "report"):
        a, b = (list(inspect.signature(get_task(t).stage(stage)).parameters) for t in ("pixel_classification",
                                                                                   "detection"))  # fmt: skip
        assert len(a) == len(b), stage
    assert get_task("detection").stage("export").__name__ == "export_detection"
    assert get_task("instances").stage("export").__name__ == "export_instances"
    assert get_task("instances").stage("train") is get_task("detection").stage("train")  # Mask R-CNN: same loop
    with pytest.raises(ConfigError, match="has no evaluate stage"):
        get_task("instances").stage("evaluate")


def test_chip_sets_are_version_2_and_version_1_still_loads(tmp_path):
    raster, labels, _ = make_scene(tmp_path)
    out = tmp_path / "chips"
    export(ExportConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=16, tile_size_y=16,
                              out=out))  # fmt: skip
    m = read_manifest(out)
    assert (m["schema_version"], m["task"]) == (2, "pixel_classification")
    old = {k: v for k, v in m.items() if k != "task"}  # a chip set written before tasks were recorded
    (out / MANIFEST).write_text(json.dumps({**old, "schema_version": 1}))
    assert open_chipset(out).manifest["task"] == "pixel_classification"
    (out / MANIFEST).write_text(json.dumps({**old, "schema_version": 3}))
    with pytest.raises(ChipSetError, match=r"version 3.*reads versions 1, 2"):
        read_manifest(out)


def test_packages_are_version_2_and_version_1_still_loads(tmp_path):
    card, _ = load_package(fake_package(tmp_path / "new", "detection"))
    assert card["schema_version"] == 2 and card["task"] == "detection"
    card, tensors = load_package(fake_package(tmp_path / "old", "pixel_classification", schema_version=1))
    assert card["schema_version"] == 1 and tensors["w"].shape == (3,)
    with pytest.raises(PackageError, match="version 9"):
        load_package(fake_package(tmp_path / "future", "detection", schema_version=9))


def test_classify_refuses_a_detection_model_before_reading_rasters(tmp_path):
    package = fake_package(tmp_path / "det", "detection")
    raster = make_raster(tmp_path / "in.tif")
    with pytest.raises(
        PackageError, match=r"model for object detection; `terralearn classify` needs one for pixel"
    ) as info:
        classify(ClassifyConfig.build(model=package, rasters=[raster], out=tmp_path / "map.tif"))
    assert "terralearn detect" in info.value.fix
    assert not (tmp_path / "map.tif").exists()


def test_runs_of_every_task_rank_by_their_headline(tmp_path):
    registry = Registry(tmp_path)
    old = registry.start_run(name="before tasks", status="finished", mean_iou=0.61)  # no task recorded
    det = registry.start_run(name="ships", status="finished", task="detection", headline_metric="map50")
    registry.update_run(det, map50=0.72, headline=0.72)
    rows = registry.runs(sort="headline", descending=True)
    assert [(r["name"], r["task"], r["headline_metric"], r["headline"]) for r in rows] == [
        ("ships", "detection", "map50", 0.72), ("before tasks", "pixel_classification", "mean_iou", 0.61)]  # fmt: skip
    assert registry.run(old)["headline"] == 0.61
