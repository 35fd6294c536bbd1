"""Object detectors: a plain-dict registry of torchvision detectors for any band count.

``DETECTORS`` maps a TerraLearn name to a builder; ``FAMILIES`` gives each entry's family (``faster_rcnn``,
``retinanet``, ``fcos``, ``ssd``), which decides its presets and its loss names. ``build_detector`` is the one
call the stages use. Every model returned:

* takes ``bands`` input channels: the backbone's first convolution is replaced. With pretrained RGB weights the
  red/green/blue filters are kept for the first three bands and the others cycle through them (all scaled
  by 3 / bands; ``models.segmentation.band_conv``, shared with the segmentation models); with random initialisation (the normal case offline) the new convolution is freshly
  initialised, so that no two bands start with the same filter;
* never resizes and never re-normalises its input: TerraLearn normalises chips itself with per-band statistics,
  so the transform has ``bands``-long ``image_mean`` 0 / ``image_std`` 1 and ``min_size = max_size = chip
  size``, and :class:`ChipTransform` skips the resize whatever the input size (a larger tile at prediction time
  runs at its own size, the boxes stay in its pixels);
* uses anchors for small objects (aerial chips: objects of about 8 to 64 px in 256 px chips): five sizes, one
  per pyramid level, from :func:`default_anchor_sizes` or the caller's ``anchor_sizes``;
* keeps up to 300 detections per chip (dense scenes: cars, trees, buildings).

Presets (``PRESETS``): ``"cpu"`` keeps fewer region proposals and samples fewer regions per chip for the box
head (Faster R-CNN) or fewer candidates per level (RetinaNet, FCOS); ``"full"`` is torchvision's defaults.
``bench/detect_models.py`` measures both; :func:`default_preset` picks ``"cpu"`` on the CPU, ``"full"``
elsewhere.

Pretrained weights: machines without internet are normal. ``pretrained=True`` uses the ImageNet backbone
weights only when they are already in torch's hub cache (or when ``HF_HUB_OFFLINE=0`` says downloads are
allowed); otherwise the model is built at once from random initialisation, and ``model.weights_used`` /
``model.weights_note`` say so, for the stage to show once.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large, resnet
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet, ssdlite320_mobilenet_v3_large
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import misc
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from terralearn.errors import ConfigError

#: Detections kept per chip by every detector (dense scenes).
DETECTIONS_PER_CHIP = 300
#: Mask R-CNN runs its mask head on every detection kept: fewer (COCO's 100), as its masks cost most of a pass.
MASK_DETECTIONS_PER_CHIP = 100

#: Per family and preset: keyword arguments of the torchvision detector class.
PRESETS: dict[str, dict[str, dict]] = {
    "faster_rcnn": {
        "cpu": {
            "rpn_pre_nms_top_n_train": 1000,
            "rpn_post_nms_top_n_train": 500,
            "rpn_pre_nms_top_n_test": 500,
            "rpn_post_nms_top_n_test": DETECTIONS_PER_CHIP,
            "rpn_batch_size_per_image": 256,
            "box_batch_size_per_image": 128,
        },
        "full": {
            "rpn_pre_nms_top_n_train": 2000,
            "rpn_post_nms_top_n_train": 2000,
            "rpn_pre_nms_top_n_test": 1000,
            "rpn_post_nms_top_n_test": 1000,
            "rpn_batch_size_per_image": 256,
            "box_batch_size_per_image": 512,
        },
    },
    "retinanet": {"cpu": {"topk_candidates": 300}, "full": {"topk_candidates": 1000}},
    "fcos": {"cpu": {"topk_candidates": 300}, "full": {"topk_candidates": 1000}},
    "ssd": {"cpu": {"topk_candidates": 300}, "full": {"topk_candidates": 400}},
}


def default_preset(device: torch.device | str) -> str:
    """``"cpu"`` on the CPU, ``"full"`` on accelerators."""
    return "cpu" if torch.device(device).type == "cpu" else "full"


def default_anchor_sizes(chip_size: int) -> tuple[int, ...]:
    """Five anchor sides in pixels, one per pyramid level: 8 to 128 px from 128 px chips up, 4 to 64 px below.

    Aerial objects keep their size in pixels whatever the chip size (the pixel size sets it), so the anchors do
    not grow with the chip; small chips only drop the anchors larger than the chip.
    """
    base = 8 if chip_size >= 128 else 4
    return tuple(base * 2**i for i in range(5))


class ChipTransform(GeneralizedRCNNTransform):
    """torchvision's detector transform without the resize, and without the normalisation at mean 0 / std 1.

    The batch is still padded to a multiple of ``size_divisible`` (bottom and right: boxes do not move).
    """

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not image.is_floating_point():
            raise TypeError(f"Detector inputs must be normalised floats, got {image.dtype}.")
        if any(self.image_mean) or any(s != 1 for s in self.image_std):
            return super().normalize(image)
        return image

    def resize(self, image, target=None):
        return image, target


def _chip_transform(bands: int, chip_size: int, fixed: bool = False) -> ChipTransform:
    return ChipTransform(
        min_size=chip_size,
        max_size=chip_size,
        image_mean=[0.0] * bands,
        image_std=[1.0] * bands,
        size_divisible=1 if fixed else 32,
        fixed_size=(chip_size, chip_size) if fixed else None,
    )


# ---------------------------------------------------------------------------------------------- weights
def _local_weights(weights, pretrained: bool):
    """(weights enum or None, note or None): the enum only when its file is cached or downloads are allowed."""
    if not pretrained:
        return None, None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.exists() or os.environ.get("HF_HUB_OFFLINE") == "0":
        return weights, None
    return None, f"No pretrained weights ({weights}) on this machine (offline): random initialisation."


def _adapt_first_conv(backbone: nn.Module, bands: int, pretrained: bool) -> None:
    """Replace the first 3-band convolution of ``backbone`` by a ``bands`` one (see the module doc)."""
    parent, attr, conv = next(
        (p, a, c) for p in backbone.modules() for a, c in p.named_children() if isinstance(c, nn.Conv2d)
    )
    if conv.in_channels == bands:
        return
    from terralearn.models.segmentation import band_conv

    setattr(parent, attr, band_conv(conv, bands, keep_weights=pretrained))


def _finish(model: nn.Module, bands: int, chip_size: int, weights, note, fixed: bool = False) -> nn.Module:
    _adapt_first_conv(model.backbone, bands, weights is not None)
    model.transform = _chip_transform(bands, chip_size, fixed)
    model.weights_used = "imagenet" if weights is not None else "none"
    model.weights_note = note
    return model


# ---------------------------------------------------------------------------------------------- builders
def _resnet(depth: str, pretrained: bool):
    """A torchvision ResNet, its weights (or None), the note, the norm layer and the trainable layer count."""

    enum = getattr(resnet, f"ResNet{depth.removeprefix('resnet')}_Weights").IMAGENET1K_V1
    weights, note = _local_weights(enum, pretrained)
    norm = misc.FrozenBatchNorm2d if weights is not None else nn.BatchNorm2d
    net = getattr(resnet, depth)(weights=weights, norm_layer=norm)
    return net, weights, note, (3 if weights is not None else 5)


def _anchors(anchor_sizes, chip_size: int, per_octave: int = 1):

    sizes = tuple(anchor_sizes or default_anchor_sizes(chip_size))
    if len(sizes) != 5:
        raise ConfigError(f"anchor_sizes must give 5 sides (one per pyramid level), got {sizes}.", "Give 5 sizes.")
    scales = tuple(tuple(round(s * 2 ** (k / per_octave)) for k in range(per_octave)) for s in sizes)
    return AnchorGenerator(scales, ((0.5, 1.0, 2.0),) * len(scales))


def _faster_rcnn_resnet(depth, bands, n_classes, chip_size, preset, anchor_sizes=None, pretrained=False):

    net, weights, note, trainable = _resnet(depth, pretrained)
    model = _faster_rcnn(_resnet_fpn_extractor(net, trainable), n_classes, chip_size, preset, anchor_sizes)
    return _finish(model, bands, chip_size, weights, note)


def _faster_rcnn(backbone, n_classes, chip_size, preset, anchor_sizes) -> FasterRCNN:
    return FasterRCNN(
        backbone,
        n_classes + 1,
        rpn_anchor_generator=_anchors(anchor_sizes, chip_size),
        box_detections_per_img=DETECTIONS_PER_CHIP,
        **PRESETS["faster_rcnn"][preset],
    )


def _mask_rcnn_resnet(depth, bands, n_classes, chip_size, preset, anchor_sizes=None, pretrained=False):
    """Mask R-CNN: the Faster R-CNN of ``depth`` with torchvision's mask branch (14 x 14 RoIs, 28 x 28 masks)."""
    net, weights, note, trainable = _resnet(depth, pretrained)
    model = MaskRCNN(
        _resnet_fpn_extractor(net, trainable),
        n_classes + 1,
        rpn_anchor_generator=_anchors(anchor_sizes, chip_size),
        box_detections_per_img=MASK_DETECTIONS_PER_CHIP,
        **PRESETS["faster_rcnn"][preset],
    )
    return _finish(model, bands, chip_size, weights, note)


