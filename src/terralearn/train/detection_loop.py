"""The core of detector training: batching, one epoch, prediction, validation mAP, optimiser and schedule.

Kept apart from the stage, which handles chip sets, runs, checkpoints, early stopping and packages; this module
only touches tensors. A sample is ``(image, target)``: a (C, H, W) float tensor of normalised bands and a dict
with ``boxes`` float32 (N, 4) xyxy in pixels and ``labels`` int64 (N,), object classes 1..K (0 is the
background, torchvision's convention). Chips without objects have N = 0 and are kept: they teach the detector
what background looks like.

The optimiser helper's default, SGD with momentum 0.9, learning rate 0.01 and a linear warm-up, was measured
against AdamW on the synthetic task of ``tests/test_detection_models.py`` (Faster R-CNN ResNet-18-FPN, CPU
preset, 4-band 64 px chips); see ``OPTIMISERS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from terralearn.errors import ConfigError
from terralearn.models.detection_augment import augment_sample

#: Optimiser name -> (class name, default learning rate, extra keyword arguments).
OPTIMISERS = {
    "sgd": ("SGD", 0.01, {"momentum": 0.9, "weight_decay": 1e-4}),
    "adamw": ("AdamW", 1e-3, {"weight_decay": 1e-4}),
}


def _as_target(target: dict) -> dict:
    boxes = torch.as_tensor(target.get("boxes", ()), dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(target.get("labels", ()), dtype=torch.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ConfigError(
            f"A detection target has {len(boxes)} boxes but {len(labels)} labels.", "Give one label per box."
        )
    if len(labels) and int(labels.min()) < 1:
        raise ConfigError(
            f"Detection labels must be object classes 1..K (0 is the background), got {int(labels.min())}.",
            "Number the object classes from 1.",
        )
    return {**target, "boxes": boxes, "labels": labels}


def collate(samples: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """(images, targets) lists as torchvision detectors take them; empty targets become (0, 4) / (0,) tensors."""
    images = [torch.as_tensor(image, dtype=torch.float32) for image, _ in samples]
    return images, [_as_target(target) for _, target in samples]


def iterate_batches(
    samples: Sequence[tuple[torch.Tensor, dict]],
    batch_size: int,
    gen: torch.Generator | None = None,
    augment: dict | None = None,
):
    """Collated batches of ``samples``: shuffled when ``gen`` is given, augmented when ``augment`` is.

    ``augment`` holds the keyword arguments of :func:`terralearn.models.detection_augment.augment_detection`
    (``{}`` for flips and rotations only).
    """
    order = torch.randperm(len(samples), generator=gen).tolist() if gen is not None else range(len(samples))
    order = list(order)
    for start in range(0, len(order), batch_size):
        chunk = [samples[i] for i in order[start : start + batch_size]]
        if augment is not None:
            aug_gen = gen if gen is not None else torch.Generator().manual_seed(0)
            chunk = [augment_sample(img, _as_target(t), aug_gen, **augment) for img, t in chunk]
        yield collate(chunk)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_one_epoch(
    model: torch.nn.Module,
    batches: Iterable[tuple[list[torch.Tensor], list[dict]]],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    scheduler=None,
    clip_norm: float = 10.0,
) -> dict[str, float]:
    """One pass over ``batches`` (collated); the mean of each loss term and of their sum (``loss``).

    ``scaler``, when enabled, turns on mixed precision (CUDA). ``scheduler`` is stepped after every batch
    (warm-up and decay are per step); ``on_step(step, losses)`` is called after every batch (progress, cancel).
    Gradients are clipped to ``clip_norm``: randomly initialised detectors see huge regression losses on the
    first batches. A batch whose loss is not finite is skipped (its gradients are dropped), not trained on.
    """
    model.train()
    device = _device(model)
    amp = scaler is not None and scaler.is_enabled()
    sums: dict[str, float] = {}
    steps = 0
    params = [p for p in model.parameters() if p.requires_grad]
    for step, (images, targets) in enumerate(batches):
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, enabled=amp):
            losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            continue
        if amp:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["loss"] = float(loss.detach())
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        steps += 1
        if on_step is not None:
            on_step(step, values)
    return {k: v / steps for k, v in sums.items()} if steps else {"loss": float("nan")}


@torch.no_grad()
def predict_batch(
    model: torch.nn.Module, images: Sequence[torch.Tensor] | torch.Tensor, score_threshold: float = 0.05
) -> list[dict[str, np.ndarray]]:
    """Detections per image: ``boxes`` float32 (N, 4) xyxy in pixels, ``scores`` float32, ``labels`` int64."""
    model.eval()
    device = _device(model)
    out = model([im.to(device) for im in images])
    result = []
    for det in out:
        keep = det["scores"] >= score_threshold
        found = {
            "boxes": det["boxes"][keep].cpu().numpy().astype(np.float32),
            "scores": det["scores"][keep].cpu().numpy().astype(np.float32),
            "labels": det["labels"][keep].cpu().numpy().astype(np.int64),
        }
        if "masks" in det:  # Mask R-CNN: (N, 1, H, W) probabilities -> (N, H, W) object masks at 0.5
            found["masks"] = (det["masks"][keep][:, 0] >= 0.5).cpu().numpy().astype(np.uint8)
        result.append(found)
    return result


def evaluate_mask_map(
    model: torch.nn.Module,
    images: Sequence[torch.Tensor],
    targets: Sequence[dict],
    class_names: Sequence[str],
    batch_size: int = 8,
) -> dict:
    """Mask mAP of an instance model on ``images`` (``evaluate.instances``): ``map50``, ``map`` and ``f1_50``.

    Predicted and true masks become polygons; chips are laid side by side (shifted in x) so that no match
    crosses chips. With no object in ``targets`` the figures are NaN.
    """
    from terralearn.evaluate.instances import evaluate_instances
    from terralearn.geo.instances import mask_polygons

    if not sum(len(t["labels"]) for t in targets):
        return {"map": float("nan"), "map50": float("nan"), "f1_50": float("nan"), "per_class": {}}
    det, det_l, det_s, ref, ref_l = [], [], [], [], []
    for start in range(0, len(images), batch_size):
        preds = predict_batch(model, images[start : start + batch_size], 0.05)
        for offset, p in enumerate(preds):
            k = start + offset
            dx = k * (images[k].shape[-1] + 8)
            polys = mask_polygons(p.get("masks", np.zeros((0, 1, 1), np.uint8)), dx)
            for poly, label, score in zip(polys, p["labels"].tolist(), p["scores"].tolist(), strict=True):
                if poly is not None:
                    det.append(poly)
                    det_l.append(label - 1)
                    det_s.append(score)
            t = targets[k]
            truth = mask_polygons(np.asarray(t["masks"]), dx)
            for poly, label in zip(truth, np.asarray(t["labels"]).tolist(), strict=True):
                if poly is not None:
                    ref.append(poly)
                    ref_l.append(label - 1)
    out = evaluate_instances(det, det_l, det_s, ref, ref_l, class_names)
    nan = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    per_class = {c["index"] + 1: {"ap50": c["ap50"], "ap": c["ap"]} for c in out["per_class"] if c["references"]}
    return {"map50": nan(out["mask_map50"]), "map": nan(out["mask_map"]), "f1_50": nan(out["f1_50"]),
            "per_class": per_class}  # fmt: skip


def _coco(targets: Sequence[dict], sizes: Sequence[tuple[int, int]]) -> dict:
    """Ground truth as a COCO dict (boxes as x, y, w, h); one category per label met."""
    images, anns, cats = [], [], set()
    for i, (t, (h, w)) in enumerate(zip(targets, sizes, strict=True)):
        images.append({"id": i + 1, "height": int(h), "width": int(w)})
        t = _as_target(t)
        for box, label in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True):
            x1, y1, x2, y2 = box
            cats.add(int(label))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label), "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})  # fmt: skip
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in sorted(cats)]}


def evaluate_map(
    model: torch.nn.Module,
    images: Sequence[torch.Tensor],
    targets: Sequence[dict],
    batch_size: int = 8,
    max_detections: int = 300,
) -> dict[str, float]:
    """COCO box mAP of ``model`` on ``images``: ``map`` (IoU 0.50:0.95) and ``map50`` (IoU 0.5).

    Computed by faster-coco-eval (pycocotools' algorithm), up to ``max_detections`` per image (dense scenes;
    COCO's own limit is 100). With no object in ``targets`` the mAP is undefined: both are NaN.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if len(images) != len(targets):
        raise ConfigError(f"{len(images)} images but {len(targets)} targets.", "Give one target per image.")
    gt_dict = _coco(targets, [tuple(im.shape[-2:]) for im in images])
    if not gt_dict["annotations"]:
        return {"map": float("nan"), "map50": float("nan")}
    dets = []
    for start in range(0, len(images), batch_size):
        preds = predict_batch(model, images[start : start + batch_size], 0.0)
        for offset, p in enumerate(preds):
            for (x1, y1, x2, y2), s, c in zip(
                p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True
            ):
                dets.append({"image_id": start + offset + 1, "category_id": int(c), "score": float(s),
                             "bbox": [x1, y1, x2 - x1, y2 - y1]})  # fmt: skip
    quiet = lambda *args, **kwargs: None  # noqa: E731
    gt = COCO(gt_dict, print_function=quiet)
    dt = gt.loadRes(dets)
    ev = COCOeval_faster(gt, dt, "bbox", print_function=quiet)
    ev.params.maxDets = [1, 10, max_detections]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    clean = lambda v: float(v) if v >= 0 else 0.0  # noqa: E731  (-1: no detection of a category at all)
    return {"map": clean(ev.stats[0]), "map50": clean(ev.stats[1]), "per_class": _per_class(ev)}


def _per_class(ev) -> dict[int, dict[str, float]]:
    """Label -> AP at IoU 0.5 and AP over IoU 0.50:0.95, from the accumulated precision (T, R, K, A, M) array."""
    precision = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]  # every area, the largest detection limit
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k]
        per_iou = [float(row[row > -1].mean()) if (row > -1).any() else 0.0 for row in p]
        out[int(cat)] = {"ap50": per_iou[0], "ap": float(np.mean(per_iou))}
    return out


