"""Rebuilding a trained detector from a package (weights + card); never executes code from the package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from terralearn.errors import PackageError
from terralearn.io.package import load_package
from terralearn.tasks import require_task


@dataclass
class LoadedDetector:
    card: dict
    network: torch.nn.Module

    @property
    def n_classes(self) -> int:
        return len(self.card["classes"])


def load_detector(path: Path, task: str = "detection") -> LoadedDetector:
    """The ``task`` package at ``path`` (its weights' SHA-256 checked), in eval mode on the CPU.

    ``task`` is ``detection`` (boxes) or ``instances`` (Mask R-CNN: boxes and masks)."""
    from terralearn.models.detection import detector_for_card

    card, tensors = load_package(path)
    require_task(card, task, path)
    model = detector_for_card(card)
    state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PackageError(
            f"The weights in '{path}' do not fit a {card['architecture']} detector for {card['band_count']} bands "
            f"and {len(card['classes'])} classes ({len(missing)} missing, {len(unexpected)} unexpected tensors).",
            "The package was assembled by hand or damaged: train again.",
        )
    model.eval()
    return LoadedDetector(card, model)