def _faster_rcnn_mobilenet(bands, n_classes, chip_size, preset, anchor_sizes=None, pretrained=False):
    """MobileNetV3-Large with an FPN on strides 4, 8, 16 and 32 (torchvision's uses 32 only: too coarse)."""

    weights, note = _local_weights(MobileNet_V3_Large_Weights.IMAGENET1K_V1, pretrained)
    norm = misc.FrozenBatchNorm2d if weights is not None else nn.BatchNorm2d
    net = mobilenet_v3_large(weights=weights, norm_layer=norm)
    backbone = _mobilenet_extractor(net, True, 3 if weights is not None else 6, returned_layers=[1, 2, 3, 5])
    model = _faster_rcnn(backbone, n_classes, chip_size, preset, anchor_sizes)
    return _finish(model, bands, chip_size, weights, note)


def _one_stage(kind, depth, bands, n_classes, chip_size, preset, anchor_sizes=None, pretrained=False):
    """RetinaNet or FCOS on a ResNet FPN P3-P7 (torchvision's layout), with small-object anchors."""

    net, weights, note, trainable = _resnet(depth, pretrained)
    backbone = _resnet_fpn_extractor(net, trainable, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    common = {"detections_per_img": DETECTIONS_PER_CHIP, "score_thresh": 0.05, **PRESETS[kind][preset]}
    if kind == "retinanet":
        model = RetinaNet(backbone, n_classes + 1, anchor_generator=_anchors(anchor_sizes, chip_size, 3), **common)
    else:  # FCOS: one anchor per location; its sizes are the level strides and set the regression ranges
        model = FCOS(backbone, n_classes + 1, **common)
    return _finish(model, bands, chip_size, weights, note)


def _ssdlite(bands, n_classes, chip_size, preset, anchor_sizes=None, pretrained=False):
    """SSDlite on MobileNetV3-Large at a fixed size = the chip size, with default boxes scaled to small objects."""

    weights, note = _local_weights(MobileNet_V3_Large_Weights.IMAGENET1K_V1, pretrained)
    sizes = tuple(anchor_sizes or default_anchor_sizes(chip_size))
    model = ssdlite320_mobilenet_v3_large(
        weights=None,
        weights_backbone=weights,
        num_classes=n_classes + 1,
        detections_per_img=DETECTIONS_PER_CHIP,
        score_thresh=0.05,
        **PRESETS["ssd"][preset],
    )
    # The first SSDlite map has stride 16: its boxes start at the second anchor size.
    low, high = sizes[1] / chip_size, min(0.95, sizes[-1] / chip_size)
    model.anchor_generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=low, max_ratio=max(high, low))
    return _finish(model, bands, chip_size, weights, note, fixed=True)


