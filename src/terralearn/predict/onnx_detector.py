"""Detecting with an ONNX object detector in the QGIS Deepness convention: YOLO models, or TerraLearn's exports.

``terralearn detect --model model.onnx`` runs such a file through the same streamed path as a package: tiles,
central zones, seam merging, the GeoPackage. What a package's card says is read here from the file itself
(:func:`onnx_detection_card`): a TerraLearn export carries its whole card (``terralearn_card``); for any other
model the card is built from Deepness' metadata (``predict.deepness``) and the graph's declared input:

- bands: the input's channel count (else the length of the standardisation, else 3);
- tile: the input's fixed height and width (else ``tile_size`` / ``tiles_size``, else 640): the graph never
  sees another size, so smaller tiles (a raster smaller than one tile) are padded with the band mean;
- classes: ``class_names``, else as many as the output implies, named ``class_1``...;
- normalisation: Deepness' rule ``(x / 255 - mean) / std`` turned into raw-unit statistics;
- pixel size: ``resolution`` (cm per pixel), for the warning on rasters of another pixel size;
- the confidence and the per-tile NMS overlap: ``det_conf`` and ``det_iou_thresh`` unless the command sets them.

:class:`OnnxDetector` has the torchvision detector interface that the tile detector calls (a list of
normalised ``(C, H, W)`` tensors in, a list of ``boxes``/``scores``/``labels`` dicts out, labels from 1): it
decodes the layout (``det_type``), drops scores under the threshold, and runs a per-class NMS per tile with
``torchvision.ops.batched_nms``, which YOLO's raw outputs need and which leaves already-suppressed output (a
TerraLearn export) unchanged. Nothing in the file but the graph is run; nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from terralearn.classes import assign_colours
from terralearn.errors import ConfigError, PackageError
from terralearn.io.onnx_model import OnnxHeader, read_onnx_header
from terralearn.predict import deepness

#: The tile side of a model that declares none (the size YOLO models are trained at).
DEFAULT_ONNX_TILE = 640


def onnx_detection_card(path: Path) -> dict:
    """The card of the ONNX detector at ``path`` (see the module documentation); a clear error for other models."""
    header = read_onnx_header(path)
    meta = {k: deepness.read_value(v) for k, v in header.metadata.items()}
    model_type = str(meta.get("model_type", "Detector")).capitalize()
    if model_type != "Detector":
        raise PackageError(
            f"'{path}' is a Deepness {model_type!r} model; `terralearn detect` runs detectors (model_type 'Detector').",
            "Give an object detector exported to ONNX, or a TerraLearn detection package.",
        )
    det_type = str(meta.get("det_type", deepness.DEFAULT_DET_TYPE))
    if det_type not in deepness.DET_TYPES:
        raise PackageError(f"'{path}' has det_type {det_type!r}, which TerraLearn does not read.",
                           f"Export the detector as one of: {', '.join(deepness.DET_TYPES)}.")  # fmt: skip
    if len(header.outputs) != 1 or len(header.outputs[0][1]) != 3:
        shapes = [s for _, s in header.outputs]
        raise PackageError(f"'{path}' has the outputs {shapes}; a Deepness detector has one (1, rows, values).",
                           "Export the detector with one output in a Deepness layout (det_type).")  # fmt: skip
    side = _tile_side(header, meta)
    onnx_info = {
        "det_type": det_type,
        "input": [side, side],
        "fixed_input": all(isinstance(d, int) for d in header.input_shape[2:]),
        "batch": header.input_shape[0] if isinstance(header.input_shape[0], int) else None,
        "det_conf": _number(meta.get("det_conf")),
        "det_iou_thresh": _number(meta.get("det_iou_thresh")),
        "tiles_overlap": _number(meta.get("tiles_overlap")),
    }
    if isinstance(meta.get("terralearn_card"), dict):  # TerraLearn's own export: its card says everything
        card = dict(meta["terralearn_card"])
        card["onnx"] = onnx_info
        return card
    bands = _bands(header, meta)
    names = _class_names(meta, det_type, header.outputs[0][1], path)
    mean, std = deepness.raw_standardisation(meta, bands)
    resolution = _number(meta.get("resolution"))
    colours = assign_colours(names)
    return {
        "task": "detection",
        "source": "onnx",
        "architecture": f"onnx {det_type}",
        "run_id": None,
        "band_count": bands,
        "bands": [f"onnx_b{i + 1}" for i in range(bands)],  # unnamed: only the count is checked
        "chip_size": [side, side],
        "classes": [{"index": k, "value": k + 1, "name": n, "colour": colours[k]} for k, n in enumerate(names)],
        "normalisation": {"mean": mean, "std": std},
        "pixel_size": [resolution / 100.0] * 2 if resolution else None,
        "anchor_sizes": None,
        "onnx": onnx_info,
    }


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _tile_side(header: OnnxHeader, meta: dict) -> int:
    h, w = header.input_shape[2:]
    if isinstance(h, int) and isinstance(w, int):
        return min(h, w)  # a non-square input runs square tiles of its shorter side, padded
    for key in ("tile_size", "tiles_size"):
        if _number(meta.get(key)):
            return int(_number(meta[key]))
    return DEFAULT_ONNX_TILE


def _bands(header: OnnxHeader, meta: dict) -> int:
    c = header.input_shape[1]
    if isinstance(c, int):
        return c
    mean = meta.get("standardization_mean")
    return len(mean) if isinstance(mean, list) and len(mean) > 1 else 3


def _class_names(meta: dict, det_type: str, output_shape: tuple, path: Path) -> list[str]:
    given = meta.get("class_names", meta.get("names"))
    n = deepness.class_count(det_type, output_shape)
    if isinstance(given, dict) and given:
        try:
            keyed = sorted((int(k), str(v)) for k, v in given.items())
        except ValueError:
            keyed = []
        if [k for k, _ in keyed] != list(range(len(keyed))):
            raise PackageError(f"'{path}' has class_names {given}: its keys must be 0, 1, 2, ... without gaps.",
                               "Fix the model's class_names metadata.")  # fmt: skip
        if n is not None and n != len(keyed):
            raise PackageError(f"'{path}' names {len(keyed)} classes, but its output holds {n} class scores "
                               f"(det_type {det_type}).", "Fix class_names, or the det_type of the model.")  # fmt: skip
        return [v for _, v in keyed]
    if n is None:
        raise PackageError(f"'{path}' has no class_names and a dynamic output shape: its classes are unknown.",
                           'Add class_names to the model\'s metadata, e.g. {"0": "ship"}.')  # fmt: skip
    return [f"class_{k + 1}" for k in range(n)]


class OnnxDetector:
    """An ONNX detector with the torchvision detector interface (see the module documentation)."""

    def __init__(self, path: Path, card: dict, threshold: float, iou: float, device=None) -> None:
        import onnxruntime as ort

        self.card, self.threshold, self.iou = card, float(threshold), float(iou)
        info = card["onnx"]
        self.det_type, self.side, self.batch = info["det_type"], int(info["input"][0]), info["batch"]
        self.fixed = bool(info.get("fixed_input", True))
        cuda = device is not None and getattr(device, "type", str(device)) == "cuda"
        providers = (
            ["CUDAExecutionProvider"] if cuda and "CUDAExecutionProvider" in ort.get_available_providers() else []
        )
        self.session = ort.InferenceSession(str(path), providers=[*providers, "CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def to(self, device) -> OnnxDetector:  # the session chose its provider when it was made
        return self

    def eval(self) -> OnnxDetector:
        return self

    def __call__(self, images) -> list[dict]:
        import torch
        from torchvision.ops import batched_nms

        arrays = [np.asarray(img.detach().cpu().numpy() if hasattr(img, "detach") else img, np.float32)
                  for img in images]  # fmt: skip
        out = []
        step = self.batch or len(arrays) or 1
        for k in range(0, len(arrays), step):
            part = arrays[k : k + step]
            sizes = [a.shape[-2:] for a in part]
            batch = np.stack([self._padded(a) for a in part])
            result = np.asarray(self.session.run(None, {self.input: batch})[0])
            for i, (h, w) in enumerate(sizes):
                boxes, scores, classes = deepness.decode(result[i : i + 1], self.det_type)
                keep = scores >= self.threshold
                boxes = np.clip(boxes[keep], 0, [w, h, w, h]).astype(np.float32)
                scores, classes = scores[keep], classes[keep]
                good = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                b, s, c = torch.from_numpy(boxes[good]), torch.from_numpy(scores[good]), torch.from_numpy(classes[good])
                picked = batched_nms(b, s, c, self.iou) if len(b) else torch.zeros(0, dtype=torch.int64)
                out.append({"boxes": b[picked], "scores": s[picked], "labels": c[picked] + 1})
        return out

    def _padded(self, tile: np.ndarray) -> np.ndarray:
        """The normalised tile padded to the graph's input with 0 (the band mean)."""
        c, h, w = tile.shape
        if h > self.side or w > self.side:
            raise ConfigError(f"A tile of {w} x {h} px is larger than the model's input of {self.side} px.",
                              f"Use --tile-size {self.side} or less.")  # fmt: skip
        if not self.fixed or (h == self.side and w == self.side):
            return tile
        out = np.zeros((c, self.side, self.side), np.float32)
        out[:, :h, :w] = tile
        return out


