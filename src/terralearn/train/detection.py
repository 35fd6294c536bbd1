"""Stage 2 for object detection: a detection chip set -> a detector package, recorded as a run.

The same run machinery as pixel classification (``train``): a checkpoint every epoch (``io.checkpoint``, so a
killed run resumes with ``--resume``), early stopping and the best epoch chosen on the validation chips' COCO
mAP at IoU 0.5, augmentation that moves the boxes with the pixels (flips and quarter turns, optional band
jitter), a safetensors package with a JSON card, the run table's ``map50`` / ``map`` columns and an HTML report.

The validation chips come from export's spatial blocks, so no object is in both splits. Chips without objects are
trained on (they teach the background). The detector, its CPU / full preset and its anchors are in
``models.detection``; one epoch, prediction and the mAP in ``train.detection_loop``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from terralearn import __version__
from terralearn.classes import distinct_colours
from terralearn.config import TrainConfig
from terralearn.errors import ChipSetError, ConfigError, RunError
from terralearn.io.checkpoint import load_checkpoint, save_checkpoint
from terralearn.io.chips import REFIT_SPLIT, ChipSet
from terralearn.io.detection_chips import ChipObjects, read_detection_chips
from terralearn.io.instance_chips import read_instance_chips
from terralearn.io.package import save_package
from terralearn.io.runfiles import package_size_mb, save_samples
from terralearn.models.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_INSTANCE_MODEL,
    DETECTORS,
    INSTANCE_MODELS,
    build_detector,
    default_anchor_sizes,
    default_preset,
)
from terralearn.models.device import resolve_device
from terralearn.train.data import band_statistics, normalise
from terralearn.train.detection_loop import (
    epochs_in_budget,
    evaluate_map,
    evaluate_mask_map,
    iterate_batches,
    make_optimizer,
    predict_batch,
    train_one_epoch,
)

#: Augmentations of the pixel stage that detection applies (noise is not used: it does not move boxes).
_AUGMENT = {"flip", "rot90", "jitter"}


@dataclass
class DetectionData:
    """A detection chip set in memory, normalised: one (C, H, W) float32 tensor and one target per chip."""

    chipset: ChipSet
    classes: list[dict]
    band_names: list[str]
    mean: np.ndarray
    std: np.ndarray
    train: list[tuple[torch.Tensor, dict]]
    val: list[tuple[torch.Tensor, dict]]
    train_ids: list[int]
    val_ids: list[int]
    refit: list[tuple[torch.Tensor, dict]] = field(default_factory=list)  # chips for the refit alone (see export)

    def everything(self) -> DetectionData:
        """Every chip as training data and none held out: the refit on every label."""
        return replace(self, train=self.train + self.val + self.refit, val=[], refit=[],
                       train_ids=[], val_ids=[])  # fmt: skip

    @property
    def task(self) -> str:
        return str(self.chipset.manifest.get("task", "detection"))

    @property
    def chip_size(self) -> int:
        return int(self.chipset.manifest["chips"]["tile_size"][0])

    def objects(self, split: str) -> np.ndarray:
        """Objects per class in the split's chips."""
        counts = np.zeros(len(self.classes), dtype=np.int64)
        for _, target in self.train if split == "train" else self.val:
            np.add.at(counts, target["labels"].numpy() - 1, 1)
        return counts


def _samples(images: np.ndarray, objects: list[ChipObjects], mean, std, nodata) -> list[tuple[torch.Tensor, dict]]:
    x = normalise(images, mean, std, nodata) if len(images) else np.zeros((0,), np.float32)
    return [
        (torch.from_numpy(np.ascontiguousarray(x[i])),
         {"boxes": torch.from_numpy(o.boxes), "labels": torch.from_numpy(o.classes + 1)})
        for i, o in enumerate(objects)
    ]  # fmt: skip


