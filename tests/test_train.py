"""Stage 2: training, packages, runs, imbalance options, resume and interruption (tiny models)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from terralearn.config import UNLABELLED, ExportConfig, TrainConfig
from terralearn.errors import ConfigError, PackageError
from terralearn.export import export
from terralearn.geo.metrics import metrics_from_confusion
from terralearn.io.package import load_package
from terralearn.models.augment import augment_batch, cutmix
from terralearn.models.device import resolve_device
from terralearn.models.losses import CrossEntropy, DiceLoss, FocalLoss, build_loss, inverse_frequency_weights
from terralearn.predict.loader import load_model
from terralearn.runs import Registry
from terralearn.train import train
from terralearn.train.data import TrainingData, load_training_data
from terralearn.train.diagnostics import overfitting_start, training_warnings
from terralearn.train.loop import Trainer
from tests.data.make_data import make_scene


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    raster, labels, _ = make_scene(folder)
    config = ExportConfig.build(rasters=[raster], labels=labels, class_field="code", class_name_field="name",
                                tile_size_x=16, tile_size_y=16, stride_x=8, stride_y=8, out=folder / "chips",
                                val_fraction=0.5)  # fmt: skip
    export(config)
    return folder / "chips"


def tiny(chips, out, **kw):
    kw.setdefault("epochs", 3)
    kw.setdefault("baseline", False)
    kw.setdefault("learning_rate", 0.01)
    return TrainConfig.build(chips=chips, out=out, model="tiny", **kw)


def test_train_packages_and_records_a_run(chips, tmp_path):
    result = train(tiny(chips, tmp_path / "pkg", baseline=True, trees=10, workspace=tmp_path))
    assert result.status == "finished" and len(result.history) == 3
    card, tensors = load_package(tmp_path / "pkg")
    for key in ("task", "architecture", "bands", "band_count", "normalisation", "classes", "chip_size", "pixel_size",
                "crs_units", "training_data", "metrics", "versions", "schema_version"):  # fmt: skip
        assert key in card, key
    assert card["band_count"] == 3 and [c["value"] for c in card["classes"]] == [3, 7, 22531]
    for k in ("accuracy", "dice", "mean_iou"):
        assert 0 <= card["metrics"][k] <= 1
    assert card["baseline"]["accuracy"] is not None
    assert (tmp_path / "pkg.zip").exists() and load_package(tmp_path / "pkg.zip")[0] == card
    run = Registry(tmp_path).run(result.run_id)
    assert run["status"] == "finished" and run["epochs_run"] == 3 and run["architecture"] == "tiny"
    assert run["accuracy"] == pytest.approx(card["metrics"]["accuracy"])
    assert len(json.loads(run["per_class_iou"])) == 3 and run["baseline_accuracy"] is not None
    assert run["chip_set_fingerprint"] == card["training_data"]["fingerprint"]
    loaded = load_model(tmp_path / "pkg")
    assert loaded.network is not None and loaded.n_classes == 3


def test_training_is_reproducible_on_cpu(chips, tmp_path):
    a = train(tiny(chips, tmp_path / "a", seed=3, workspace=tmp_path))
    b = train(tiny(chips, tmp_path / "b", seed=3, workspace=tmp_path))
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    ta, tb = load_package(tmp_path / "a")[1], load_package(tmp_path / "b")[1]
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_tampered_and_incomplete_packages_are_refused(chips, tmp_path):
    train(tiny(chips, tmp_path / "pkg", epochs=1, workspace=tmp_path))
    weights = tmp_path / "pkg" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="modified or damaged"):
        load_package(tmp_path / "pkg")
    (tmp_path / "pkg" / "model.json").unlink()
    with pytest.raises(PackageError, match="incomplete"):
        load_package(tmp_path / "pkg")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(PackageError):
        load_package(tmp_path / "bad.zip")


def test_random_forest_model_package_has_no_pickle(chips, tmp_path):
    result = train(TrainConfig.build(chips=chips, out=tmp_path / "rf", model="random_forest", trees=10,
                                     workspace=tmp_path))  # fmt: skip
    assert result.status == "finished"
    raw = (tmp_path / "rf" / "model.safetensors").read_bytes()
    assert b"pickle" not in raw and not raw.startswith(b"\x80")
    loaded = load_model(tmp_path / "rf")
    assert loaded.forest is not None and loaded.card["architecture"] == "random_forest"
    assert Registry(tmp_path).run(result.run_id)["architecture"] == "random_forest"


# ----------------------------------------------------------------------------- imbalance options


def test_inverse_frequency_weights():
    w = inverse_frequency_weights(np.array([900, 90, 10, 0]))
    assert w[3] == 0 and w[2] > w[1] > w[0]
    assert w[2] / w[0] == pytest.approx(90)
    assert (np.array([900, 90, 10]) * w[:3]).sum() / 1000 == pytest.approx(1.0)


def test_class_balancing_weights_change_the_loss(chips, tmp_path):
    data = load_training_data(chips)
    plain = Trainer(tiny(chips, tmp_path / "a"), data, torch.device("cpu"))
    balanced = Trainer(tiny(chips, tmp_path / "b", class_balancing=True), data, torch.device("cpu"))
    assert plain.loss_fn.weight is None and balanced.loss_fn.weight is not None
    y = plain.y_train  # every training chip: all classes present
    assert len(np.unique(y[y != UNLABELLED])) == 3
    logits = torch.randn(len(y), 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(plain.loss_fn(logits, y)) != pytest.approx(float(balanced.loss_fn(logits, y)), rel=1e-3)


def test_focal_loss_down_weights_easy_pixels():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = torch.randint(0, 3, (2, 8, 8), generator=gen)
    assert float(FocalLoss(gamma=0.0)(logits, target)) == pytest.approx(float(CrossEntropy()(logits, target)), rel=1e-5)
    easy = torch.zeros(1, 3, 4, 4)
    easy[:, 0] = 5.0
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    assert float(FocalLoss(gamma=2.0)(easy, t)) < 0.01 * float(CrossEntropy()(easy, t))


@pytest.mark.parametrize("name", ["ce", "focal", "dice", "focal_dice"])
def test_losses_ignore_unlabelled_pixels(name):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = torch.randint(0, 3, (2, 8, 8), generator=gen)
    target[:, :4] = UNLABELLED
    loss = build_loss(name)
    changed = logits.clone()
    changed[:, :, :4] = torch.randn(2, 3, 4, 8, generator=gen) * 10
    assert float(loss(logits, target)) == pytest.approx(float(loss(changed, target)), rel=1e-6)
    assert float(loss(logits, torch.full_like(target, UNLABELLED))) == 0.0


def test_dice_loss_is_zero_for_a_perfect_prediction():
    target = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(2))
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert float(DiceLoss()(logits, target)) < 1e-3


def imbalanced_data(chips) -> TrainingData:
    """20 chips of class 0, two of which also hold a few pixels of the rare class 1."""
    base = load_training_data(chips)
    y = np.full((20, 16, 16), UNLABELLED, np.uint8)
    y[:, :8] = 0
    y[[3, 11], 10, :4] = 1
    x = np.zeros((20, 3, 16, 16), np.float32)
    classes = base.classes[:2]
    return TrainingData(base.chipset, classes, base.band_names, base.mean, base.std, x, y, x[:2], y[:2],
                        list(range(20)), [0, 1])  # fmt: skip


def test_oversampling_draws_rare_chips_more_often(chips, tmp_path):
    data = imbalanced_data(chips)
    plain = Trainer(tiny(chips, tmp_path / "a"), data, torch.device("cpu"))
    over = Trainer(tiny(chips, tmp_path / "b", oversample=True), data, torch.device("cpu"))
    has_rare = np.array([(y == 1).any() for y in data.y_train])

    def share(trainer):
        drawn = np.concatenate([trainer.epoch_order(e).numpy() for e in range(50)])
        return has_rare[drawn].mean()

    assert share(plain) == pytest.approx(0.1)  # a permutation: each chip once per epoch
    assert share(over) > 0.7  # weights 50 vs 1: rare chips dominate the draws
    assert sorted(plain.epoch_order(0).tolist()) == list(range(20))


def test_augmentations_move_labels_with_images():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    y = x[:, 0].clone().to(torch.int64)
    xa, ya = augment_batch(x, y, ["flip", "rot90"], gen)
    assert torch.equal(xa[:, 0].to(torch.int64), ya)
    assert not torch.equal(xa, x) or not torch.equal(augment_batch(x, y, ["flip", "rot90"], gen)[0], x)
    xj, yj = augment_batch(x, y, ["jitter"], gen)
    assert torch.equal(yj, y) and not torch.equal(xj, x)


def test_cutmix_pastes_image_and_labels_together():
    """Each pasted pixel comes, image and label alike, from the same place of another chip of the batch."""
    gen = torch.Generator().manual_seed(3)
    b, h, w = 8, 20, 20
    y = torch.arange(b).repeat_interleave(h * w).reshape(b, h, w)  # chip i is labelled i everywhere
    x = torch.stack([y.float() * 10, -y.float()], dim=1)  # two bands, both telling the chip a pixel came from
    y[0, :, :10] = 255  # chip 0 half unlabelled: those pixels are never pasted
    x = torch.stack([y.float() * 10, -y.float()], dim=1)
    xm, ym = cutmix(x, y, 1.0, gen)
    assert torch.equal(xm[:, 0], ym.float() * 10) and torch.equal(xm[:, 1], -ym.float())
    assert not (ym[1:] == 255).any()
    changed = [(ym[i] != i).float().mean().item() for i in range(b)]
    assert sum(c > 0 for c in changed) >= b // 2  # most chips got a piece of another
    assert all(c < 1 for c in changed[1:])  # and kept part of their own: a labelled boundary inside the chip
    assert (y[0, :, :10] == 255).all() and (y[1:] == torch.arange(1, b)[:, None, None]).all()  # inputs untouched
    xs, ys = cutmix(x, y, 0.0, gen)
    assert torch.equal(xs, x) and torch.equal(ys, y)
    again = cutmix(x, y, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(again[1], ym)  # seeded


def test_mixup_and_ignore_classes_run(chips, tmp_path):
    result = train(tiny(chips, tmp_path / "pkg", mixup=0.4, ignore_classes=["water"], loss="focal_dice",
                        workspace=tmp_path))  # fmt: skip
    water = next(c for c in result.metrics["per_class"] if c["name"] == "water")
    assert water["support"] == 0  # ignored in the metrics
    with pytest.raises(ConfigError, match="matches no class"):
        train(tiny(chips, tmp_path / "x", ignore_classes=["lava"], workspace=tmp_path))


# ----------------------------------------------------------------------------- interruption and resume


def test_ctrl_c_keeps_the_best_model(chips, tmp_path):
    def stop(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    result = train(tiny(chips, tmp_path / "pkg", epochs=10, workspace=tmp_path), on_epoch=stop)
    assert result.status == "interrupted" and len(result.history) == 2
    assert load_package(tmp_path / "pkg")[0]["epochs_run"] == 2
    assert Registry(tmp_path).run(result.run_id)["status"] == "interrupted"


def test_resume_after_sigkill_loses_at_most_one_epoch(chips, tmp_path):
    env = {**os.environ, "TERRALEARN_WORKSPACE": str(tmp_path)}
    cmd = [sys.executable, "-m", "terralearn", "train", "--chips", str(chips), "--out", str(tmp_path / "pkg"),
           "--model", "tiny", "--epochs", "400", "--patience", "0", "--lr", "0.01", "--no-baseline"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "runs" / "run-0001" / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())
    killed_at = saved["epoch"]
    assert 3 <= killed_at < 400
    assert Registry(tmp_path).run(1)["status"] == "interrupted"
    config = json.loads((tmp_path / "runs" / "run-0001" / "config.json").read_text())
    config["epochs"] = killed_at + 2  # finish quickly: two more epochs
    (tmp_path / "runs" / "run-0001" / "config.json").write_text(json.dumps(config))
    result = train(TrainConfig.build(resume=1, workspace=tmp_path))
    assert [h["epoch"] for h in result.history] == list(range(1, killed_at + 3))
    assert result.history[:killed_at] == saved["history"]
    assert Registry(tmp_path).run(1)["status"] == "finished"


# ----------------------------------------------------------------------------- warnings, weights, devices


def test_majority_class_and_never_predicted_warnings():
    cm = np.array([[990, 0], [10, 0]])
    metrics = metrics_from_confusion(cm, ["field", "building"])
    assert metrics["accuracy"] == pytest.approx(0.99) and metrics["per_class"][1]["f1"] == 0
    codes = {w["code"] for w in training_warnings([], metrics, [], None, "mean_iou")}
    assert {"majority_class", "never_predicted"} <= codes
    ok = metrics_from_confusion(np.array([[90, 10], [5, 95]]), ["a", "b"])
    assert not training_warnings([], ok, [], None, "mean_iou")
    worse = training_warnings([], ok, [], {"accuracy": 0.99}, "mean_iou")
    assert worse[0]["code"] == "baseline_better"


def test_overfitting_is_detected_with_its_start():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": v} for e, v in
               enumerate([1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8], start=1)]  # fmt: skip
    assert overfitting_start(history) == 5
    steady = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0 / e} for e in range(1, 9)]
    assert overfitting_start(steady) is None


def test_weights_fall_back_offline_and_imagenet_fails_clearly(chips, tmp_path):
    from terralearn.train.loop import make_model

    data = load_training_data(chips)
    model, used, note = make_model(TrainConfig.build(chips=chips, out=tmp_path / "p", model="fpn"), data)
    assert used == "none" and "random initialisation" in note
    with pytest.raises(ConfigError, match="not available on this machine"):
        make_model(TrainConfig.build(chips=chips, out=tmp_path / "p", model="fpn", weights="imagenet"), data)


def test_extra_bands_get_deliberate_first_layer_weights():
    import segmentation_models_pytorch as smp

    from terralearn.models.segmentation import _adapt_first_conv

    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=2)
    rgb = model.encoder.conv1.weight.detach().clone()
    _adapt_first_conv(model, 5, ["blue", "green", "red", "nir", "swir1"])
    w = model.encoder.conv1.weight.detach()
    assert w.shape[1] == 5
    scale = 3 / 5
    assert torch.allclose(w[:, 0], rgb[:, 2] * scale) and torch.allclose(w[:, 2], rgb[:, 0] * scale)
    assert torch.allclose(w[:, 3], rgb.mean(dim=1) * scale) and torch.allclose(w[:, 4], w[:, 3])


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_every_architecture_builds_and_runs_on_odd_sizes():
    from terralearn.models.segmentation import ARCHITECTURES, build_model

    x = torch.randn(1, 4, 40, 24)
    for arch in ARCHITECTURES:
        backbone = "mit_b0" if arch == "segformer" else "resnet18"
        model = build_model(arch, backbone, 4, 3).eval()
        with torch.no_grad():
            assert model(x).shape == (1, 3, 40, 24), arch


def test_onnx_export_matches_torch(chips, tmp_path):
    import onnx

    from terralearn.config import OnnxConfig
    from terralearn.predict.onnx import export_onnx

    train(tiny(chips, tmp_path / "pkg", epochs=1, workspace=tmp_path))
    result = export_onnx(OnnxConfig(package=tmp_path / "pkg"))
    path, diff = result.path, result.difference
    assert diff < 1e-3
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}  # JSON, as Deepness reads
    assert meta["model_type"] == "Segmentor" and meta["class_names"]["2"] == "wheat"
    card = meta["terralearn_card"]
    assert card["band_count"] == 3 and meta["tile_size"] == meta["tiles_size"]
    # Deepness divides by 255 before standardising: (x / 255 - m / 255) / (s / 255) = (x - m) / s
    assert np.allclose(meta["standardization_mean"], np.array(card["normalisation"]["mean"]) / 255)


def test_timm_backbones_and_unknown_names():
    from terralearn.models.segmentation import build_model, encoder_name

    assert encoder_name("timm:resnet18") == "tu-resnet18"
    model = build_model("unet", "timm:resnet18", 5, 2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 5, 32, 32)).shape == (1, 2, 32, 32)
    with pytest.raises(ConfigError, match="Unknown backbone"):
        encoder_name("resnet7")
    with pytest.raises(ConfigError, match="Unknown timm encoder"):
        encoder_name("timm:not_a_model_xyz")
    with pytest.raises(ConfigError, match="Unknown architecture"):
        build_model("unet3000", "resnet18", 3, 2)


def test_a_lone_last_chip_joins_the_batch_before_it():
    """Batch norm cannot train on a batch of one chip (12 LiDAR chips, batch 16 then 11 + 1 failed)."""
    from terralearn.train.loop import _batches

    order = torch.arange(33)
    sizes = [len(b) for b in _batches(33, 16, order)]
    assert sizes == [16, 17] and torch.equal(torch.cat(list(_batches(33, 16, order))), order)
    assert [len(b) for b in _batches(1, 16, torch.arange(1))] == [1]
    assert [len(b) for b in _batches(32, 16, torch.arange(32))] == [16, 16]


def test_one_verdict_the_warning_and_the_report_use_the_same_criterion():
    """The demo's old contradiction: a warning on overall accuracy (86.7 % vs 86.8 %) beside a green box on mean IoU."""
    from terralearn.train.diagnostics import compare_with_baseline
    from terralearn.train.report import _headline

    metrics = metrics_from_confusion(np.array([[860, 140], [126, 874]]), ["a", "b"])
    better_iou = {"accuracy": metrics["accuracy"] + 0.001, "mean_iou": metrics["mean_iou"] - 0.014}
    assert compare_with_baseline(metrics, better_iou, "mean_iou")["key"] == "mean_iou"
    assert not [w for w in training_warnings([], metrics, [], better_iou, "mean_iou") if w["code"] == "baseline_better"]
    assert _headline({"metrics": metrics, "baseline": better_iou, "monitor": "mean_iou"})["verdict"] == "up"
    tie = {"accuracy": metrics["accuracy"], "mean_iou": metrics["mean_iou"] - 0.002}
    codes = [w["code"] for w in training_warnings([], metrics, [], tie, "mean_iou")]
    assert "baseline_better" in codes  # "does not clearly beat"
    assert _headline({"metrics": metrics, "baseline": tie, "monitor": "mean_iou"})["verdict"] == "tie"
