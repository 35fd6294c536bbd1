"""Stage 2: a ChipSet -> a model package, recorded as a run in the workspace registry.

Every epoch ends with a checkpoint in the run folder (written atomically), so a run killed
even with SIGKILL resumes with `terralearn train --resume RUN`, losing at most the epoch in
progress. Ctrl-C stops cleanly and packages the best model so far. Accuracy is measured on
the chip set's validation split, which export made spatially independent.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from terralearn import __version__
from terralearn.config import UNLABELLED, TrainConfig
from terralearn.diagnostics import training_warnings
from terralearn.errors import ConfigError, RunError
from terralearn.io.atomic import ensure_can_write_dir, write_text_atomic
from terralearn.io.checkpoint import load_checkpoint, save_checkpoint, save_samples
from terralearn.io.package import save_package
from terralearn.metrics import confusion_matrix, metrics_from_confusion
from terralearn.models.augment import augment_batch, mixup
from terralearn.models.losses import build_loss, inverse_frequency_weights
from terralearn.models.segmentation import build_model, encoder_parameters
from terralearn.runs import Registry
from terralearn.train_data import TrainingData, load_training_data

EpochCallback = Callable[[dict], None]
HIGHER_IS_BETTER = {"val_loss": False, "accuracy": True, "dice": True, "mean_iou": True}


@dataclass
class TrainResult:
    run_id: int
    status: str
    package: Path | None
    run_dir: Path
    card: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    baseline: dict | None = None
    warnings: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    weights_note: str | None = None
    report: Path | None = None


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available.", "Use --device auto or cpu.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_model(config: TrainConfig, data: TrainingData) -> tuple[torch.nn.Module, str, str | None]:
    """The model, the weights actually used ('imagenet' or 'none'), and a note to show once."""
    args = (config.model, config.backbone, len(data.band_names), data.n_classes)
    if config.weights == "none" or config.model == "tiny":
        return build_model(*args), "none", None
    try:
        return build_model(*args, pretrained=True, band_names=data.band_names), "imagenet", None
    except ConfigError:
        raise
    except Exception as exc:
        if config.weights == "imagenet":
            raise ConfigError(
                f"Pretrained ImageNet weights for '{config.backbone}' are not available on this machine "
                f"({type(exc).__name__}).",
                "Use --weights auto or none to train from random initialisation, or put the weights in the Hugging "
                "Face cache (set HF_HUB_OFFLINE=0 on a machine with internet to download them).",
            ) from None
        note = f"No pretrained weights for '{config.backbone}' on this machine (offline): random initialisation."
        return build_model(*args), "none", note


def _batches(n: int, batch: int, order: torch.Tensor):
    for i in range(0, n, batch):
        yield order[i : i + batch]


class Trainer:
    """One training run: the loop, evaluation, checkpoints and the package."""

    def __init__(self, config: TrainConfig, data: TrainingData, device: torch.device) -> None:
        self.config = config
        self.data = data
        self.device = device
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        self.model, self.weights_used, self.weights_note = make_model(config, data)
        self.model.to(device)
        if config.freeze_backbone:
            for p in encoder_parameters(self.model):
                p.requires_grad_(False)
        weights = inverse_frequency_weights(data.class_pixels) if config.class_balancing else None
        self.class_weights = weights
        self.loss_fn = build_loss(config.loss, weights, config.focal_gamma).to(device)
        self.eval_loss = build_loss("ce").to(device)
        self.x_train = torch.from_numpy(data.x_train)
        self.y_train = torch.from_numpy(data.y_train)
        self.x_val = torch.from_numpy(data.x_val)
        self.y_val = torch.from_numpy(data.y_val)
        if config.chip_size:
            self.x_train, self.y_train = _resize(self.x_train, self.y_train, config.chip_size)
            self.x_val, self.y_val = _resize(self.x_val, self.y_val, config.chip_size)
        self.sample_weights = torch.from_numpy(data.chip_weights()) if config.oversample else None
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.steps_per_epoch = max(1, math.ceil(len(self.x_train) / config.batch_size))
        self.history: list[dict] = []
        self.best_score: float | None = None
        self.best_epoch = 0
        self.best_state: dict | None = None
        self.learning_rate = config.learning_rate
        self.optimizer = None
        self.scheduler = None

    # ------------------------------------------------------------------ setup
    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def setup_optimizer(self, lr: float) -> None:
        self.learning_rate = lr
        self.optimizer = torch.optim.AdamW(self.params(), lr=lr, weight_decay=1e-4)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=lr, total_steps=max(10, self.config.epochs * self.steps_per_epoch), pct_start=0.25
        )

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The chips of one epoch: a permutation, or a weighted draw (with replacement) when oversampling."""
        gen = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        n = len(self.x_train)
        if self.sample_weights is not None:
            return torch.multinomial(self.sample_weights, n, replacement=True, generator=gen)
        return torch.randperm(n, generator=gen)

    def find_learning_rate(self, steps: int = 40) -> float:
        """A short learning-rate range test (Smith 2017) on a copy of the model.

        The rate rises geometrically from 1e-5 to 1 over ``steps`` batches until the loss blows
        up; the choice is a fifth of the rate at the lowest (smoothed) loss, within 1e-4..1e-2.
        """
        model = copy.deepcopy(self.model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-6)
        lrs = np.geomspace(1e-5, 1.0, steps)
        gen = torch.Generator().manual_seed(self.config.seed + 7)
        losses = []
        model.train()
        for lr in lrs:
            for g in opt.param_groups:
                g["lr"] = float(lr)
            idx = torch.randint(0, len(self.x_train), (min(self.config.batch_size, len(self.x_train)),), generator=gen)
            x, y = self.x_train[idx].to(self.device), self.y_train[idx].to(self.device)
            loss = self.loss_fn(model(x), y)
            if not torch.isfinite(loss):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if len(losses) > 5 and losses[-1] > 4 * min(losses):
                break
        if len(losses) < 8:
            return 1e-3
        smooth = np.convolve(losses, np.ones(3) / 3, mode="valid")
        lowest = lrs[int(np.argmin(smooth)) + 1]
        return float(np.clip(lowest / 5, 1e-4, 1e-2))

    # ------------------------------------------------------------------ loop
    def train_epoch(self, epoch: int) -> float:
        cfg = self.config
        self.model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 7_919 + epoch)
        order = self.epoch_order(epoch)
        total, count = 0.0, 0
        for idx in _batches(len(order), cfg.batch_size, order):
            x, y = augment_batch(self.x_train[idx], self.y_train[idx], cfg.augment, gen)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, enabled=self.amp):
                if cfg.mixup > 0 and len(idx) > 1:
                    x, perm, lam = mixup(x, cfg.mixup, gen)
                    out = self.model(x)
                    loss = lam * self.loss_fn(out, y) + (1 - lam) * self.loss_fn(out, y[perm])
                else:
                    loss = self.loss_fn(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler.last_epoch < self.scheduler.total_steps - 1:
                self.scheduler.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        return total / max(count, 1)

    @torch.no_grad()
    def evaluate(self, x_all: torch.Tensor, y_all: torch.Tensor) -> tuple[float, np.ndarray]:
        self.model.eval()
        k = self.data.n_classes
        cm = np.zeros((k, k), dtype=np.int64)
        total, weight = 0.0, 0
        for i in range(0, len(x_all), 64):
            x = x_all[i : i + 64].to(self.device)
            y = y_all[i : i + 64].to(self.device)
            with torch.autocast(self.device.type, enabled=self.amp):
                out = self.model(x)
            labelled = int((y != UNLABELLED).sum())
            if labelled:
                total += float(self.eval_loss(out, y)) * labelled
                weight += labelled
            pred = out.argmax(dim=1)
            cm += confusion_matrix(y.cpu().numpy(), pred.cpu().numpy(), k)
        return (total / weight if weight else float("nan")), cm

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        self.model.eval()
        return self.model(x.to(self.device)).argmax(dim=1).cpu().numpy().astype(np.uint8)

    def score(self, row: dict) -> float:
        value = row[self.config.monitor]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return -math.inf
        return value if HIGHER_IS_BETTER[self.config.monitor] else -value


def _resize(x: torch.Tensor, y: torch.Tensor, size: int):
    if len(x) == 0:
        return x.new_zeros((0, x.shape[1], size, size)), y.new_zeros((0, size, size))
    xr = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    yr = torch.nn.functional.interpolate(y[:, None].float(), size=(size, size), mode="nearest")[:, 0].to(y.dtype)
    return xr, yr


def _state_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def model_card(config: TrainConfig, data: TrainingData, trainer_info: dict) -> dict:
    m = data.chipset.manifest
    tile = m["chips"]["tile_size"]
    return {
        "task": "pixel_classification",
        "architecture": config.model,
        "backbone": None if config.model in ("tiny", "random_forest") else config.backbone,
        "weights": trainer_info.get("weights", "none"),
        "bands": data.band_names,
        "band_count": len(data.band_names),
        "normalisation": {"mean": data.mean.tolist(), "std": data.std.tolist()},
        "nodata": m.get("nodata"),
        "nodata_is_nan": m.get("nodata_is_nan", False),
        "classes": [{k: c[k] for k in ("index", "value", "name", "colour")} for c in data.classes],
        "ignored_classes": data.ignored,
        "unlabelled_value": UNLABELLED,
        "chip_size": [config.chip_size, config.chip_size] if config.chip_size else tile,
        "trained_chip_size": tile,
        "pixel_size": m["grid"]["pixel_size"],
        "crs": m["grid"].get("crs_name"),
        "crs_units": m["grid"].get("units"),
        "training_data": {
            "chip_set": str(Path(config.chips).resolve()),
            "fingerprint": data.chipset.fingerprint,
            "train_chips": len(data.train_ids),
            "val_chips": len(data.val_ids),
            "split": m["split"]["method"],
            "class_pixels": data.class_pixels.tolist(),
        },
        "training": {k: v for k, v in config.model_dump(mode="json").items() if k not in ("chips", "out")},
        "metrics": trainer_info.get("metrics", {}),
        "baseline": trainer_info.get("baseline"),
        "best_epoch": trainer_info.get("best_epoch"),
        "epochs_run": trainer_info.get("epochs_run"),
        "versions": {"terralearn": __version__, "torch": torch.__version__},
    }


def headline(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in ("accuracy", "dice", "mean_iou", "kappa")}


def train(
    config: TrainConfig,
    workspace: Path | str | None = None,
    on_epoch: EpochCallback | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    resume_run: int | None = None,
) -> TrainResult:
    """Train, evaluate, package and record. Returns when finished, stopped early, or interrupted (Ctrl-C)."""
    registry = Registry(workspace)
    if resume_run is None:
        ensure_can_write_dir(config.out, config.overwrite)
    t0 = time.perf_counter()
    data = load_training_data(config.chips, config.ignore_classes)
    m = data.chipset.manifest
    run_fields = dict(
        name=config.name or f"{config.model}-{config.backbone}" if config.model not in ("tiny", "random_forest")
        else config.name or config.model,
        chip_set=str(Path(config.chips).resolve()), chip_set_fingerprint=data.chipset.fingerprint,
        bands=len(data.band_names), pixel_size=m["grid"]["pixel_size"][0],
        chip_size=config.chip_size or m["chips"]["tile_size"][0], architecture=config.model,
        backbone=None if config.model in ("tiny", "random_forest") else config.backbone, loss=config.loss,
        epochs_set=config.epochs if config.model != "random_forest" else None, config=config.model_dump(mode="json"),
        package=str(Path(config.out).resolve()),
    )  # fmt: skip
    if resume_run is None:
        run_id = registry.start_run(**run_fields)
    else:
        run_id = resume_run
        registry.update_run(run_id, status="running", pid=_pid())
    run_dir = registry.root / "runs" / f"run-{run_id:04d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", json.dumps(config.model_dump(mode="json"), indent=2))
    try:
        if config.model == "random_forest":
            result = _train_forest(config, data, registry, run_id, run_dir)
        else:
            result = _train_deep(config, data, registry, run_id, run_dir, on_epoch, on_batch, resume_run is not None)
    except KeyboardInterrupt:  # pragma: no cover - handled inside _train_deep; forest training is short
        registry.update_run(run_id, status="interrupted")
        raise
    except BaseException:
        registry.update_run(run_id, status="failed")
        raise
    result.seconds = time.perf_counter() - t0
    return result