def _instance_samples(images: np.ndarray, targets: list, mean, std, nodata) -> list[tuple[torch.Tensor, dict]]:
    x = normalise(images, mean, std, nodata) if len(images) else np.zeros((0,), np.float32)
    return [
        (torch.from_numpy(np.ascontiguousarray(x[i])),
         {"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c + 1), "masks": torch.from_numpy(mk)})
        for i, (b, c, mk) in enumerate(targets)
    ]  # fmt: skip


def load_detection_data(chipset: ChipSet) -> DetectionData:
    """Every chip of the detection chip set, normalised with the manifest's band statistics."""
    m = chipset.manifest
    if m.get("task") not in ("detection", "instances"):
        raise ChipSetError(f"'{chipset.root}' is a {m.get('task')} chip set, not a detection one.",
                           "Export it with --task detection.")  # fmt: skip
    mean, std = band_statistics(m)
    nodata = None if m.get("nodata_is_nan") else m.get("nodata")
    train_ids, val_ids = chipset.indices("train"), chipset.indices("val")
    if not train_ids:
        raise ChipSetError(f"The chip set '{chipset.root}' has no training chips.",
                           "Export again with a smaller --val-fraction or more labelled objects.")  # fmt: skip
    parts = {}
    for split, ids in (("train", train_ids), ("val", val_ids), (REFIT_SPLIT, chipset.indices(REFIT_SPLIT))):
        if m["task"] == "instances":  # boxes and a mask per object
            images, targets = read_instance_chips(chipset, ids)
            parts[split] = _instance_samples(images, targets, mean, std, nodata)
        else:
            images, objects = read_detection_chips(chipset, ids)
            parts[split] = _samples(images, objects, mean, std, nodata)
    data = DetectionData(chipset, m["classes"], m["band_names"], mean, std, parts["train"], parts["val"], train_ids,
                         val_ids, parts[REFIT_SPLIT])  # fmt: skip
    if not data.objects("train").sum():
        raise ChipSetError(f"The training chips of '{chipset.root}' hold no object.",
                           "Check the labels and --min-visible, and export again.")  # fmt: skip
    return data


def detector_name(config: TrainConfig, task: str = "detection") -> str:
    """The model trained for ``config.model`` on a chip set of ``task`` ('auto' is the measured default)."""
    models, default = (INSTANCE_MODELS, DEFAULT_INSTANCE_MODEL) if task == "instances" else (DETECTORS,
                                                                                              DEFAULT_DETECTOR)  # fmt: skip
    name = default if config.model == "auto" else config.model
    if name not in models:
        kind = "an object detector" if name in DETECTORS else "a pixel-classification model"
        words = "instance segmentation" if task == "instances" else "object detection"
        raise ConfigError(f"'{config.model}' is {kind}; the chip set is for {words}.",
                          f"Choose --model auto or one of: {', '.join(models)}.")  # fmt: skip
    return name


class DetectionTrainer:
    """A detector, its optimiser and schedule, and the epoch history; the attributes ``save_checkpoint`` reads."""

    def __init__(self, config: TrainConfig, data: DetectionData, device: torch.device) -> None:
        self.config, self.data, self.device = config, data, device
        torch.manual_seed(config.seed)
        self.task = data.task
        self.name = detector_name(config, data.task)
        self.preset = default_preset(device) if config.detector_preset == "auto" else config.detector_preset
        self.anchor_sizes = list(config.anchor_sizes or default_anchor_sizes(data.chip_size))
        self.model = build_detector(self.name, len(data.band_names), len(data.classes), data.chip_size, self.preset,
                                    tuple(self.anchor_sizes), pretrained=config.weights != "none").to(device)  # fmt: skip
        if config.weights == "imagenet" and self.model.weights_used != "imagenet":
            raise ConfigError(self.model.weights_note or "No pretrained weights.", "Use --weights auto or none.")
        self.weights_used, self.weights_note = self.model.weights_used, self.model.weights_note
        self.batch_size = config.batch_for("detection")
        self.steps_per_epoch = max(1, math.ceil(len(data.train) / self.batch_size))
        self.learning_rate = config.learning_rate or 0.01
        self.optimizer, self.scheduler = make_optimizer(
            self.model, "sgd", self.learning_rate, total_steps=config.epochs * self.steps_per_epoch,
            warmup_steps=min(50, 2 * self.steps_per_epoch),
        )  # fmt: skip
        self.gen = torch.Generator().manual_seed(config.seed)
        aug = set(config.augment) & _AUGMENT
        self.augment = None if not aug else {
            "flips": "flip" in aug, "rotations": "rot90" in aug,
            "brightness": 0.1 if "jitter" in aug else 0.0, "contrast": 0.1 if "jitter" in aug else 0.0,
        }  # fmt: skip
        self.epochs = config.epochs  # planned; a time budget may lower it after the first epoch
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        self.history: list[dict] = []
        self.best_score, self.best_epoch, self.best_state = -math.inf, None, None

    def run_epoch(self, epoch: int) -> dict:
        t0 = time.perf_counter()
        batches = iterate_batches(self.data.train, self.batch_size, self.gen, self.augment)
        losses = train_one_epoch(self.model, batches, self.optimizer, self.scaler, scheduler=self.scheduler)
        val = self.validate()
        row = {"epoch": epoch, "train_loss": losses["loss"], **{f"train_{k}": v for k, v in losses.items()
                                                              if k != "loss"},
               "map50": val["map50"], "map": val["map"], "learning_rate": self.optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0}  # fmt: skip
        self.history.append(row)
        score = row["map50"] if not math.isnan(row["map50"]) else -row["train_loss"]
        if score > self.best_score or self.best_state is None:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return row

    def validate(self) -> dict:
        if not self.data.val:
            return {"map50": math.nan, "map": math.nan, "per_class": {}}
        images, targets = zip(*self.data.val, strict=True)
        if self.task == "instances":  # mask mAP: predicted masks against the true ones, as polygons
            return evaluate_mask_map(self.model, list(images), list(targets), [c["name"] for c in self.data.classes],
                                     batch_size=self.batch_size)  # fmt: skip
        return evaluate_map(self.model, list(images), list(targets), batch_size=self.batch_size)

    def plan_epochs(self, epochs: int) -> None:
        """Train ``epochs`` epochs in all: the cosine schedule ends with the last of them."""
        self.epochs = epochs
        self.scheduler.plan["total_steps"] = epochs * self.steps_per_epoch

    def stops_early(self, epoch: int) -> bool:
        patience = self.config.patience
        return bool(patience) and self.best_epoch is not None and epoch - self.best_epoch >= patience

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), **state["scheduler"]})
        self.history = state["history"]
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_state = state["best_model"]
        self.gen.manual_seed(self.config.seed + state["epoch"])  # a different, still reproducible, order

    def validation_samples(self, n: int = 6) -> dict[str, np.ndarray]:
        """The first ``n`` validation chips (the ones with most objects first), their true and predicted boxes."""
        val = sorted(range(len(self.data.val)), key=lambda i: -len(self.data.val[i][1]["labels"]))[:n]
        if not val:
            return {}
        images = [self.data.val[i][0] for i in val]
        preds = predict_batch(self.model, images, 0.3)
        out = {"image": np.stack([im.numpy() for im in images]).astype(np.float32)}
        for k, (i, p) in enumerate(zip(val, preds, strict=True)):
            t = self.data.val[i][1]
            out[f"true_boxes_{k}"] = t["boxes"].numpy().astype(np.float32).reshape(-1, 4)
            out[f"true_labels_{k}"] = t["labels"].numpy().astype(np.int64)
            out[f"pred_boxes_{k}"] = p["boxes"].reshape(-1, 4)
            out[f"pred_labels_{k}"] = p["labels"]
            out[f"pred_scores_{k}"] = p["scores"]
        return out


