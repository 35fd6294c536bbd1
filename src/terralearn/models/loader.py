"""Rebuilding a trained model from a package (weights + card); never executes code from the package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from terralearn.errors import PackageError
from terralearn.io.package import load_package
from terralearn.models.forest import ForestArrays, from_tensors
from terralearn.models.segmentation import build_model


@dataclass
class LoadedModel:
    card: dict
    network: torch.nn.Module | None = None
    forest: ForestArrays | None = None

    @property
    def n_classes(self) -> int:
        return len(self.card["classes"])


def load_model(path: Path) -> LoadedModel:
    card, tensors = load_package(path)
    if card["task"] != "pixel_classification":
        raise PackageError(f"'{path}' is a {card['task']} model.", "Use a pixel classification package.")
    if card["architecture"] == "random_forest":
        try:
            return LoadedModel(card, forest=from_tensors(tensors))
        except ValueError as exc:
            raise PackageError(f"The forest in '{path}' is inconsistent ({exc}).", "Train it again.") from None
    with torch.device("meta"):  # no random initialisation of weights that are overwritten at once
        model = build_model(card["architecture"], card["backbone"], card["band_count"], len(card["classes"]))
    state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = missing or [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing or unexpected:
        raise PackageError(
            f"The weights in '{path}' do not fit a {card['architecture']} / {card['backbone']} model "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors).",
            "The package was assembled by hand or damaged: train again.",
        )
    model.eval()
    return LoadedModel(card, network=model)
