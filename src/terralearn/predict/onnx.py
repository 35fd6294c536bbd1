"""ONNX export of a model package, with the model card in the ONNX metadata.

The metadata follows what ONNX-based GIS plugins read (QGIS Deepness, ``predict.deepness``: JSON values,
the band statistics in Deepness' units, which divides pixels by 255 before standardising) and carries the
whole TerraLearn card under ``terralearn_card``. The exported graph is checked
against the PyTorch output with ONNX Runtime before the file is kept.

``classify`` runs exports kept in a cache (``onnx_model``, files in ``io.onnx_cache``): keyed by the weights'
SHA-256, the card, the tile size and the exporter's versions. Only an export imports torch; running a cached one
needs ONNX Runtime alone. Training caches the export for the default tile (``cache_default_export``), so that
classify's default backend on a CPU (``auto``) runs it without loading PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from terralearn import __version__
from terralearn.config import OnnxConfig
from terralearn.errors import PackageError
from terralearn.io.atomic import atomic_file
from terralearn.io.onnx_cache import cached_onnx, has_cached_onnx
from terralearn.io.package import read_card
from terralearn.models.catalog import MULTIPLE, NO_ENCODER
from terralearn.predict import deepness
from terralearn.predict.loader import load_model

OPSET = 17


@dataclass
class OnnxResult:
    path: Path
    difference: float  # the largest |onnx - torch| on a random batch


def export_onnx(config: OnnxConfig) -> OnnxResult:
    """Write ``package``/model.onnx (or ``config.out``) in the layout of the package's task (``tasks``)."""
    from terralearn.tasks import DEFAULT_TASK, get_task

    return get_task(read_card(Path(config.package)).get("task", DEFAULT_TASK)).stage("onnx")(config)


def export_segmentation_onnx(config: OnnxConfig) -> OnnxResult:
    """A pixel-classification package as a Deepness segmentor, checked against PyTorch within ``config.tolerance``.

    The graph takes tiles of ``config.size`` (height, width; default the training chip padded to a
    multiple of 32) and any batch size.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from terralearn.models.segmentation import PadToMultiple

    package, size, tolerance = Path(config.package), config.size, config.tolerance
    loaded = load_model(package)
    if loaded.network is None:
        raise PackageError(
            f"'{package}' holds a random forest, which runs in numpy; ONNX export is for neural networks.",
            "Export a deep model's package (unet, deeplabv3, ...).",
        )
    card = loaded.card
    net = loaded.network.model if isinstance(loaded.network, PadToMultiple) else loaded.network
    if size is None:
        side = max(int(v) for v in card["chip_size"])
        side = math.ceil(side / MULTIPLE) * MULTIPLE if card["architecture"] not in NO_ENCODER else side
        size = (side, side)
    example = torch.randn(2, card["band_count"], *size, generator=torch.Generator().manual_seed(0))
    out = Path(config.out or (package / "model.onnx" if package.is_dir() else package.with_suffix(".onnx")))
    with torch.no_grad():
        expected = net(example).numpy()
    with atomic_file(out) as tmp, warnings.catch_warnings():
        # The TorchScript exporter: the newer torch.export-based one needs onnxscript, which is not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)  # fmt: skip
        model = onnx.load(str(tmp))
        meta = deepness.metadata(card, "Segmentor", size[0], overlap_percent=15)
        for key, value in meta.items():
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.save(model, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": example.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        if not diff <= tolerance:
            raise PackageError(
                f"The ONNX model differs from the PyTorch model by {diff:.2e} (tolerance {tolerance:.0e}).",
                "Report this with the package; use the PyTorch backend meanwhile.",
            )
    return OnnxResult(out, diff)


def cache_record(card: dict, size: tuple[int, int]) -> dict:
    """What an export depends on: the weights, the card (in the metadata), the tile size and the exporter."""
    card_json = json.dumps(card, sort_keys=True)
    return {
        "weights_sha256": card["weights_sha256"],
        "card_sha256": hashlib.sha256(card_json.encode()).hexdigest(),
        "size": [int(v) for v in size],
        "opset": OPSET,
        "terralearn": __version__,
        "torch": version("torch"),  # read without importing torch: a cached export runs without it
    }


def onnx_model(package: Path, card: dict, size: tuple[int, int], fallback: Path) -> bytes:
    """The package's network exported to ONNX for tiles of ``size``, as bytes to give ONNX Runtime.

    ``card`` is the package's card as ``load_model`` returned it (its weights' SHA-256 checked). A cached
    export is used when it matches the package, the size and this exporter; anything else is exported
    again (checked against PyTorch). Where the cache cannot be written, the export goes to ``fallback``.
    """

    def export(path: Path) -> Path:
        return export_onnx(OnnxConfig(package=package, out=path, size=size)).path

    return cached_onnx(package, cache_record(card, size), export, fallback)


def graph_size(tile_hw: tuple[int, int]) -> tuple[int, int]:
    """The tile size of the graph that runs tiles of ``tile_hw``: padded to a multiple of 32."""
    return tuple(math.ceil(v / MULTIPLE) * MULTIPLE for v in tile_hw)


def is_cached(package: Path, card: dict, tile_hw: tuple[int, int]) -> bool:
    """Whether ``package`` holds a current export for tiles of ``tile_hw`` (no torch needed to tell)."""
    return has_cached_onnx(package, cache_record(card, graph_size(tile_hw)))


def cache_default_export(package: Path, card: dict, tile: int) -> None:
    """Export the network for ``tile``-px tiles into the package's cache (about 2 s for a U-Net / ResNet-18)."""
    size = graph_size((tile, tile))
    # The TorchScript exporter's notes on constant folding say nothing to users.
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix=".terralearn-") as tmp:
        warnings.simplefilter("ignore", UserWarning)
        onnx_model(package, card, size, fallback=Path(tmp) / "model.onnx")  # not kept where it cannot be cached
