"""ONNX export of a detection package in the QGIS Deepness object-detector convention.

Deepness (the QGIS plugin that runs ONNX models over map layers) reads a detector as one graph from a tile of
``(1, bands, size, size)`` to one output ``(1, N, 5 + K)``: per detection the box centre x, y, its width and
height in tile pixels, a confidence, and K class scores (the YOLO v5/v7 layout, ``det_type`` in the metadata).
The exported graph is the whole torchvision detector (proposals, RoIAlign, per-class NMS inside), followed by
that layout: the confidence is the detector's score and the class scores are one-hot, so Deepness' own
threshold (``det_conf``) and NMS (``det_iou_thresh``) act on TerraLearn's final boxes. The metadata also holds
the class names, the pixel size in cm, the tile size and overlap, the per-band standardisation (in Deepness'
units: ``predict.deepness``) and the whole model card (``terralearn_card``). The graph is checked against PyTorch with ONNX Runtime on two random tiles
before the file is kept, and written atomically.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from terralearn.config import OnnxConfig
from terralearn.errors import PackageError
from terralearn.io.atomic import atomic_file
from terralearn.predict import deepness

OPSET = 17
#: The Deepness detector layout this export writes.
DEEPNESS_DET_TYPE = "YOLO_v5_or_v7_default"


def export_detector_onnx(config: OnnxConfig):
    """Write the detection package of ``config`` as a Deepness detector (see the module documentation)."""
    import onnx
    import onnxruntime as ort

    from terralearn.models.detection import scale_to_tile
    from terralearn.predict.detector_loader import load_detector
    from terralearn.predict.onnx import OnnxResult

    package = Path(config.package)
    loaded = load_detector(package)
    card = loaded.card
    chip = int(card["chip_size"][0])
    if config.size is not None and config.size[0] != config.size[1]:
        raise PackageError(f"size = {tuple(config.size)}: a detector is exported for square tiles.",
                           "Give one side twice, e.g. --size 256 256.")  # fmt: skip
    size = int(config.size[0]) if config.size is not None else chip
    net = loaded.network.eval()
    scale_to_tile(net, chip, size)
    graph = DeepnessLayout(net, len(card["classes"])).eval()
    gen = torch.Generator().manual_seed(0)
    examples = [torch.randn(1, card["band_count"], size, size, generator=gen) * 2 for _ in range(2)]
    with torch.no_grad():
        expected = [graph(x).numpy() for x in examples]
    out = Path(config.out or (package / "model.onnx" if package.is_dir() else package.with_suffix(".onnx")))
    with atomic_file(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracing notes
        torch.onnx.export(graph, (examples[0],), str(tmp), input_names=["image"], output_names=["output0"],
                          dynamic_axes={"output0": {1: "detections"}}, opset_version=OPSET, dynamo=False)  # fmt: skip
        model = onnx.load(str(tmp))
        for key, value in deepness.metadata(card, "Detector", size, overlap_percent=25, extra={
                "det_type": DEEPNESS_DET_TYPE, "det_conf": 0.3, "det_iou_thresh": 0.5}).items():  # fmt: skip
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.save(model, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diff = 0.0
        for x, want in zip(examples, expected, strict=True):
            got = session.run(None, {"image": x.numpy()})[0]
            if got.shape != want.shape:
                raise PackageError(f"The ONNX detector found {got.shape[1]} boxes where PyTorch found "
                                   f"{want.shape[1]} on the same tile.",
                                   "Report this with the package; detect with `terralearn detect` meanwhile.")  # fmt: skip
            diff = max(diff, float(np.abs(got - want).max()) if got.size else 0.0)
        # box coordinates are in pixels: the tolerance scales with the tile
        if not diff <= config.tolerance * size:
            raise PackageError(
                f"The ONNX detector differs from PyTorch by {diff:.2e} px (tolerance {config.tolerance * size:.1e}).",
                "Report this with the package; detect with `terralearn detect` meanwhile.",
            )
    return OnnxResult(out, diff)


class DeepnessLayout(torch.nn.Module):
    """A torchvision detector on one tile -> (1, N, 5 + K): centre x, y, width, height, score, one-hot class."""

    def __init__(self, detector: torch.nn.Module, n_classes: int) -> None:
        super().__init__()
        self.detector, self.n_classes = detector, n_classes

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        found = self.detector([image[0]])[0]
        b, scores, labels = found["boxes"], found["scores"], found["labels"]
        xywh = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1],
                            scores], 1)  # fmt: skip
        onehot = (labels.unsqueeze(1) - 1 == torch.arange(self.n_classes).unsqueeze(0)).to(b.dtype)
        return torch.cat([xywh, onehot], 1).unsqueeze(0)


__all__ = ["DEEPNESS_DET_TYPE", "DeepnessLayout", "export_detector_onnx"]