def _metrics(trainer: DetectionTrainer) -> dict:
    val = trainer.validate()
    counts = trainer.data.objects("val")
    per_class = [{"name": c["name"], "value": c["value"], "val_objects": int(counts[i]),
                  "ap50": val["per_class"].get(i + 1, {}).get("ap50") if counts[i] else None,
                  "ap": val["per_class"].get(i + 1, {}).get("ap") if counts[i] else None}
                 for i, c in enumerate(trainer.data.classes)]  # fmt: skip
    clean = lambda v: None if v is None or math.isnan(v) else float(v)  # noqa: E731
    return {"map50": clean(val["map50"]), "map": clean(val["map"]), "per_class": per_class,
            "val_chips": len(trainer.data.val), "val_objects": int(counts.sum()),
            "source": "validation chips of export's spatial blocks (no object in both splits)"}  # fmt: skip


def detection_card(config: TrainConfig, trainer: DetectionTrainer, metrics: dict, warnings: list[dict],
                   run_id: int) -> dict:  # fmt: skip
    """The card of a trained detector (its contract: ``models.detection.detector_for_card``)."""
    data = trainer.data
    m = data.chipset.manifest
    return {
        "task": data.task, "architecture": trainer.name, "backbone": None, "weights": trainer.weights_used,
        "preset": trainer.preset, "anchor_sizes": trainer.anchor_sizes,
        "bands": data.band_names, "band_count": len(data.band_names),
        "normalisation": {"mean": data.mean.tolist(), "std": data.std.tolist()},
        "nodata": m.get("nodata"), "nodata_is_nan": m.get("nodata_is_nan", False),
        "classes": [{k: c[k] for k in ("index", "value", "name", "colour")} for c in distinct_colours(data.classes)],
        "chip_size": list(m["chips"]["tile_size"]), "trained_chip_size": list(m["chips"]["tile_size"]),
        "pixel_size": m["grid"]["pixel_size"], "crs": m["grid"].get("crs_name"),
        "training_data": {"chip_set": str(Path(config.chips).resolve()), "fingerprint": data.chipset.fingerprint,
                          "train_chips": len(data.train), "val_chips": len(data.val), "split": m["split"]["method"],
                          "train_objects": data.objects("train").tolist(), "val_objects": data.objects("val").tolist()},
        "training": {k: v for k, v in config.model_dump(mode="json").items() if k not in ("chips", "out")},
        "metrics": metrics, "best_epoch": trainer.best_epoch, "epochs_run": len(trainer.history),
        "epochs_planned": trainer.epochs,
        "time_budget": config.time_budget if config.model == "auto" else None,
        "warnings": warnings, "run_id": run_id,
        "versions": {"terralearn": __version__, "torch": torch.__version__},
    }  # fmt: skip