def read_detection_card(path: Path) -> dict:
    """The card of a detection model: a TerraLearn detection or instance package (refused when of another task)
    or an ONNX detector."""
    from terralearn.io.onnx_model import is_onnx_file

    if is_onnx_file(path):
        return onnx_detection_card(path)
    from terralearn.io.package import read_card
    from terralearn.tasks import require_task

    card = read_card(path)
    if card.get("task") == "instances":  # Mask R-CNN: `detect` writes one polygon per object
        return card
    require_task(card, "detection", path)
    return card


def onnx_tile(card: dict, asked: int | None) -> int:
    """The tile side for an ONNX detector: its input's side, or ``asked`` when the graph takes it."""
    info = card["onnx"]
    side = int(info["input"][0])
    if asked is None:
        return side
    if info.get("fixed_input", True) and asked > side:
        raise ConfigError(f"--tile-size {asked}: the ONNX model takes tiles of {side} px at most (its fixed input).",
                          f"Use --tile-size {side} (the default) or less.")  # fmt: skip
    return asked


def onnx_overlap(card: dict, tile: int) -> int:
    """The default overlap of a third-party ONNX detector: its ``tiles_overlap`` percent, else a quarter tile."""
    pct = card["onnx"].get("tiles_overlap")
    overlap = int(round(tile * pct / 100.0)) if pct is not None else tile // 4
    return max(0, min(tile // 2, overlap))


def load_onnx_detector(path: Path, card: dict, threshold: float, iou: float, device=None) -> OnnxDetector:
    """The runnable detector of the ONNX file ``path`` whose card ``onnx_detection_card`` returned."""
    return OnnxDetector(path, card, threshold, iou, device)


__all__ = ["DEFAULT_ONNX_TILE", "OnnxDetector", "load_onnx_detector", "onnx_detection_card", "onnx_overlap",
           "onnx_tile", "read_detection_card"]  # fmt: skip
