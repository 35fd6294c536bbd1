"""Training a detector on a detection chip set: learning, resume, package, run table, report, guardrails."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from terralearn.config import ClassifyConfig, ExportConfig, TrainConfig
from terralearn.errors import ConfigError, PackageError
from terralearn.export import export
from terralearn.io.chips import open_chipset
from terralearn.io.detection_chips import read_detection_chips
from terralearn.predict import classify
from terralearn.predict.detector_loader import load_detector
from terralearn.runs import Registry
from terralearn.train import train
from terralearn.train.detection import load_detection_data
from tests.data.make_data import make_objects_scene

EPOCHS = 3


def _export(raster, labels, out, workspace, **kw):
    kw = {"class_field": "kind", "tile_size_x": 64, "tile_size_y": 64, "stride_x": 32, "stride_y": 32,
          "task": "detection", "val_fraction": 0.25, **kw}  # fmt: skip
    return export(ExportConfig.build(rasters=[raster], labels=labels, out=out, workspace=workspace, **kw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-band scene of bright squares: export, then train Faster R-CNN ResNet-18-FPN with the defaults."""
    root = tmp_path_factory.mktemp("det_train")
    raster, labels, grid, boxes, names = make_objects_scene(root, size=192, n=60, seed=1)
    ws = root / "ws"
    _export(raster, labels, root / "chips", ws)
    rows = []
    result = train(TrainConfig.build(chips=root / "chips", out=root / "pkg", epochs=EPOCHS, batch_size=4,
                                     workspace=ws, patience=0), on_epoch=rows.append)  # fmt: skip
    return root, raster, result, rows


def test_a_detector_learns_the_objects_of_held_out_blocks(trained):
    _, _, result, events = trained
    rows = [r for r in events if "stage" not in r]  # the held-out run's epochs (the refit's come after)
    assert result.status == "finished" and len(rows) == EPOCHS
    assert result.metrics["val_objects"] > 5
    # a few CPU epochs only (the suite's budget): the losses fall and mAP is measured on the held-out blocks;
    # the accuracy figure itself comes from the DOTA benchmark
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert 0.0 <= result.metrics["map50"] <= 1.0 and [r["epoch"] for r in rows] == [1, 2, 3]
    assert {c["name"] for c in result.metrics["per_class"]} == {"boat", "car"}
    assert all(c["ap50"] is not None for c in result.metrics["per_class"])


def test_the_shipped_detector_is_refitted_on_every_chip_for_the_best_epoch_count(trained):
    root, _, result, events = trained
    chipset = open_chipset(root / "chips")
    m = chipset.manifest
    every = m["chips"]["train"] + m["chips"]["val"] + m["chips"]["refit"]
    assert m["chips"]["count"] == every and len(chipset.indices("refit")) == m["chips"]["refit"]
    refit = result.card["refit"]
    assert refit["epochs"] == result.card["epochs_run"] and refit["chips"] == every  # the whole schedule
    assert [e["stage"] for e in events if "stage" in e] == ["refit"] + ["refit_epoch"] * refit["epochs"]
    # the figures are the held-out run's: the refit is never scored on its own training chips
    assert result.metrics["map50"] == result.card["metrics"]["map50"] and "refitted" in result.metrics["source"]
    data = load_detection_data(chipset)
    assert len(data.everything().train) == every and not data.everything().val
    # the chips at block borders hold objects of both splits: never in training or validation, only in the refit
    assert all(chipset.tiles[i]["objects"] > 0 for i in chipset.indices("refit"))
    assert "trained again on every chip" in result.report.read_text()


def test_a_refit_under_a_time_budget_only_when_it_costs_no_epochs():
    from terralearn.train.detection import refit_fits

    # DOTA P0706 on 2 cores: 22 s a held-out epoch, a refit epoch 1.7 times that; 600 s hold 27 epochs alone
    assert not refit_fits(TrainConfig.model_construct(epochs=40), 600, 1.7, 22.0)  # 10 epochs beside a refit: no refit
    assert refit_fits(TrainConfig.model_construct(epochs=8), 600, 1.7, 22.0)  # all 8 epochs and their refit fit


