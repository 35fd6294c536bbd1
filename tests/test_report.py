"""The HTML training report: content, embedded plots, PNG files, escaping and missing fields."""

from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np
import pytest
from markupsafe import escape

from terralearn.io.html import class_colours, colourise
from terralearn.train.report import PLOTS, write_training_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def esc(text: str) -> str:
    """Text as jinja2's autoescape writes it."""
    return str(escape(text))


NAMES = [
    "water", "forest", "cropland", "urban", "grassland", "barren", "wetland", "shrub", "snow",
    "road", "sand", "sea", "built-up low density", "orchard", "vineyard", "paddy rice", "quarry", "glacier",
]  # fmt: skip


def make_summary(k: int, seed: int = 0, baseline: bool = True, warnings: bool = True, names=None) -> dict:
    """A realistic run summary for k classes: imbalanced classes, a confusion matrix and metrics derived from it."""
    rng = np.random.default_rng(seed)
    names = list(names or NAMES[:k])
    from terralearn.classes import colour_for

    share = rng.dirichlet(np.full(k, 0.8))
    train = np.maximum((share * 400_000).astype(int), 50)
    val = np.maximum((share * rng.uniform(0.6, 1.4, k) * 90_000).astype(int), 10)
    classes = [
        {"index": i, "value": 10 * (i + 1), "name": names[i], "colour": colour_for(names[i], i),
         "train_pixels": int(train[i]), "val_pixels": int(val[i])}
        for i in range(k)
    ]  # fmt: skip
    recall = rng.uniform(0.5, 0.98, k)
    confusion = np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        hit = int(val[i] * recall[i])
        confusion[i, i] = hit
        confusion[i] += rng.multinomial(val[i] - hit, rng.dirichlet(np.ones(k)))
    tp = np.diag(confusion).astype(float)
    pred = confusion.sum(0).astype(float)
    ref = confusion.sum(1).astype(float)
    precision = np.divide(tp, pred, out=np.zeros(k), where=pred > 0)
    rec = tp / ref
    f1 = np.divide(2 * precision * rec, precision + rec, out=np.zeros(k), where=(precision + rec) > 0)
    iou = tp / (ref + pred - tp)
    n = confusion.sum()
    acc = tp.sum() / n
    pe = (ref * pred).sum() / n**2
    per_class = [
        {"index": i, "name": names[i], "precision": float(precision[i]), "recall": float(rec[i]), "f1": float(f1[i]),
         "iou": float(iou[i]), "support": int(ref[i])}
        for i in range(k)
    ]  # fmt: skip
    epochs = 10
    history = []
    for e in range(1, epochs + 1):
        t = e / epochs
        history.append({
            "epoch": e, "train_loss": 1.3 * np.exp(-2.2 * t) + 0.05 * rng.random(),
            "val_loss": 1.2 * np.exp(-1.6 * t) + 0.25 * t**2 + 0.05 * rng.random(),
            "accuracy": float(acc * (1 - 0.5 * np.exp(-3 * t))), "dice": float(f1.mean() * (1 - 0.6 * np.exp(-3 * t))),
            "mean_iou": float(iou.mean() * (1 - 0.7 * np.exp(-3 * t))), "lr": 1e-3 * 0.5 ** (e // 4),
            "seconds": 9.5 + rng.random(),
        })  # fmt: skip
    summary = {
        "run_id": 4242, "name": f"unet-resnet34-{k}c", "created": "2026-11-21T16:00:00+00:00", "status": "finished",
        "task": "pixel_classification", "architecture": "unet", "backbone": "resnet34", "weights": "none",
        "device": "cpu", "chip_set": "/data/chips/run7", "bands": ["blue", "green", "red", "nir"],
        "chip_size": [64, 64], "pixel_size": [30.0, 30.0], "epochs_set": 30, "epochs_run": epochs, "best_epoch": 7,
        "monitor": "mean_iou", "training_seconds": 312.5, "model_size_mb": 93.1, "classes": classes,
        "history": history,
        "metrics": {"accuracy": float(acc), "dice": float(f1.mean()), "mean_iou": float(iou.mean()),
                    "kappa": float((acc - pe) / (1 - pe)), "per_class": per_class, "confusion": confusion.tolist()},
        "baseline": {"name": "random forest (per pixel)", "accuracy": float(acc) - 0.04, "dice": float(f1.mean()) - 0.05,
                     "mean_iou": float(iou.mean()) - 0.06} if baseline else None,
        "warnings": [{"code": "majority_class", "message": f"Class '{names[0]}' covers most of the training pixels.",
                      "fix": "Add labels for the rare classes or use the focal loss."}] if warnings else [],
        "settings": {"loss": "focal", "batch_size": 16, "learning_rate": 0.001, "augment": True,
                     "class_weights": [1.0] * min(k, 4)},
    }  # fmt: skip
    return summary


def make_samples(k: int, n: int = 3, size: int = 64, seed: int = 1) -> list[dict]:
    """n synthetic validation chips: smooth blobs of classes, a noisy prediction, an unlabelled border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    samples = []
    for j in range(n):
        centres = rng.uniform(0, size, (k, 2))
        d = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
        label = np.argmin(d, axis=-1).astype(np.uint8)
        pred = label.copy()
        flip = rng.random(label.shape) < 0.12
        pred[flip] = rng.integers(0, k, int(flip.sum()))
        label[:, : size // 8] = 255
        lab = label.astype(int)
        rgb = np.stack([(lab * 37 + 40) % 256, (lab * 71 + 90) % 256, (lab * 13 + 60) % 256], -1)
        rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
        samples.append({"chip": f"images/{j:09d}.tif", "image_rgb": rgb, "label": label, "prediction": pred})
    return samples


def _check_pngs(out, names=PLOTS):
    for name in names:
        path = out / f"{name}.png"
        assert path.is_file(), path
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("r3")
    summary = make_summary(3, seed=3)
    path = write_training_report(summary, out, samples=make_samples(3))
    return summary, out, path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def fifteen_classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("r15")
    summary = make_summary(15, seed=15, baseline=False, warnings=False)
    path = write_training_report(summary, out, samples=make_samples(15, n=2))
    return summary, out, path, path.read_text(encoding="utf-8")


def test_three_class_report_content(three_classes):
    summary, out, path, text = three_classes
    assert path == out / "report.html" and path.is_file()
    assert "Run 4242" in text
    for c in summary["classes"]:
        assert esc(c["name"]) in text
    assert esc(summary["warnings"][0]["message"]) in text
    assert esc(summary["warnings"][0]["fix"]) in text
    assert "Yes, deep learning beat the baseline" in text
    assert "random forest (per pixel)" in text
    assert "No warnings" not in text
    assert text.count('<img src="data:image/png;base64,') == len(PLOTS)
    assert "spatially held-out validation data" in text
    _check_pngs(out)
    # no temporary files left behind
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{p}.png" for p in PLOTS), "report.html"])


def test_three_class_tables(three_classes):
    summary, _, _, text = three_classes
    # every epoch is listed, the best one tagged
    assert len(re.findall(r"<tr( class=\"best\")?><td class=\"n\">\d+", text)) == len(summary["history"])
    assert text.count('class="tag best"') == 1
    # per-class table: weak classes (IoU < 0.5) flagged
    n_weak = sum(p["iou"] < 0.5 for p in summary["metrics"]["per_class"])
    assert text.count('<tr class="weak">') == n_weak
    assert "(user's accuracy)" in text and "(producer's accuracy)" in text
    for key in summary["settings"]:
        assert f"<th>{key}</th>" in text
    assert "Pixel counts are left out" not in text


def test_fifteen_classes_without_baseline(fifteen_classes):
    summary, out, _, text = fifteen_classes
    for c in summary["classes"]:
        assert esc(c["name"]) in text
    assert "No warnings" in text
    assert "nothing to compare the model against" in text
    assert "beat the baseline" not in text
    assert text.count('<img src="data:image/png;base64,') == len(PLOTS)
    assert "Pixel counts are left out" in text  # > 12 classes: no annotations in the confusion matrix
    _check_pngs(out)


def test_baseline_wins_sentence(tmp_path):
    summary = make_summary(2, seed=2, warnings=False)
    summary["baseline"] = {"name": "rf", **{k: summary["metrics"][k] + 0.1 for k in ("accuracy", "dice", "mean_iou")}}
    summary["history"] = []
    text = write_training_report(summary, tmp_path).read_text(encoding="utf-8")
    assert "No, deep learning did not beat the baseline" in text
    assert "for the rf (-0.100)" in text

    summary["baseline"] = {"name": "rf", "mean_iou": summary["metrics"]["mean_iou"] - 0.002, "accuracy": 0.99}
    text = write_training_report(summary, tmp_path).read_text(encoding="utf-8")
    assert "Deep learning did not clearly beat the baseline" in text

    summary["baseline"] = {"name": "rf", "mean_iou": summary["metrics"]["mean_iou"] - 0.1, "accuracy": 0.999}
    text = write_training_report(summary, tmp_path).read_text(encoding="utf-8")
    assert "Yes, deep learning beat the baseline" in text
    assert "Note that the baseline scores higher on overall accuracy." in text


def test_minimal_summary_renders_and_escapes(tmp_path):
    evil = "<script>alert(1)</script>"
    summary = {
        "run_id": 7,
        "name": "bare & <b>bold</b>",
        "classes": [
            {"index": 0, "name": evil, "colour": "red; background:url(x)"},
            {"index": 1, "name": "water"},
        ],
        "metrics": {"accuracy": 0.5},
        "warnings": [{"message": "<img src=x onerror=alert(2)>", "fix": "x"}],
    }
    (tmp_path / "loss.png").write_bytes(b"stale")  # an old run's plot must not survive
    path = write_training_report(summary, tmp_path, samples=None)
    text = path.read_text(encoding="utf-8")
    assert evil not in text and "<img src=x" not in text
    assert esc(evil) in text
    assert "bare &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "url(x)" not in text  # unreadable colours fall back to a default hex colour
    assert "Run 7" in text and "No per-epoch history" in text and "nothing to compare" in text
    assert not (tmp_path / "loss.png").exists()
    assert not (tmp_path / "samples.png").exists()
    assert not (tmp_path / "class_frequencies.png").exists()  # no pixel counts recorded


def test_empty_summary_renders(tmp_path):
    path = write_training_report({}, tmp_path / "new" / "dir")
    text = path.read_text(encoding="utf-8")
    assert "<html" in text and "No validation metrics" in text
    assert "data:image/png" not in text


def test_class_colours_and_colourise():
    classes = [
        {"index": 1, "name": "forest", "colour": "#1B7837"},
        {"index": 0, "name": "water", "colour": "#1f78b4"},
        {"index": 2, "name": "mystery"},
    ]
    colours = class_colours(classes)
    assert colours.dtype == np.uint8 and colours.shape == (3, 3)
    assert colours[0].tolist() == [0x1F, 0x78, 0xB4]
    assert colours[1].tolist() == [0x1B, 0x78, 0x37]
    idx = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    rgb = colourise(idx, colours)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == colours[0].tolist()
    assert rgb[1, 0].tolist() == colours[2].tolist()
    assert rgb[1, 1].tolist() == [200, 200, 200]
    assert colourise(idx, colours, unlabelled_rgb=(0, 0, 0))[1, 1].tolist() == [0, 0, 0]