#: TerraLearn name -> builder(bands, n_classes, chip_size, preset, anchor_sizes=None, pretrained=False).
DETECTORS = {
    "faster_rcnn_resnet18_fpn": partial(_faster_rcnn_resnet, "resnet18"),
    "faster_rcnn_resnet34_fpn": partial(_faster_rcnn_resnet, "resnet34"),
    "faster_rcnn_resnet50_fpn": partial(_faster_rcnn_resnet, "resnet50"),
    "faster_rcnn_mobilenet_v3_fpn": _faster_rcnn_mobilenet,
    "retinanet_resnet18_fpn": partial(_one_stage, "retinanet", "resnet18"),
    "fcos_resnet18_fpn": partial(_one_stage, "fcos", "resnet18"),
    "ssdlite_mobilenet_v3": _ssdlite,
}

#: The instance-segmentation models (task ``instances``): detectors with a mask per object.
INSTANCE_MODELS = {
    "mask_rcnn_resnet18_fpn": partial(_mask_rcnn_resnet, "resnet18"),
    "mask_rcnn_resnet50_fpn": partial(_mask_rcnn_resnet, "resnet50"),
}

#: TerraLearn name -> family (keys of ``PRESETS``).
FAMILIES = {
    "mask_rcnn_resnet18_fpn": "faster_rcnn",
    "mask_rcnn_resnet50_fpn": "faster_rcnn",
    "faster_rcnn_resnet18_fpn": "faster_rcnn",
    "faster_rcnn_resnet34_fpn": "faster_rcnn",
    "faster_rcnn_resnet50_fpn": "faster_rcnn",
    "faster_rcnn_mobilenet_v3_fpn": "faster_rcnn",
    "retinanet_resnet18_fpn": "retinanet",
    "fcos_resnet18_fpn": "fcos",
    "ssdlite_mobilenet_v3": "ssd",
}

