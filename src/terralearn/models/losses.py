"""Losses for sparse, imbalanced label chips. Unlabelled pixels (255) never count."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from terralearn.config import UNLABELLED


def inverse_frequency_weights(pixel_counts: np.ndarray, max_weight: float = 50.0) -> np.ndarray:
    """Class weights proportional to 1 / frequency, normalised to a pixel-weighted mean of 1, capped.

    Classes without training pixels get weight 0 (they cannot be learned anyway).
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    w = np.minimum(w, max_weight)
    return w.astype(np.float32)


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017) with optional class weights, ignoring unlabelled pixels."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        valid = target != UNLABELLED
        if not valid.any():
            return logits.sum() * 0.0
        t = torch.where(valid, target, torch.zeros_like(target)).long()
        logp_t = logp.gather(1, t.unsqueeze(1)).squeeze(1)
        pt = logp_t.exp()
        loss = -((1 - pt) ** self.gamma) * logp_t
        if self.weight is not None:
            w = self.weight[t]
            return (loss * w)[valid].sum() / w[valid].sum().clamp_min(1e-12)
        return loss[valid].mean()


class CrossEntropy(nn.Module):
    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != UNLABELLED).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target.long(), weight=self.weight, ignore_index=UNLABELLED)


class DiceLoss(nn.Module):
    """Soft multi-class Dice over the labelled pixels of the batch, averaged over classes present."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target != UNLABELLED).unsqueeze(1)
        if not valid.any():
            return logits.sum() * 0.0
        k = logits.shape[1]
        prob = F.softmax(logits.float(), dim=1) * valid
        t = torch.where(valid.squeeze(1), target, torch.zeros_like(target)).long()
        onehot = F.one_hot(t, k).permute(0, 3, 1, 2).float() * valid
        inter = (prob * onehot).sum(dim=(0, 2, 3))
        card = prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
        present = onehot.sum(dim=(0, 2, 3)) > 0
        dice = (2 * inter + 1.0) / (card + 1.0)
        return 1 - dice[present].mean()


class Sum(nn.Module):
    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits, target):
        return sum(loss(logits, target) for loss in self.losses)


def build_loss(name: str, weight: np.ndarray | None = None, gamma: float = 2.0) -> nn.Module:
    w = torch.as_tensor(weight, dtype=torch.float32) if weight is not None else None
    return {
        "ce": lambda: CrossEntropy(w),
        "focal": lambda: FocalLoss(gamma, w),
        "dice": DiceLoss,
        "focal_dice": lambda: Sum(FocalLoss(gamma, w), DiceLoss()),
    }[name]()
