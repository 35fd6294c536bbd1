"""The classical baseline: a per-pixel random forest on the same chips and split as the deep models.

Every deep run is compared with it (in the run table and the report), so that users see
when deep learning is not worth it. Its package holds the trees as arrays in safetensors
(no pickle), predicted in numpy.
"""

from __future__ import annotations

import numpy as np

from terralearn.config import UNLABELLED
from terralearn.geo.metrics import confusion_matrix, metrics_from_confusion
from terralearn.models.forest import predict, train_forest
from terralearn.train.data import TrainingData


def labelled_pixels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_pixels, bands) features and (n_pixels,) classes of the labelled pixels of chips."""
    mask = y != UNLABELLED
    return np.moveaxis(x, 1, -1)[mask], y[mask]


def forest_baseline(data: TrainingData, trees: int = 100, seed: int = 0) -> dict:
    """Train on the training chips' labelled pixels; score on the validation chips' labelled pixels."""
    xt, yt = labelled_pixels(data.x_train, data.y_train)
    forest = train_forest(xt, yt, data.n_classes, n_trees=trees, seed=seed)
    xv, yv = labelled_pixels(data.x_val, data.y_val)
    cm = (
        confusion_matrix(yv, predict(forest, xv), data.n_classes)
        if len(yv)
        else np.zeros((data.n_classes, data.n_classes), dtype=np.int64)
    )
    return {"forest": forest, "metrics": metrics_from_confusion(cm, [c["name"] for c in data.classes])}
