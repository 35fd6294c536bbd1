"""The detector registry (any band count, no resizing), box augmentation and the training loop's pieces."""

from __future__ import annotations

import pytest
import torch

from terralearn.config import DETECTOR_NAMES
from terralearn.errors import ConfigError
from terralearn.models.detection import DETECTORS, FAMILIES, PRESETS, build_detector, default_anchor_sizes
from terralearn.models.detection_augment import augment_detection, hflip, rot90, vflip
from terralearn.train.detection_loop import collate, evaluate_map, make_optimizer, predict_batch, train_one_epoch


def test_the_config_lists_exactly_the_registry():
    from typing import get_args

    from terralearn.config import INSTANCE_MODEL_NAMES, Architecture
    from terralearn.models.detection import INSTANCE_MODELS

    assert set(DETECTOR_NAMES) == set(DETECTORS) and set(INSTANCE_MODEL_NAMES) == set(INSTANCE_MODELS)
    assert set(FAMILIES) == set(DETECTORS) | set(INSTANCE_MODELS) <= set(get_args(Architecture))
    assert all(set(PRESETS[FAMILIES[n]]) == {"cpu", "full"} for n in FAMILIES)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector_takes_any_band_count_and_never_resizes(name):
    torch.manual_seed(0)
    model = build_detector(name, bands=5, n_classes=2, chip_size=64).eval()
    assert model.weights_used == "none"
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 5
    with torch.no_grad():
        out = model([torch.randn(5, 64, 64)])
    assert set(out[0]) >= {"boxes", "scores", "labels"}
    if len(out[0]["boxes"]):  # boxes stay in the chip's pixels (no resize to 800 px and back)
        assert float(out[0]["boxes"].max()) <= 64.0 + 1e-3


def test_a_faster_rcnn_training_step_on_one_band_with_an_empty_chip_gives_finite_losses():
    torch.manual_seed(0)
    model = build_detector("faster_rcnn_resnet18_fpn", bands=1, n_classes=1, chip_size=64)
    images, targets = collate([
        (torch.randn(1, 64, 64), {"boxes": [[10, 10, 22, 22]], "labels": [1]}),
        (torch.randn(1, 64, 64), {"boxes": [], "labels": []}),
    ])  # fmt: skip
    optimizer, scheduler = make_optimizer(model, "sgd", total_steps=4, warmup_steps=2)
    losses = train_one_epoch(model, [(images, targets)], optimizer, scheduler=scheduler)
    assert set(losses) >= {"loss", "loss_classifier", "loss_box_reg", "loss_objectness"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_bad_settings_and_targets_are_refused_in_plain_words():
    with pytest.raises(ConfigError, match="Unknown detector"):
        build_detector("yolo_v99", 3, 1, 64)
    with pytest.raises(ConfigError, match="too small"):
        build_detector("faster_rcnn_resnet18_fpn", 3, 1, 16)
    with pytest.raises(ConfigError, match="0 is the background"):
        collate([(torch.zeros(1, 8, 8), {"boxes": [[0, 0, 2, 2]], "labels": [0]})])
    with pytest.raises(ConfigError, match="5 sides"):
        build_detector("faster_rcnn_resnet18_fpn", 3, 1, 64, anchor_sizes=(8, 16))


def test_anchor_sizes_follow_the_object_sizes_not_the_chip():
    assert default_anchor_sizes(256) == default_anchor_sizes(512) == (8, 16, 32, 64, 128)
    assert default_anchor_sizes(64) == (4, 8, 16, 32, 64)


def _square_image(box, size=16):
    image = torch.zeros(2, size, size)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 1.0
    image[1, y1, x1] = 5.0  # one marked corner, so that a transposition would show
    return image


def _bbox(image):
    rows, cols = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


@pytest.mark.parametrize("transform", [hflip, vflip, rot90, lambda i, b: rot90(i, b, 3)])
def test_boxes_move_exactly_with_the_pixels(transform):
    box = [2, 3, 7, 11]
    image = _square_image(box)
    moved, boxes = transform(image, torch.tensor([box], dtype=torch.float32))
    assert boxes[0].tolist() == _bbox(moved)


def test_random_augmentation_is_seeded_and_keeps_boxes_tight():
    box = [1, 4, 9, 6]
    image = _square_image(box)
    for seed in range(8):
        a_img, a_box = augment_detection(image, torch.tensor([box]), torch.Generator().manual_seed(seed))
        b_img, b_box = augment_detection(image, torch.tensor([box]), torch.Generator().manual_seed(seed))
        assert torch.equal(a_img, b_img) and torch.equal(a_box, b_box)
        assert a_box[0].tolist() == _bbox(a_img)


class _Oracle(torch.nn.Module):
    """Returns the given boxes for every image, with decreasing scores (a stand-in detector)."""

    def __init__(self, boxes, labels):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.boxes, self.labels = torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels)

    def forward(self, images, targets=None):
        n = len(self.boxes)
        return [{"boxes": self.boxes, "labels": self.labels, "scores": torch.linspace(0.9, 0.5, n)} for _ in images]


def test_map_is_one_for_perfect_detections_and_falls_with_a_missed_class():
    truth = [{"boxes": [[2, 2, 10, 10], [20, 20, 30, 30]], "labels": [1, 2]}]
    perfect = evaluate_map(_Oracle([[2, 2, 10, 10], [20, 20, 30, 30]], [1, 2]), [torch.zeros(1, 32, 32)], truth)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["map"] == pytest.approx(1.0)
    assert perfect["per_class"][1]["ap50"] == pytest.approx(1.0)
    half = evaluate_map(_Oracle([[2, 2, 10, 10]], [1]), [torch.zeros(1, 32, 32)], truth)
    assert half["map50"] == pytest.approx(0.5)
    assert half["per_class"][2]["ap50"] == 0.0
    shifted = predict_batch(_Oracle([[2, 2, 10, 10]], [1]), [torch.zeros(1, 32, 32)], score_threshold=0.95)
    assert len(shifted[0]["boxes"]) == 0  # below the threshold: dropped
