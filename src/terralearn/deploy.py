"""ONNX export of a model package, with the model card in the ONNX metadata.

The metadata follows what ONNX-based GIS plugins read (QGIS Deepness: model_type,
class_names, resolution in cm/px, tiles_size, tiles_overlap, standardization_mean/std) and
carries the whole TerraLearn card under ``terralearn_card``. The exported graph is checked
against the PyTorch output with ONNX Runtime before the file is kept.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from terralearn.errors import PackageError
from terralearn.io.atomic import atomic_file
from terralearn.models.loader import load_model
from terralearn.models.segmentation import MULTIPLE, PadToMultiple


def export_onnx(
    package: Path, out: Path | None = None, tolerance: float = 1e-3, size: tuple[int, int] | None = None
) -> tuple[Path, float]:
    """Write ``package``/model.onnx (or ``out``); return its path and the largest |onnx - torch| difference.

    The graph takes tiles of ``size`` (height, width; default the training chip padded to a multiple of 32)
    and any batch size.
    """
    import onnx
    import onnxruntime as ort

    package = Path(package)
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
        side = math.ceil(side / MULTIPLE) * MULTIPLE if card["architecture"] != "tiny" else side
        size = (side, side)
    example = torch.randn(2, card["band_count"], *size, generator=torch.Generator().manual_seed(0))
    out = Path(out) if out else (package / "model.onnx" if package.is_dir() else package.with_suffix(".onnx"))
    with torch.no_grad():
        expected = net(example).numpy()
    with atomic_file(out) as tmp, warnings.catch_warnings():
        # The TorchScript exporter: the newer torch.export-based one needs onnxscript, which is not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)  # fmt: skip
        model = onnx.load(str(tmp))
        meta = {
            "model_type": "Segmentor",
            "class_names": json.dumps({str(c["index"]): c["name"] for c in card["classes"]}),
            "resolution": str(float(card["pixel_size"][0]) * 100.0),
            "tiles_size": str(size[0]),
            "tiles_overlap": "15",
            "standardization_mean": json.dumps(card["normalisation"]["mean"]),
            "standardization_std": json.dumps(card["normalisation"]["std"]),
            "terralearn_card": json.dumps(card),
        }
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
    return out, diff