def _pid() -> int:
    import os

    return os.getpid()


def _train_deep(config, data, registry, run_id, run_dir, on_epoch, on_batch, resuming) -> TrainResult:
    from terralearn.baseline import forest_baseline
    from terralearn.review import write_run_report

    device = resolve_device(config.device)
    trainer = Trainer(config, data, device)
    start_epoch = 1
    previous_seconds = 0.0
    baseline = None
    if resuming:
        state = load_checkpoint(run_dir)
        if state is None:
            raise RunError(f"Run {run_id} has no checkpoint to resume from.", "Start a new training run.")
        trainer.setup_optimizer(state["learning_rate"])
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.history = state["history"]
        trainer.best_score = state["best_score"]
        trainer.best_epoch = state["best_epoch"]
        trainer.best_state = state["best_model"]
        trainer.weights_used = state.get("weights", trainer.weights_used)
        baseline = state.get("baseline")
        previous_seconds = state.get("seconds", 0.0)
        start_epoch = state["epoch"] + 1
    else:
        if config.baseline and len(data.x_val):
            baseline = headline(forest_baseline(data, config.trees, config.seed)["metrics"])
        trainer.setup_optimizer(config.learning_rate or trainer.find_learning_rate())
    registry.update_run(run_id, device=str(device), weights=trainer.weights_used,
                        baseline_accuracy=(baseline or {}).get("accuracy"),
                        baseline_mean_iou=(baseline or {}).get("mean_iou"))  # fmt: skip
    status = "finished"
    t_start = time.perf_counter()
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            t_epoch = time.perf_counter()
            train_loss = trainer.train_epoch(epoch)
            val_loss, cm = trainer.evaluate(trainer.x_val, trainer.y_val)
            metrics = metrics_from_confusion(cm, [c["name"] for c in data.classes])
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, **headline(metrics),
                   "lr": trainer.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t_epoch}  # fmt: skip
            row["val_loss"] = None if math.isnan(val_loss) else val_loss
            trainer.history.append(row)
            score = trainer.score(row)
            if trainer.best_score is None or score > trainer.best_score:
                trainer.best_score, trainer.best_epoch = score, epoch
                trainer.best_state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
                trainer.best_metrics = metrics
            seconds = previous_seconds + time.perf_counter() - t_start
            save_checkpoint(run_dir, trainer, epoch, seconds, baseline)
            registry.update_run(run_id, epochs_run=epoch, best_epoch=trainer.best_epoch, training_seconds=seconds,
                                **{k: row[k] for k in ("accuracy", "dice", "mean_iou")})  # fmt: skip
            if on_epoch:
                on_epoch({**row, "best_epoch": trainer.best_epoch, "epochs": config.epochs, "run_id": run_id})
            if config.patience and epoch - trainer.best_epoch >= config.patience:
                status = "stopped_early"
                break
    except KeyboardInterrupt:
        status = "interrupted"
    seconds = previous_seconds + time.perf_counter() - t_start
    if trainer.best_state is None:
        registry.update_run(run_id, status="interrupted", training_seconds=seconds)
        return TrainResult(run_id, "interrupted", None, run_dir, seconds=seconds, weights_note=trainer.weights_note)
    trainer.model.load_state_dict(trainer.best_state)
    _, cm = trainer.evaluate(trainer.x_val, trainer.y_val)
    metrics = metrics_from_confusion(cm, [c["name"] for c in data.classes])
    warnings = training_warnings(trainer.history, metrics, data.classes, baseline, config.monitor)
    info = {"weights": trainer.weights_used, "metrics": metrics, "baseline": baseline,
            "best_epoch": trainer.best_epoch, "epochs_run": len(trainer.history)}  # fmt: skip
    card = model_card(config, data, info)
    card["warnings"] = warnings
    card["run_id"] = run_id
    package = save_package(config.out, _state_numpy(trainer.model), card, overwrite=True)
    samples = _validation_samples(trainer, data)
    save_samples(run_dir, samples)
    final = "interrupted" if status == "interrupted" else "finished"
    registry.update_run(
        run_id, status=final, epochs_run=len(trainer.history), best_epoch=trainer.best_epoch,
        training_seconds=seconds, model_size_mb=_size_mb(package), per_class_iou=[c["iou"] for c in metrics["per_class"]],
        **{k: metrics[k] for k in ("accuracy", "dice", "mean_iou")},
    )  # fmt: skip
    result = TrainResult(run_id, final, package, run_dir, card, trainer.history, metrics, baseline, warnings, seconds,
                         trainer.weights_note)  # fmt: skip
    write_summary(run_dir, summary_of(registry.run(run_id), card, trainer.history))
    result.report = write_run_report(run_id, workspace=registry.root)
    return result