def make_optimizer(
    model: torch.nn.Module,
    name: str = "sgd",
    lr: float | None = None,
    total_steps: int | None = None,
    warmup_steps: int = 50,
):
    """(optimizer, per-step scheduler): linear warm-up from 10 % over ``warmup_steps``, then cosine to 5 %.

    Without ``total_steps`` the rate stays at ``lr`` after the warm-up. Only trainable parameters are given to
    the optimiser (frozen pretrained layers stay frozen).
    """
    if name not in OPTIMISERS:
        raise ConfigError(f"Unknown optimiser '{name}'.", f"Choose one of {', '.join(OPTIMISERS)}.")
    cls, default_lr, extra = OPTIMISERS[name]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = getattr(torch.optim, cls)(params, lr=lr or default_lr, **extra)
    warmup = max(1, warmup_steps)
    plan = {"total_steps": total_steps}  # the scheduler's ``plan``: a time budget can shorten the run later

    def factor(step: int) -> float:
        total = plan["total_steps"]
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        if not total or total <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scheduler.plan = plan
    return optimizer, scheduler


def epochs_in_budget(budget_seconds: float, epoch_seconds: float, max_epochs: int) -> int:
    """How many epochs of ``epoch_seconds`` fit in ``budget_seconds`` (at least 1, at most ``max_epochs``)."""
    if epoch_seconds <= 0:
        return max_epochs
    return max(1, min(max_epochs, int(budget_seconds // epoch_seconds)))