def test_the_package_card_and_weights_rebuild_the_same_detector(trained):
    root, _, result, _ = trained
    card = json.loads((root / "pkg" / "model.json").read_text())
    assert (card["task"], card["architecture"], card["band_count"]) == ("detection", "faster_rcnn_resnet18_fpn", 4)
    assert card["chip_size"] == [64, 64] and card["preset"] == "cpu" and len(card["anchor_sizes"]) == 5
    assert len(card["normalisation"]["mean"]) == 4
    loaded = load_detector(root / "pkg.zip")
    data = load_detection_data(open_chipset(root / "chips"))
    image = data.val[0][0]
    with torch.no_grad():
        a = loaded.network([image])[0]
    trained_net = result.card and load_detector(root / "pkg").network
    with torch.no_grad():
        b = trained_net([image])[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_the_run_table_ranks_detection_runs_by_map50(trained):
    root, _, result, _ = trained
    run = Registry(root / "ws").run(result.run_id)
    assert (run["task"], run["headline_metric"], run["status"]) == ("detection", "map50", "finished")
    assert run["map50"] == pytest.approx(result.metrics["map50"]) == pytest.approx(run["headline"])
    assert run["epochs_run"] == EPOCHS and run["model_size_mb"] > 1


def test_detections_of_the_trained_package_are_evaluated_and_recorded_with_its_run(trained, tmp_path):
    from terralearn.config import DetectConfig, DetectionEvaluateConfig
    from terralearn.evaluate.detection_stage import evaluate_detections
    from terralearn.predict.detect import detect

    root, raster, result, _ = trained
    found = detect(DetectConfig.build(model=root / "pkg", rasters=[raster], out=tmp_path / "d.gpkg", threshold=0.05))
    assert found.tile_size == 256  # the 64-px chip, at least 256
    labels = root / "objects.gpkg"
    m = evaluate_detections(DetectionEvaluateConfig.build(prediction=found.out, reference=labels, class_field="kind",
                                                          out=tmp_path / "e", workspace=root / "ws")).metrics  # fmt: skip
    run = Registry(root / "ws").run(result.run_id)
    assert m["run"] == result.run_id and run["eval_ap50"] == pytest.approx(m["map50"])
    assert run["eval_map"] == str((tmp_path / "d.gpkg").resolve())


def test_the_report_shows_losses_map_and_boxes(trained):
    _, _, result, _ = trained
    html = result.report.read_text()
    assert "AP50" in html and "boat" in html and "held-out spatial blocks" in html
    for png in ("loss", "map", "samples"):
        assert (result.report.parent / f"{png}.png").stat().st_size > 1000


def test_a_detection_package_is_refused_by_classify_and_a_segmentation_model_by_detection(trained, tmp_path):
    root, raster, _, _ = trained
    with pytest.raises(PackageError, match="terralearn detect"):
        classify(ClassifyConfig.build(model=root / "pkg", rasters=[raster], out=tmp_path / "map.tif"))
    assert not (tmp_path / "map.tif").exists()
    with pytest.raises(ConfigError, match="pixel-classification model"):
        train(TrainConfig.build(chips=root / "chips", out=tmp_path / "p", model="unet", workspace=tmp_path / "w"))
    assert not (tmp_path / "p").exists()


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    raster, labels, *_ = make_objects_scene(tmp_path, bands=1, size=96, n=14, seed=2)
    ws = tmp_path / "ws"
    _export(raster, labels, tmp_path / "chips", ws)

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    first = train(TrainConfig.build(chips=tmp_path / "chips", out=tmp_path / "pkg", epochs=3, batch_size=4,
                                    workspace=ws), on_epoch=stop_after_first)  # fmt: skip
    assert first.status == "interrupted" and len(first.history) == 1
    rows = []
    resumed = train(TrainConfig.build(resume=first.run_id, workspace=ws), on_epoch=rows.append)
    assert resumed.status == "finished" and [r["epoch"] for r in rows] == [2, 3]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    card = load_detector(tmp_path / "pkg").card
    assert card["band_count"] == 1 and card["epochs_run"] == 3


@pytest.mark.parametrize("layout", ["kitti", "coco"])
def test_every_label_layout_reads_back_the_same_boxes(layout, tmp_path):
    raster, labels, *_ = make_objects_scene(tmp_path, bands=2, size=96, n=14, seed=3)
    _export(raster, labels, tmp_path / "voc", tmp_path / "ws")
    _export(raster, labels, tmp_path / layout, tmp_path / "ws", metadata_format=layout)
    a, b = open_chipset(tmp_path / "voc"), open_chipset(tmp_path / layout)
    assert len(a.tiles) == len(b.tiles) > 0
    ia, oa = read_detection_chips(a, list(range(len(a.tiles))))
    ib, ob = read_detection_chips(b, list(range(len(b.tiles))))
    assert np.array_equal(ia, ib)
    for x, y in zip(oa, ob, strict=True):
        assert np.allclose(x.boxes, y.boxes, atol=0.01) and np.array_equal(x.classes, y.classes)
        assert np.array_equal(x.truncated, y.truncated)


def test_the_command_line_trains_a_detector_with_its_preset_and_anchors(tmp_path):
    from typer.testing import CliRunner

    from terralearn.cli.app import app

    raster, labels, *_ = make_objects_scene(tmp_path, bands=1, size=96, n=14, seed=2)
    _export(raster, labels, tmp_path / "chips", tmp_path / "ws")
    args = ["train", "--chips", str(tmp_path / "chips"), "--out", str(tmp_path / "pkg"), "--epochs", "1",
            "--workspace", str(tmp_path / "ws")]  # fmt: skip
    bad = CliRunner().invoke(app, [*args, "--anchor-sizes", "8,16,big"])
    assert bad.exit_code != 0 and "'8,16,big' is not a comma list" in bad.output and not (tmp_path / "pkg").exists()
    result = CliRunner().invoke(app, [*args, "--detector-preset", "full", "--anchor-sizes", "6,12,24,48,96"])
    assert result.exit_code == 0, result.output
    assert "faster_rcnn_resnet18_fpn on the held-out blocks: mAP50" in result.output
    card = json.loads((tmp_path / "pkg" / "model.json").read_text())
    assert (card["preset"], card["anchor_sizes"]) == ("full", [6, 12, 24, 48, 96])
    assert card["training"]["batch_size"] == 4  # detection's default batch, recorded as given


def test_the_time_budget_plans_the_epochs_and_the_schedule_ends_with_them(tmp_path, monkeypatch):
    import terralearn.train.detection as stage
    from terralearn.train.detection_loop import epochs_in_budget

    assert (epochs_in_budget(600, 27.0, 40), epochs_in_budget(600, 10.0, 40), epochs_in_budget(30, 90.0, 40)) == (
        22, 40, 1)  # fmt: skip
    calls = []

    def plan(budget, seconds, most):  # the first epoch's time varies: the plan is fixed to 3 epochs here
        calls.append((budget, seconds, most))
        return 3

    monkeypatch.setattr(stage, "epochs_in_budget", plan)
    raster, labels, *_ = make_objects_scene(tmp_path, bands=1, size=96, n=14, seed=2)
    ws = tmp_path / "ws"
    _export(raster, labels, tmp_path / "chips", ws)
    rows = []
    result = train(TrainConfig.build(chips=tmp_path / "chips", out=tmp_path / "pkg", epochs=40, batch_size=4,
                                     time_budget=45, refit="off", workspace=ws), on_epoch=rows.append)  # fmt: skip
    assert len(calls) == 3 and all(c[0] == 45.0 and c[2] == 40 for c in calls)  # planned after every epoch
    assert calls[0][1] >= rows[0]["seconds"]  # from the mean time of an epoch so far, checkpoint included
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["epochs"] == 3
    assert rows[-1]["learning_rate"] == pytest.approx(0.01 * 0.05)  # the cosine schedule ended with epoch 3
    [warning] = [w for w in result.warnings if w["code"] == "time_budget"]
    assert "allowed 3 of the 40 epochs" in warning["message"] and "--time-budget" in warning["fix"]
    assert result.card["epochs_planned"] == 3 and result.card["time_budget"] == 45
    assert "refit" not in result.card and "refitted" not in result.metrics["source"]  # --refit off: the held-out model


def test_detection_budgets_follow_the_tile_area():
    from terralearn.models.detection import MAX_TILE_BUDGET, build_detector, scale_to_tile

    frcnn = build_detector("faster_rcnn_resnet18_fpn", 3, 2, 64, "cpu", pretrained=False)
    base = (
        frcnn.rpn._pre_nms_top_n["testing"],
        frcnn.rpn._post_nms_top_n["testing"],
        frcnn.roi_heads.detections_per_img,
    )
    assert scale_to_tile(frcnn, 64, 128) == 4.0
    assert (frcnn.rpn._pre_nms_top_n["testing"], frcnn.rpn._post_nms_top_n["testing"],
            frcnn.roi_heads.detections_per_img) == tuple(min(MAX_TILE_BUDGET, 4 * b) for b in base)  # fmt: skip
    assert frcnn.rpn._pre_nms_top_n["training"] != frcnn.rpn._pre_nms_top_n["testing"]  # training untouched
    scale_to_tile(frcnn, 64, 32)  # a tile smaller than the chip keeps the chip's budgets
    assert (frcnn.rpn._pre_nms_top_n["testing"], frcnn.rpn._post_nms_top_n["testing"],
            frcnn.roi_heads.detections_per_img) == base  # fmt: skip
    retina = build_detector("retinanet_resnet18_fpn", 3, 2, 64, "cpu", pretrained=False)
    top, dets = retina.topk_candidates, retina.detections_per_img
    scale_to_tile(retina, 64, 128)
    assert (retina.topk_candidates, retina.detections_per_img) == (4 * top, min(MAX_TILE_BUDGET, 4 * dets))


def test_the_package_exports_to_onnx_as_a_deepness_detector(trained, tmp_path):
    import onnx
    import onnxruntime as ort

    from terralearn.config import DetectConfig, OnnxConfig
    from terralearn.io.detections import read_detections
    from terralearn.predict import deepness
    from terralearn.predict.detect import detect
    from terralearn.predict.onnx import export_onnx

    root, raster, *_ = trained
    result = export_onnx(OnnxConfig(package=root / "pkg.zip", out=tmp_path / "det.onnx"))
    meta = {p.key: deepness.read_value(p.value) for p in onnx.load(str(result.path)).metadata_props}
    card = meta["terralearn_card"]
    # Deepness reads every value as JSON, and divides pixels by 255 before it standardises
    assert (meta["model_type"], meta["det_type"], meta["tiles_size"], meta["tile_size"]) == (
        "Detector", "YOLO_v5_or_v7_default", 64, 64)  # fmt: skip
    assert meta["class_names"] == {str(k): c["name"] for k, c in enumerate(card["classes"])}
    assert np.allclose(meta["standardization_mean"], np.array(card["normalisation"]["mean"]) / 255)
    assert np.allclose(meta["standardization_std"], np.array(card["normalisation"]["std"]) / 255)
    image = load_detection_data(open_chipset(root / "chips")).val[0][0]
    got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(
        None, {"image": image[None].numpy()}
    )
    boxes, scores, classes = deepness.decode(got[0], "YOLO_v5_or_v7_default")
    with torch.no_grad():
        want = load_detector(root / "pkg").network([image])[0]
    assert np.allclose(boxes, want["boxes"].numpy(), atol=0.05) and np.allclose(
        scores, want["scores"].numpy(), atol=1e-3
    )
    assert np.array_equal(classes, want["labels"].numpy() - 1)
    # `terralearn detect` runs the export as it runs the package: the same boxes over the whole raster
    runs = {}
    for name, model in (("package", root / "pkg.zip"), ("onnx", result.path)):
        config = DetectConfig(model=model, rasters=[raster], out=tmp_path / f"{name}.gpkg", tile_size=64,
                              threshold=0.2)  # fmt: skip
        assert detect(config).tile_size == 64
        runs[name] = read_detections(config.out)
    a, b = runs["package"], runs["onnx"]
    assert len(a) == len(b) > 0 and (a.class_values == b.class_values).all()
    assert np.abs(a.boxes - b.boxes).max() < 0.2 and np.abs(a.scores - b.scores).max() < 1e-3