def _size_mb(package: Path) -> float:
    return round((Path(package) / "model.safetensors").stat().st_size / 2**20, 3)


def _validation_samples(trainer: Trainer, data: TrainingData, n: int = 6) -> dict:
    """A few validation chips (the most labelled ones) with label and prediction, for the report."""
    if len(trainer.x_val) == 0:
        return {}
    labelled = (trainer.y_val != UNLABELLED).flatten(1).sum(1)
    pick = torch.argsort(labelled, descending=True)[:n]
    pred = trainer.predict(trainer.x_val[pick])
    x = trainer.x_val[pick].numpy()
    return {"image": x, "label": trainer.y_val[pick].numpy(), "prediction": pred,
            "chip_ids": np.array([data.val_ids[int(i)] for i in pick])}  # fmt: skip


def _train_forest(config, data, registry, run_id, run_dir) -> TrainResult:
    from terralearn.baseline import forest_baseline, forest_tensors
    from terralearn.review import write_run_report

    t0 = time.perf_counter()
    out = forest_baseline(data, config.trees, config.seed)
    metrics = out["metrics"]
    seconds = time.perf_counter() - t0
    warnings = training_warnings([], metrics, data.classes, None, "accuracy")
    info = {"weights": "none", "metrics": metrics, "epochs_run": 0}
    card = model_card(config, data, info)
    card["warnings"] = warnings
    card["run_id"] = run_id
    package = save_package(config.out, forest_tensors(out["forest"]), card, overwrite=True)
    registry.update_run(
        run_id, status="finished", epochs_run=0, training_seconds=seconds, model_size_mb=_size_mb(package),
        device="cpu", weights="none", per_class_iou=[c["iou"] for c in metrics["per_class"]],
        **{k: metrics[k] for k in ("accuracy", "dice", "mean_iou")},
    )  # fmt: skip
    write_summary(run_dir, summary_of(registry.run(run_id), card, []))
    report = write_run_report(run_id, workspace=registry.root)
    return TrainResult(run_id, "finished", package, run_dir, card, [], metrics, None, warnings, seconds, report=report)


