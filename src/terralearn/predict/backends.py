"""Inference backends: class probabilities (B, K, H, W) of a batch of normalised tiles (B, C, H, W).

PyTorch (CPU, or CUDA in half precision), ONNX Runtime (CPU) and random forests (numpy); test-time
augmentation averages any of them over the flips and rotations of the tiles. torch is imported by the
torch backend only: ONNX Runtime and forests run without it (a command that starts in a second, not in six).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from terralearn.config import ClassifyConfig
from terralearn.geo.tta import dihedral_views
from terralearn.models.forest import ForestArrays, predict_proba
from terralearn.predict.loader import LoadedModel

if TYPE_CHECKING:
    import torch

#: Tiles (B, C, H, W) float32 -> class probabilities (B, K, H, W) float32, in a new array the caller may change.
Backend = Callable[[np.ndarray], np.ndarray]


def choose_backend(config: ClassifyConfig, card: dict, tile_hw: tuple[int, int]) -> str:
    """``forest``, ``torch`` or ``onnx``: the one ``config`` names, or for ``auto`` ONNX Runtime on a CPU when the
    package holds a current export for these tiles (training makes one), else PyTorch.

    The two give the same maps (the export is checked against PyTorch); a cached export spares the 6-9 s that
    importing torch and building the network take, which is most of a command's time on a county-sized raster.
    Whether a GPU is present is told without importing torch: by the NVIDIA driver's device files.
    """
    if card["architecture"] == "random_forest":
        return "forest"
    if config.backend != "auto":
        return config.backend
    gpu = config.device == "cuda" or (config.device == "auto" and _nvidia_driver())
    if gpu or importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    from terralearn.predict.onnx import is_cached

    return "onnx" if is_cached(config.model, card, tile_hw) else "torch"


def _nvidia_driver() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def make_backend(loaded: LoadedModel, config: ClassifyConfig, kind: str, tile_hw: tuple[int, int],
                 tmp: Path) -> Backend:  # fmt: skip
    """The backend ``kind`` (from ``choose_backend``); ``tmp`` holds a one-run export."""
    if kind == "forest":
        backend = ForestBackend(loaded.forest)
    elif kind == "onnx":
        backend = OnnxBackend(config.model, loaded.card, tile_hw, tmp / "model.onnx")
    else:
        backend = TorchBackend(loaded.network, config.device)
    return Augmented(backend, loaded.n_classes) if config.tta else backend


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of (B, K, H, W) logits, in place (float32). Not scipy.special.softmax: importing it
    adds 0.4 s to the start-up of a command that runs without torch, and it allocates a copy per batch."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


class TorchBackend:
    """PyTorch: on the CPU in channels-last layout (1.2-1.5x faster convolutions than the default layout
    there, measured on a U-Net / ResNet-18), on CUDA in half precision."""

    def __init__(self, network: torch.nn.Module, device: str) -> None:
        import torch

        from terralearn.models.device import resolve_device

        self.torch = torch
        self.device = resolve_device(device)
        self.half = self.device.type == "cuda"
        self.layout = torch.contiguous_format if self.half else torch.channels_last
        self.net = network.to(self.device, memory_format=self.layout).eval()
        if self.half:
            self.net = self.net.half()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = np.ascontiguousarray(x, dtype=np.float32)
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device).contiguous(memory_format=self.layout)
            logits = self.net(t.half() if self.half else t).float()
            # softmax in torch: one fused, multi-threaded pass; the result back in the default layout
            return torch.softmax(logits, dim=1).contiguous().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on the CPU, on the cached export for tiles padded to a multiple of 32."""

    parallel = 2  # batches run at once (one session; ONNX Runtime's run is thread-safe)

    def __init__(self, package: Path, card: dict, tile_hw: tuple[int, int], fallback: Path) -> None:
        import onnxruntime as ort

        from terralearn.predict.onnx import graph_size, onnx_model

        self.padded = graph_size(tile_hw)
        model = onnx_model(package, card, self.padded, fallback=fallback)
        options = ort.SessionOptions()
        # Two batches run at once (``parallel``), each on half of the cores (see ``window._predicted``).
        options.intra_op_num_threads = max(1, _cores() // self.parallel)
        # Idle ONNX Runtime threads sleep instead of spinning: the reader and writer threads get the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        h, w = x.shape[-2:]
        ph, pw = self.padded[0] - h, self.padded[1] - w
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "edge"
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
        logits = self.session.run(None, {"image": x})[0]
        return softmax(np.ascontiguousarray(logits[..., :h, :w]))


def _cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it, e.g. in a container)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ForestBackend:
    def __init__(self, forest: ForestArrays) -> None:
        self.forest = forest

    def __call__(self, x: np.ndarray) -> np.ndarray:
        b, c, h, w = x.shape
        pixels = np.moveaxis(x, 1, -1).reshape(-1, c)
        p = predict_proba(self.forest, pixels)
        return np.ascontiguousarray(np.moveaxis(p.reshape(b, h, w, -1), -1, 1), dtype=np.float32)


class Augmented:
    """Test-time augmentation: the mean of a backend's probabilities over the dihedral views of the tiles."""

    def __init__(self, backend: Backend, n_classes: int) -> None:
        self.backend, self.n_classes = backend, n_classes
        self.parallel = getattr(backend, "parallel", 1)  # batches at once, as the backend it averages

    def __call__(self, x: np.ndarray) -> np.ndarray:
        total = np.zeros((x.shape[0], self.n_classes, *x.shape[-2:]), dtype=np.float32)
        views = dihedral_views(square=x.shape[-1] == x.shape[-2])
        for forward, inverse in views:
            total += inverse(self.backend(np.ascontiguousarray(forward(x))))
        total /= len(views)
        return total