def _warnings(trainer: DetectionTrainer, metrics: dict) -> list[dict]:
    out = []
    if not metrics["val_objects"]:
        out.append(
            {
                "code": "no_validation_objects",
                "message": "The validation chips hold no object: the mAP is unknown and the last epochs were "
                "kept by training loss.",
                "fix": "Export with a larger --val-fraction or --block-size so that some objects are held out.",
            }
        )
    for c in metrics["per_class"]:
        if c["val_objects"] and not c["ap50"]:
            out.append(
                {
                    "code": "class_not_detected",
                    "message": f"Class '{c['name']}' was not detected in the validation chips (AP50 0 over "
                    f"{c['val_objects']} objects).",
                    "fix": "Label more objects of this class, train longer (--epochs), or check its size "
                    "against the anchors (--anchor-sizes).",
                }
            )
    config = trainer.config
    if trainer.epochs < config.epochs:
        per_epoch = sum(h["seconds"] for h in trainer.history) / max(1, len(trainer.history))
        out.append({
            "code": "time_budget",
            "message": f"The time budget of {config.time_budget:.0f} s allowed {trainer.epochs} of the "
            f"{config.epochs} epochs ({per_epoch:.0f} s each on this machine); the learning-rate schedule was "
            "planned to end with them.",
            "fix": f"For more epochs give --time-budget {per_epoch * config.epochs:.0f}, or name the model "
            f"(--model {trainer.name}) to train every epoch, or train on a GPU.",
        })  # fmt: skip
    if trainer.weights_note:
        out.append({"code": "weights", "message": trainer.weights_note, "fix": ""})
    return out  # fmt: skip


