"""The torch device a stage runs on, from the config's ``device`` (auto, cpu, cuda)."""

from __future__ import annotations

import torch

from terralearn.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available.", "Use --device auto or cpu.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
