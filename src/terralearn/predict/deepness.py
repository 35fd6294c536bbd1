"""The QGIS Deepness convention for ONNX models over map tiles: the metadata it reads and its detector layouts.

**Metadata.** Deepness reads ONNX metadata properties whose values are JSON (``json.loads``): ``model_type``
(``"Segmentor"``, ``"Detector"``, ...), ``class_names`` (index -> name), ``resolution`` (cm per pixel), the tile
side (``tiles_size`` in its documentation, ``tile_size`` in its code: both are written), ``tiles_overlap``
(percent), ``det_conf``, ``det_iou_thresh``, ``det_type``, and ``standardization_mean`` / ``standardization_std``.

**Input scaling.** Deepness divides the pixel values by 255 *before* standardising: the model receives
``(x / 255 - mean) / std``. TerraLearn's models take ``(x - m) / s`` with its band statistics m, s in raw units,
so the metadata holds ``m / 255`` and ``s / 255``: ``(x / 255 - m / 255) / (s / 255) = (x - m) / s`` exactly,
for any data type. Reading a third-party model, TerraLearn inverts the same rule (raw mean ``255 * mean``, raw
std ``255 * std``; no standardisation at all means ``x / 255``).

**Detector layouts** (``det_type``), per tile, before any NMS:

- ``YOLO_v5_or_v7_default``: ``(1, N, 5 + K)``: box centre x, y, width, height (tile pixels), objectness, K class
  probabilities; the score is objectness times the best class probability (YOLOv5's own rule; TerraLearn's own
  exports have one-hot classes, so their score is the objectness, as Deepness reads it);
- ``YOLO_v6``: the same rows, the objectness ignored: the score is the best class probability;
- ``YOLO_Ultralytics``: ``(1, 4 + K, N)``: box centre and size, then K class scores, no objectness.
"""

from __future__ import annotations

import json

import numpy as np

from terralearn.errors import PackageError

#: Deepness' detector layouts: the number of values before the class scores, whether rows are columns,
#: whether an objectness value multiplies the class score.
DET_TYPES: dict[str, tuple[int, bool, bool]] = {
    "YOLO_v5_or_v7_default": (5, False, True),
    "YOLO_v6": (5, False, False),
    "YOLO_Ultralytics": (4, True, False),
}
DEFAULT_DET_TYPE = "YOLO_v5_or_v7_default"  # what Deepness assumes without a det_type


def metadata(card: dict, model_type: str, size: int, overlap_percent: int, extra: dict | None = None) -> dict:
    """The metadata properties of a TerraLearn model as Deepness reads them, plus the whole card.

    ``card["classes"]`` are listed by their index in the model's output; the band statistics are written in
    Deepness' units (see the module documentation).
    """
    values = {
        "model_type": model_type,
        "class_names": {str(k): c["name"] for k, c in enumerate(card["classes"])},
        "resolution": float(card["pixel_size"][0]) * 100.0,
        "tiles_size": int(size),
        "tile_size": int(size),
        "tiles_overlap": int(overlap_percent),
        "standardization_mean": [float(m) / 255.0 for m in card["normalisation"]["mean"]],
        "standardization_std": [float(s) / 255.0 for s in card["normalisation"]["std"]],
        **(extra or {}),
    }
    out = {key: json.dumps(value) for key, value in values.items()}
    out["terralearn_card"] = json.dumps(card)
    return out


def read_value(raw: str):
    """A metadata value as Deepness reads it: JSON, or the bare text that some exporters write."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        import ast

        try:
            return ast.literal_eval(raw)  # {0: 'ship'} written with Python's repr
        except (ValueError, SyntaxError):
            return raw


def raw_standardisation(meta: dict, bands: int) -> tuple[list[float], list[float]]:
    """(mean, std) in the raster's units of a Deepness model's metadata: what ``(x - mean) / std`` must use."""
    mean, std = meta.get("standardization_mean"), meta.get("standardization_std")
    if mean is None or std is None:
        mean, std = [0.0], [1.0]
    mean = np.broadcast_to(np.asarray(mean, np.float64).ravel(), (bands,))
    std = np.broadcast_to(np.asarray(std, np.float64).ravel(), (bands,))
    if not (std > 0).all():
        raise PackageError(f"The model's standardization_std {std.tolist()} holds a value that is not positive.",
                           "Fix the model's metadata: every band needs a positive std.")  # fmt: skip
    return (255.0 * mean).tolist(), (255.0 * std).tolist()


def class_count(det_type: str, output_shape: tuple) -> int | None:
    """The number of classes that a layout's output shape implies (None where the shape is dynamic)."""
    lead, columns, _ = DET_TYPES[det_type]
    side = output_shape[1] if columns else output_shape[-1]
    return side - lead if isinstance(side, int) and side > lead else None


def decode(output: np.ndarray, det_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes x0, y0, x1, y1 in tile pixels, scores, class indices from 0) of one tile's output (N, values)."""
    lead, columns, objectness = DET_TYPES[det_type]
    rows = np.asarray(output, np.float32)
    if rows.ndim == 3:  # the batch dimension of a one-tile output
        rows = rows[0]
    if columns:
        rows = rows.T
    if rows.shape[0] == 0 or rows.shape[1] <= lead:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    probs = rows[:, lead:]
    classes = probs.argmax(1)
    scores = probs[np.arange(len(rows)), classes]
    if objectness:
        scores = scores * rows[:, 4]
    return boxes, scores.astype(np.float32), classes.astype(np.int64)


__all__ = ["DEFAULT_DET_TYPE", "DET_TYPES", "class_count", "decode", "metadata", "raw_standardisation",
           "read_value"]  # fmt: skip