def train_detection(config, chipset, registry, run_id: int, folder: Path, on_epoch, resuming: bool):
    """Train the detector of ``config`` on ``chipset``; returns the stage's ``TrainResult``."""
    from terralearn.train import TrainResult, _summary_and_report

    if config.chip_size and config.chip_size != int(chipset.manifest["chips"]["tile_size"][0]):
        raise ConfigError(f"chip_size = {config.chip_size}: detection chips are never resized (boxes would move).",
                          "Leave --chip-size unset, or export chips of that size.")  # fmt: skip
    data = load_detection_data(chipset)
    device = resolve_device(config.device)
    trainer = DetectionTrainer(config, data, device)
    start, previous = 1, 0.0
    if resuming:
        state = load_checkpoint(folder)
        if state is None:
            raise RunError(f"Run {run_id} has no checkpoint to resume from.", "Start a new training run.")
        trainer.restore(state)
        start, previous = state["epoch"] + 1, state.get("seconds", 0.0)
    refit = config.refit != "off" and bool(data.val)  # without held-out chips there is no epoch count to refit
    # a refit epoch costs this many held-out-run epochs (more chips, no validation): the budget holds both runs
    cost = (len(data.train) + len(data.val) + len(data.refit)) / len(data.train) if refit else 0.0
    budget = config.time_budget if config.model == "auto" else None
    decide = refit and budget is not None and config.refit == "auto"  # after the first epoch: see refit_fits
    if decide and trainer.history:
        refit = refit_fits(config, budget, cost, trainer.history[0]["seconds"])
    if budget and trainer.history:  # a resumed run goes on with the plan its epochs so far give
        run_budget = budget / (1.0 + cost) if refit else budget
        trainer.plan_epochs(max(len(trainer.history), epochs_in_budget(run_budget, previous / len(trainer.history),
                                                                       config.epochs)))  # fmt: skip
    registry.update_run(run_id, device=str(device), weights=trainer.weights_used, architecture=trainer.name)
    status, t0 = "finished", time.perf_counter()
    try:
        epoch = start
        while epoch <= trainer.epochs:
            row = trainer.run_epoch(epoch)
            seconds = previous + time.perf_counter() - t0
            if decide and len(trainer.history) == 1:
                refit = refit_fits(config, budget, cost, row["seconds"])
            if budget:  # planned again after every epoch, from the mean epoch so far: a busier machine trains fewer
                run_budget = budget / (1.0 + cost) if refit else budget  # a refit shares the budget
                trainer.plan_epochs(max(epoch, epochs_in_budget(run_budget, seconds / epoch, config.epochs)))
            save_checkpoint(folder, trainer, epoch, seconds, None)
            registry.update_run(run_id, epochs_run=epoch, best_epoch=trainer.best_epoch, training_seconds=seconds,
                                map50=_finite(row["map50"]), map=_finite(row["map"]),
                                headline=_finite(row["map50"]))  # fmt: skip
            if on_epoch:
                on_epoch({**row, "best_epoch": trainer.best_epoch, "epochs": trainer.epochs, "run_id": run_id})
            if trainer.stops_early(epoch):
                status = "stopped_early"
                break
            epoch += 1
    except KeyboardInterrupt:
        status = "interrupted"
    seconds = previous + time.perf_counter() - t0
    if trainer.best_state is None:
        registry.update_run(run_id, status="interrupted", training_seconds=seconds)
        return TrainResult(run_id, "interrupted", None, folder, seconds=seconds, weights_note=trainer.weights_note)
    trainer.model.load_state_dict(trainer.best_state)
    metrics = _metrics(trainer)  # the held-out figures: the only ones reported, refit or not
    samples = trainer.validation_samples()
    refitted = None
    if refit and status != "interrupted":
        left = budget - seconds if budget else None
        # the schedule the held-out run trained (its best epoch when early stopping cut it): see refit_detector
        epochs = len(trainer.history) if status == "finished" else int(trainer.best_epoch)
        refitted = refit_detector(config, data, device, trainer, epochs, left, cost, on_epoch, run_id)
    warnings = _warnings(trainer, metrics)
    card = detection_card(config, trainer, metrics, warnings, run_id)
    shipped = trainer.model
    if decide and not refit:
        card["refit_note"] = (f"Not refitted: beside a refit, the time budget of {budget:.0f} s would hold fewer "
                              f"than the {config.epochs} epochs. Give --refit on to refit within the budget anyway, "
                              "or a larger --time-budget.")  # fmt: skip
    if refitted is not None:
        shipped, card["refit"] = refitted
        metrics["source"] += "; the shipped model was then refitted on every chip (its own figures are never shown)"
        seconds += card["refit"]["seconds"]
    tensors = {k: v.detach().cpu().numpy() for k, v in shipped.state_dict().items()}
    package = save_package(config.out, tensors, card, overwrite=True)
    save_samples(folder, samples)
    final = "interrupted" if status == "interrupted" else "finished"
    registry.update_run(run_id, status=final, epochs_run=len(trainer.history), best_epoch=trainer.best_epoch,
                        training_seconds=seconds, model_size_mb=package_size_mb(package), map50=metrics["map50"],
                        map=metrics["map"], headline=metrics["map50"])  # fmt: skip
    result = TrainResult(run_id, final, package, folder, card, copy.deepcopy(trainer.history), metrics, None,
                         warnings, seconds, trainer.weights_note)  # fmt: skip
    result.report = _summary_and_report(registry, run_id, folder, card, trainer.history)
    return result


