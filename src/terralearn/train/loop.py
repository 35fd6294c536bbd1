"""The training loop of deep pixel classifiers: model set-up, epochs, evaluation, learning-rate test.

Kept apart from the stage (:mod:`terralearn.train`), which handles data, runs, checkpoints and packages. Early
stopping and the choice of the best epoch are here (:meth:`Trainer.run_epoch`, :meth:`Trainer.stops_early`).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from terralearn.config import UNLABELLED, TrainConfig
from terralearn.errors import ConfigError
from terralearn.geo.metrics import confusion_matrix, headline, metrics_from_confusion
from terralearn.models.augment import augment_batch, mixup
from terralearn.models.catalog import NO_ENCODER
from terralearn.models.losses import build_loss, inverse_frequency_weights
from terralearn.models.segmentation import build_model, encoder_parameters
from terralearn.train.data import TrainingData

HIGHER_IS_BETTER = {"val_loss": False, "accuracy": True, "dice": True, "mean_iou": True}


def make_model(config: TrainConfig, data: TrainingData) -> tuple[torch.nn.Module, str, str | None]:
    """The model, the weights actually used ('imagenet' or 'none'), and a note to show once."""
    args = (config.model, config.backbone, len(data.band_names), data.n_classes)
    if config.weights == "none" or config.model in NO_ENCODER:
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


def _batch_starts(n: int, batch: int) -> list[int]:
    """Start of each batch; a lone last chip joins the batch before it (batch norm cannot train on one chip)."""
    starts = list(range(0, n, batch))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return starts


def _batches(n: int, batch: int, order: torch.Tensor):
    starts = _batch_starts(n, batch)
    for start, end in zip(starts, [*starts[1:], n], strict=True):
        yield order[start:end]


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
        self.batch_size = config.batch_for("pixel_classification")
        self.steps_per_epoch = max(1, len(_batch_starts(len(self.x_train), self.batch_size)))
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
            idx = torch.randint(0, len(self.x_train), (min(self.batch_size, len(self.x_train)),), generator=gen)
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
        for idx in _batches(len(order), self.batch_size, order):
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

    def run_epoch(self, epoch: int) -> dict:
        """Train one epoch and score it on the validation chips, keeping the best weights; its history row."""
        t_epoch = time.perf_counter()
        train_loss = self.train_epoch(epoch)
        val_loss, cm = self.evaluate(self.x_val, self.y_val)
        metrics = metrics_from_confusion(cm, [c["name"] for c in self.data.classes])
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, **headline(metrics),
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t_epoch}  # fmt: skip
        row["val_loss"] = None if math.isnan(val_loss) else val_loss
        self.history.append(row)
        score = self.score(row)
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return row

    def stops_early(self, epoch: int) -> bool:
        """True when the monitored score has not improved for ``patience`` epochs (never with patience 0)."""
        return bool(self.config.patience) and epoch - self.best_epoch >= self.config.patience

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint (:func:`terralearn.io.checkpoint.load_checkpoint`)."""
        self.setup_optimizer(state["learning_rate"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.best_state = state["best_model"]
        self.weights_used = state.get("weights", self.weights_used)

    def validation_samples(self, n: int = 6) -> dict:
        """A few validation chips (the most labelled ones) with label and prediction, for the report."""
        if len(self.x_val) == 0:
            return {}
        labelled = (self.y_val != UNLABELLED).flatten(1).sum(1)
        pick = torch.argsort(labelled, descending=True)[:n]
        pred = self.predict(self.x_val[pick])
        x = self.x_val[pick].numpy()
        return {"image": x, "label": self.y_val[pick].numpy(), "prediction": pred,
                "chip_ids": np.array([self.data.val_ids[int(i)] for i in pick])}  # fmt: skip


def _resize(x: torch.Tensor, y: torch.Tensor, size: int):
    if len(x) == 0:
        return x.new_zeros((0, x.shape[1], size, size)), y.new_zeros((0, size, size))
    xr = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    yr = torch.nn.functional.interpolate(y[:, None].float(), size=(size, size), mode="nearest")[:, 0].to(y.dtype)
    return xr, yr


def state_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