#: The detector the stages use when none is named (see bench/detect_models.py for the figures).
DEFAULT_DETECTOR = "faster_rcnn_resnet18_fpn"
DEFAULT_INSTANCE_MODEL = "mask_rcnn_resnet18_fpn"
#: Every model that ``build_detector`` builds: boxes, and boxes with masks.
ALL_DETECTORS = {**DETECTORS, **INSTANCE_MODELS}


def build_detector(
    name: str,
    bands: int,
    n_classes: int,
    chip_size: int,
    preset: str = "cpu",
    anchor_sizes: tuple[int, ...] | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """A torchvision detector for ``bands`` bands and ``n_classes`` object classes (labels 1..K, 0 background).

    ``chip_size`` is the side of the (square) training chips in pixels; ``preset`` is ``"cpu"`` or ``"full"``;
    ``anchor_sizes`` gives five anchor sides in pixels (default :func:`default_anchor_sizes`).
    """
    if name not in ALL_DETECTORS:
        raise ConfigError(f"Unknown detector '{name}'.", f"Choose one of {', '.join(sorted(ALL_DETECTORS))}.")
    if preset not in PRESETS[FAMILIES[name]]:
        raise ConfigError(f"Unknown detector preset '{preset}'.", "Choose one of cpu, full.")
    if bands < 1 or n_classes < 1:
        raise ConfigError(
            f"A detector needs at least 1 band and 1 object class, got {bands} bands and {n_classes} classes.",
            "Check the chip set's bands and classes.",
        )
    if chip_size < 32:
        raise ConfigError(f"Detection chips of {chip_size} px are too small.", "Export chips of 32 px or more.")
    return ALL_DETECTORS[name](bands, n_classes, chip_size, preset, anchor_sizes=anchor_sizes, pretrained=pretrained)


def detector_for_card(card: dict) -> nn.Module:
    """The (randomly initialised) detector a detection package's card describes, ready for its weights.

    The card's contract, written by the training stage: ``architecture`` (a ``DETECTORS`` name),
    ``band_count``, ``classes`` (object classes; detector label ``k + 1`` is ``classes[k]``), ``chip_size``
    ([width, height] of the training chips), ``preset`` and ``anchor_sizes``.
    """
    return build_detector(
        card["architecture"],
        int(card["band_count"]),
        len(card["classes"]),
        int(card["chip_size"][0]),
        card.get("preset", "cpu"),
        anchor_sizes=tuple(card["anchor_sizes"]) if card.get("anchor_sizes") else None,
    )


#: The most proposals and detections a tile may keep when budgets are scaled to its area.
MAX_TILE_BUDGET = 5000


def scale_to_tile(model: nn.Module, chip_size: int, tile: int) -> float:
    """Keep the detector's budgets per pixel on tiles larger than its training chips; returns the area ratio.

    A detector keeps a fixed number of region proposals (Faster R-CNN), candidates per level (RetinaNet, FCOS,
    SSD) and detections per image. Sized for the training chip, they thin out on a tile four times its area, and
    recall falls (measured on DOTA P0706 ships with 128-px chips: 0.78 at 128-px tiles, 0.67 at 512 px). The
    budgets grow with the tile's area (at most ``MAX_TILE_BUDGET``); tiles no larger than the chip keep them.
    Calling it again with another tile size starts from the original budgets.
    """
    ratio = max(1.0, (tile / max(chip_size, 1)) ** 2)
    base = getattr(model, "_chip_budgets", None)
    if base is None:
        base = {}
        if hasattr(model, "rpn"):
            base["pre"], base["post"] = model.rpn._pre_nms_top_n["testing"], model.rpn._post_nms_top_n["testing"]
            base["dets"] = model.roi_heads.detections_per_img
        else:
            base["topk"], base["dets"] = model.topk_candidates, model.detections_per_img
        model._chip_budgets = base

    def grow(n: int) -> int:
        return int(min(MAX_TILE_BUDGET, max(n, round(n * ratio))))

    if hasattr(model, "rpn"):
        model.rpn._pre_nms_top_n["testing"], model.rpn._post_nms_top_n["testing"] = (
            grow(base["pre"]),
            grow(base["post"]),
        )
        model.roi_heads.detections_per_img = grow(base["dets"])
    else:
        model.topk_candidates, model.detections_per_img = grow(base["topk"]), grow(base["dets"])
    return ratio
