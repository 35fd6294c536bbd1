"""The default training (`--model auto`): grouped cross-validation, the time budget, refit, the card and report."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rasterio

from terralearn.config import UNLABELLED, ClassifyConfig, ExportConfig, TrainConfig
from terralearn.export import export
from terralearn.io.raster import write_raster
from terralearn.io.vector import write_vector
from terralearn.predict import classify, default_tile
from terralearn.runs import Registry
from terralearn.train import train
from terralearn.train.scenes import Mosaic, SceneData, load_scene_data
from terralearn.train.select import MIN_STEPS, NETWORK_TILE, plan, select_model
from tests.data.make_data import make_grid, make_scene, pixel_box

# ------------------------------------------------------------------------------------------------ the plan (pure)


def test_plan_keeps_full_steps_when_the_budget_allows():
    names, steps, dropped = plan({"cnn_s": 0.01, "cnn_m": 0.02}, folds=3, seconds_left=1000)
    assert names == ["cnn_s", "cnn_m"] and steps == 600 and dropped == []


def test_plan_lowers_steps_before_dropping_and_drops_the_most_expensive():
    spc = {"cnn_s": 0.1, "cnn_m": 0.2}
    per_step = (0.1 + 0.2) * 3 + 0.2  # both cross-validated 3 times, the dearer one refitted
    names, steps, dropped = plan(spc, 3, seconds_left=300 * per_step / 0.8)
    assert names == ["cnn_s", "cnn_m"] and steps == 300 and not dropped
    names, steps, dropped = plan(spc, 3, seconds_left=0.8 * MIN_STEPS * per_step)
    assert names == ["cnn_s"] and dropped == ["cnn_m"] and MIN_STEPS <= steps < 600
    assert plan(spc, 3, seconds_left=1.0) == ([], None, ["cnn_m", "cnn_s"])


# ------------------------------------------------------------------------------------------------ selection


def _texture_scene(seed: int, texture: bool) -> SceneData:
    """Two classes in rectangles (4 per class): with ``texture`` they share one spectrum (+-1) and differ only
    in how it is arranged (stripes against speckle), so a per-pixel model cannot tell them apart."""
    rng = np.random.default_rng(seed)
    h, w = 48, 96
    image = np.zeros((1, h, w), dtype=np.float32)
    labels = np.full((h, w), UNLABELLED, dtype=np.uint8)
    truth = np.zeros((h, w), dtype=np.uint8)
    for i in range(8):
        r0, c0 = (i // 4) * 24, (i % 4) * 24
        c = (i + i // 4) % 2
        truth[r0 : r0 + 24, c0 : c0 + 24] = c
        if texture:
            patch = np.where((np.arange(24) // 2) % 2 == 0, 1.0, -1.0)[None, :].repeat(24, 0) if c == 0 else \
                np.where(rng.random((24, 24)) < 0.5, 1.0, -1.0)  # fmt: skip
        else:
            patch = np.full((24, 24), 1.0 if c == 0 else -1.0)
        image[0, r0 : r0 + 24, c0 : c0 + 24] = patch + rng.normal(0, 0.1, (24, 24))
        labels[r0 + 6 : r0 + 18, c0 + 6 : c0 + 18] = c  # one polygon in the middle of each block
    classes = [{"index": 0, "value": 1, "name": "stripes", "colour": "#1b9e77"},
               {"index": 1, "value": 2, "name": "speckle", "colour": "#d95f02"}]  # fmt: skip
    return SceneData(None, classes, ["b1"], np.zeros(1), np.ones(1), [Mosaic(image, labels, 0, 0)])


def test_a_network_is_chosen_when_only_context_separates_the_classes():
    scene = _texture_scene(0, texture=True)
    events = []
    sel = select_model(scene, folds=2, time_budget=120, trees=30, candidates=("random_forest", "cnn_s"),
                       on_event=events.append, steps=60)  # fmt: skip
    board = {r["candidate"]: r for r in sel.leaderboard}
    assert board["random_forest"]["accuracy"] < 0.7  # same spectrum: about a coin toss
    assert sel.chosen == "cnn_s" and board["cnn_s"]["score"] > board["random_forest"]["score"] + 0.2
    assert board["cnn_s"]["chosen"] and not board["random_forest"]["chosen"]
    assert sel.network is not None and sel.forest is None and sel.steps == 60
    assert sel.baseline["accuracy"] == board["random_forest"]["accuracy"]
    assert sel.metrics["accuracy"] == board["cnn_s"]["accuracy"]  # the reported figure is the cross-validated one
    assert "context" in sel.reason and "1,152 labelled pixels" in sel.reason
    assert [e["stage"] for e in events if e["stage"] in ("refit",)] == ["refit"]
    assert {e["candidate"] for e in events if e["stage"] == "scored"} == {"random_forest", "cnn_s"}


def test_the_forest_is_kept_when_a_network_does_not_beat_it():
    sel = select_model(_texture_scene(1, texture=False), folds=2, time_budget=120, trees=30,
                       candidates=("random_forest", "cnn_s"), steps=60)  # fmt: skip
    board = {r["candidate"]: r for r in sel.leaderboard}
    assert board["random_forest"]["accuracy"] == 1.0  # the spectrum says it all
    assert sel.chosen == "random_forest" and sel.forest is not None and sel.network is None
    assert "no network beat it" in sel.reason
    assert board["random_forest"]["mean_iou_spread"] is not None  # one score per fold


def test_a_class_with_one_polygon_is_cut_into_folds_and_flagged():
    scene = _texture_scene(2, texture=False)
    lab = scene.mosaics[0].labels
    lab[(lab == 1)] = UNLABELLED
    lab[30:42, 6:18] = 1  # speckle: one polygon only
    sel = select_model(scene, folds=3, time_budget=60, trees=20, candidates=("random_forest",))
    per_class = {c["name"]: c for c in sel.metrics["per_class"]}
    assert per_class["speckle"]["support"] == 144  # every pixel of the single polygon was held out once
    assert [w["code"] for w in sel.warnings] == ["one_polygon"]
    assert "speckle has 1 polygon" in sel.warnings[0]["message"]


def test_the_time_budget_is_kept(monkeypatch):
    """A budget too small for the networks leaves them out (said in the leaderboard) and keeps to the budget."""
    scene = _texture_scene(3, texture=True)
    t = time.perf_counter()
    sel = select_model(scene, folds=3, time_budget=4, trees=20)
    assert time.perf_counter() - t < 4 * 1.1
    board = {r["candidate"]: r for r in sel.leaderboard}
    assert sel.chosen == "random_forest"
    assert all(board[n]["status"] == "skipped" and "time budget" in board[n]["note"] for n in ("cnn_s", "cnn_m"))


def test_fixed_steps_train_every_candidate_without_timing():
    """--steps: no timing and nothing left out for the budget, so the same data give the same models anywhere;
    the budget still stops an overrun."""
    scene = _texture_scene(4, texture=True)
    events = []
    sel = select_model(scene, folds=2, time_budget=60, trees=20, steps=20, on_event=events.append)
    assert "timing" not in {e["stage"] for e in events}
    board = {r["candidate"]: r for r in sel.leaderboard}
    assert set(board) == {"random_forest", "cnn_s", "cnn_m"}
    assert all(board[n]["status"] == "scored" and board[n]["steps"] == 20 for n in ("cnn_s", "cnn_m"))
    again = select_model(scene, folds=2, time_budget=60, trees=20, steps=20, candidates=("random_forest", "cnn_s"))
    assert [r["score"] for r in again.leaderboard] == [r["score"] for r in sel.leaderboard][:2]  # reproducible
    t = time.perf_counter()
    stopped = select_model(scene, folds=2, time_budget=2, trees=20, steps=20000, candidates=("random_forest", "cnn_s"))
    assert time.perf_counter() - t < 2 * 1.2 + 1 and stopped.chosen == "random_forest"
    assert {r["candidate"]: r["status"] for r in stopped.leaderboard}["cnn_s"] == "stopped"


def test_candidates_and_steps_are_checked():
    with pytest.raises(ValueError, match="cnn_xl"):
        TrainConfig.build(chips="c", out="o", candidates=["random_forest", "cnn_xl"])
    with pytest.raises(ValueError, match="steps"):
        TrainConfig.build(chips="c", out="o", steps=1)


# ------------------------------------------------------------------------------------------------ the whole stage


@pytest.fixture(scope="module")
def texture_chips(tmp_path_factory):
    """An exported chip set (real CRS) of a 1-band texture scene: stripes against speckle, same values."""
    folder = tmp_path_factory.mktemp("texture")
    rng = np.random.default_rng(5)
    grid = make_grid(width=96, height=64)
    data = np.where(rng.random((64, 96)) < 0.5, 1000, -1000).astype(np.int16)
    stripes = np.where((np.arange(96) // 2) % 2 == 0, 1000, -1000).astype(np.int16)
    boxes, codes = [], []
    for i in range(6):
        r0, c0 = (i // 3) * 32, (i % 3) * 32
        if i % 2 == 0:
            data[r0 : r0 + 32, c0 : c0 + 32] = stripes[c0 : c0 + 32][None, :]
        boxes.append(pixel_box(grid, c0 + 8, r0 + 8, c0 + 24, r0 + 24))
        codes.append(1 if i % 2 == 0 else 2)
    raster = folder / "texture.tif"
    write_raster(raster, data[None], grid, nodata=-9999)
    import geopandas as gpd

    labels = folder / "labels.gpkg"
    write_vector(gpd.GeoDataFrame({"code": codes}, geometry=boxes, crs=grid.crs), labels, layer="labels")
    export(ExportConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=32, tile_size_y=32,
                              stride_x=16, stride_y=16, out=folder / "chips"))  # fmt: skip
    return folder, raster


def test_default_training_selects_refits_on_every_label_and_records_it(texture_chips, tmp_path):
    folder, raster = texture_chips
    chips = folder / "chips"
    # a short training (the test is about the stage), in fixed steps: the same on a slow machine as on a fast one
    config = TrainConfig.build(chips=chips, out=tmp_path / "pkg", steps=80, cv_folds=2, trees=30)
    assert config.model == "auto" and config.candidates == ["random_forest", "cnn_s", "cnn_m"]  # the defaults
    result = train(config.model_copy(update={"workspace": tmp_path}))
    card = json.loads((tmp_path / "pkg" / "model.json").read_text())
    sel = card["selection"]
    assert sel["chosen"] in ("cnn_s", "cnn_m") and card["architecture"] == sel["chosen"]
    assert card["metrics_source"].startswith("grouped 2-fold cross-validation")
    assert {r["candidate"] for r in sel["leaderboard"]} == {"random_forest", "cnn_s", "cnn_m"}
    assert "refitted on every labelled pixel" in sel["refit"] and sel["steps"] == 80
    # the shipped model saw every label: train and validation chips of the export alike
    scene = load_scene_data(chips)
    assert sum(card["training_data"]["class_pixels"]) == scene.labelled == 6 * 16 * 16
    assert result.metrics["accuracy"] == next(r for r in sel["leaderboard"] if r["chosen"])["accuracy"]
    run = Registry(tmp_path).run(result.run_id)
    assert run["architecture"] == sel["chosen"] and run["selection"].startswith(f"{sel['chosen']} by 2-fold CV")
    assert run["baseline_accuracy"] is not None and run["accuracy"] > run["baseline_accuracy"]
    html = result.report.read_text()
    assert "Model selection" in html and "cross-validated on held-out polygons" in html and "chosen" in html
    # one verdict: the network beat the forest in the green box, and no warning says otherwise
    assert "Yes, deep learning beat the baseline" in html and "baseline_better" not in html

    # large tiles by default; the map is as good with chip-sized tiles
    assert default_tile(card) == NETWORK_TILE
    maps = {}
    for tile in (None, 32):
        out = classify(ClassifyConfig.build(model=result.package, rasters=[raster], out=tmp_path / f"m{tile}.tif",
                                            tile_size=tile)).out  # fmt: skip
        with rasterio.open(out) as src:
            maps[tile] = src.read(1)
    assert np.mean(maps[None] == maps[32]) > 0.97


def test_explicit_models_train_exactly_what_was_asked(texture_chips, tmp_path):
    folder, _ = texture_chips
    result = train(TrainConfig.build(chips=folder / "chips", out=tmp_path / "pkg", model="tiny", epochs=1,
                                     baseline=False, workspace=tmp_path))  # fmt: skip
    assert result.card["architecture"] == "tiny" and "selection" not in result.card
    assert Registry(tmp_path).run(result.run_id)["selection"] is None


def test_scene_mosaics_hold_every_label_once(tmp_path):
    raster, labels, _ = make_scene(tmp_path)
    export(ExportConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=16, tile_size_y=16,
                              stride_x=8, stride_y=8, out=tmp_path / "chips", val_fraction=0.5))  # fmt: skip
    scene = load_scene_data(tmp_path / "chips")
    manifest = json.loads((tmp_path / "chips" / "manifest.json").read_text())
    assert scene.labelled == sum(c["pixels"]["total"] for c in manifest["classes"])


def test_small_cnns_run_on_any_tile_size():
    """Full resolution, no down-sampling: the output has the input's size, down to a one-pixel tile."""
    import torch

    from terralearn.models.segmentation import build_model

    for arch in ("cnn_s", "cnn_m"):
        model = build_model(arch, "", 3, 4).eval()
        for side in (1, 5, 9, 16, 40):
            assert model(torch.randn(1, 3, side, side + 3)).shape == (1, 4, side, side + 3)


def test_network_timing_keeps_the_fastest_interleaved_round(monkeypatch):
    """A slow first timing (a cold process) must not make the network timed first look dearer."""
    import terralearn.train.select as at

    measured = iter([0.30, 0.20, 0.10, 0.21])  # cnn_s cold, cnn_m, cnn_s warm, cnn_m
    calls = []

    def fake(name, scene, device):
        calls.append(name)
        return next(measured)

    monkeypatch.setattr(at, "seconds_per_step", fake)
    spc = at.time_networks(["cnn_s", "cnn_m"], scene=None, device=None)
    assert calls == ["cnn_s", "cnn_m", "cnn_s", "cnn_m"] and spc == {"cnn_s": 0.10, "cnn_m": 0.20}
    assert plan(spc, 2, seconds_left=MIN_STEPS * (0.1 * 2 + 0.1) / 0.8)[0] == ["cnn_s"]  # the cheap one is kept
