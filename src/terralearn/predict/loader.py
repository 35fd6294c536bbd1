"""Rebuilding a trained model from a package (weights + card); never executes code from the package.

torch is imported only to build a network: a package run by ONNX Runtime (``network=False``) is read and
checked without it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from terralearn.errors import PackageError
from terralearn.io.package import load_package, read_card
from terralearn.models.forest import ForestArrays, from_tensors
from terralearn.tasks import require_task

if TYPE_CHECKING:
    import torch


@dataclass
class LoadedModel:
    card: dict
    network: torch.nn.Module | None = None
    forest: ForestArrays | None = None

    @property
    def n_classes(self) -> int:
        return len(self.card["classes"])


def load_model(path: Path, network: bool = True) -> LoadedModel:
    """The package's card (its weights' SHA-256 checked) with its forest, or its network when ``network``."""
    with ThreadPoolExecutor(1, thread_name_prefix="package-reader") as pool:
        reading = pool.submit(load_package, path)
        early = _early_skeleton(path) if network else None  # built while the weights are read and checked
        card, tensors = reading.result()
    require_task(card, "pixel_classification", path)
    if card["architecture"] == "random_forest":
        try:
            return LoadedModel(card, forest=from_tensors(tensors))
        except ValueError as exc:
            raise PackageError(f"The forest in '{path}' is inconsistent ({exc}).", "Train it again.") from None
    if not network:
        return LoadedModel(card)
    import torch

    model = early[1] if early is not None and early[0] == _shape(card) else _skeleton(_shape(card))
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


def _shape(card: dict) -> tuple:
    return card["architecture"], card["backbone"], card["band_count"], len(card["classes"])


def _skeleton(shape: tuple) -> torch.nn.Module:
    import torch

    from terralearn.models.segmentation import build_model

    with torch.device("meta"):  # no random initialisation of weights that are overwritten at once
        return build_model(*shape)


def _early_skeleton(path: Path) -> tuple[tuple, torch.nn.Module] | None:
    """The network built from the card alone, before the weights are verified; used only when the verified card
    asks for the same network. None on any problem: ``load_package`` and the build from the verified card report it.
    """
    try:
        card = read_card(path)
        if card.get("task") != "pixel_classification" or card.get("architecture") == "random_forest":
            return None
        return _shape(card), _skeleton(_shape(card))
    except Exception:
        return None