def refit_fits(config: TrainConfig, budget: float, cost: float, epoch_seconds: float) -> bool:
    """``--refit auto`` under a time budget: refit only when the held-out run keeps all its epochs beside it.

    Measured on DOTA P0706 ships (bench/dota.py, east half): in the default 600 s on 2 cores, 17 held-out epochs
    and no refit gave AP50 0.778; 9 held-out epochs and a 6-epoch refit in the same budget gave 0.615; without a
    budget, a 16-epoch refit on every chip gave 0.836. The refit helps when it does not cost epochs.
    """
    return epochs_in_budget(budget / (1.0 + cost), epoch_seconds, config.epochs) >= config.epochs


def refit_detector(config: TrainConfig, data: DetectionData, device: torch.device, held_out: DetectionTrainer,
                   epochs: int, seconds_left: float | None, cost: float, on_epoch, run_id: int):  # fmt: skip
    """Train a fresh detector on every chip for ``epochs`` epochs: ``(model, record)``.

    ``epochs`` is the held-out run's whole schedule, or its best epoch where early stopping ended it (no gain
    for ``--patience`` epochs). The refit trains on the validation blocks too, and on the chips at block
    borders that neither split could hold (``io.chips.REFIT_SPLIT``), with the same settings and a schedule
    that ends with its last epoch. With a time budget, the refit gets what the held-out run left (fewer
    epochs if it must). Ctrl-C during the refit ships the held-out model (returns None).

    Measured on DOTA P0706 (bench/dota.py, east half AP50): the single best epoch on 8 validation chips is
    noisy (epoch 8 of 16 scored 0.905, epoch 9 0.736); a refit for those 8 epochs gave 0.790, one for the
    whole 16-epoch schedule 0.836, where the held-out model of the default budget gives 0.778.
    """
    if seconds_left is not None:
        per_epoch = sum(h["seconds"] for h in held_out.history) / len(held_out.history) * cost
        epochs = min(epochs, epochs_in_budget(seconds_left, per_epoch, epochs))
    everything = data.everything()
    trainer = DetectionTrainer(config.model_copy(update={"epochs": epochs}), everything, device)
    notify = on_epoch or (lambda event: None)
    notify({"stage": "refit", "candidate": held_out.name, "epochs": epochs, "chips": len(everything.train)})
    t0 = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            row = trainer.run_epoch(epoch)
            notify({"stage": "refit_epoch", "epoch": epoch, "epochs": epochs, "train_loss": row["train_loss"],
                    "seconds": row["seconds"], "run_id": run_id})  # fmt: skip
    except KeyboardInterrupt:
        return None
    objects = everything.objects("train")
    return trainer.model, {
        "epochs": epochs, "chips": len(everything.train), "objects": int(objects.sum()),
        "seconds": round(time.perf_counter() - t0, 1),
        "note": f"The shipped weights were trained again on every chip ({len(everything.train)} chips, "
                f"{int(objects.sum())} objects) for {epochs} epochs, the held-out run's schedule"
                + ". The figures are the held-out run's, never the refit's on its own training chips.",
    }  # fmt: skip


def _finite(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)