def summary_of(run: dict, card: dict, history: list[dict]) -> dict:
    """Everything the report shows about a run, as plain JSON."""
    counts = card["training_data"]["class_pixels"]
    val_support = {c["index"]: c["support"] for c in card["metrics"].get("per_class", [])}
    return {
        "run_id": run["id"], "name": run["name"], "created": run["created"], "status": run["status"],
        "task": card["task"], "architecture": card["architecture"], "backbone": card["backbone"],
        "weights": card["weights"], "device": run["device"], "chip_set": card["training_data"]["chip_set"],
        "bands": card["bands"], "chip_size": card["chip_size"], "pixel_size": card["pixel_size"],
        "epochs_set": run["epochs_set"], "epochs_run": run["epochs_run"], "best_epoch": run["best_epoch"],
        "monitor": card["training"]["monitor"], "training_seconds": run["training_seconds"],
        "model_size_mb": run["model_size_mb"],
        "classes": [{**c, "train_pixels": int(counts[c["index"]]), "val_pixels": int(val_support.get(c["index"], 0))}
                    for c in card["classes"]],
        "history": history, "metrics": card["metrics"],
        "baseline": {"name": "random forest (per pixel)", **card["baseline"]} if card.get("baseline") else None,
        "warnings": card.get("warnings", []),
        "settings": {k: card["training"][k] for k in ("loss", "batch_size", "learning_rate", "augment",
                     "class_balancing", "oversample", "mixup", "freeze_backbone", "patience", "seed")
                     if k in card["training"]},
    }  # fmt: skip


def write_summary(run_dir: Path, summary: dict) -> None:
    write_text_atomic(Path(run_dir) / "summary.json", json.dumps(summary, indent=2, default=str))


def resume(run_id: int, workspace: Path | str | None = None, on_epoch=None) -> TrainResult:
    """Continue an interrupted (or killed) run from its last checkpoint."""
    registry = Registry(workspace)
    run = registry.run(run_id)
    if run["status"] in ("finished", "failed"):
        raise RunError(f"Run {run_id} is {run['status']}; only interrupted runs can be resumed.",
                       "Start a new run with `terralearn train`.")  # fmt: skip
    run_dir = registry.root / "runs" / f"run-{run_id:04d}"
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise RunError(f"Run {run_id} has no saved settings in {run_dir}.", "Start a new run.")
    config = TrainConfig.build(**json.loads(config_path.read_text()))
    return train(config, workspace, on_epoch=on_epoch, resume_run=run_id)
