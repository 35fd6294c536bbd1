"""Accuracy metrics from a confusion matrix (pure numpy).

Rows of a confusion matrix are the reference (true) class, columns the predicted class,
entries pixel counts. Unlabelled pixels never enter it.
"""

from __future__ import annotations

import numpy as np

from terralearn.geo.numbers import finite


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray, n_classes: int, ignore: int = 255) -> np.ndarray:
    """K x K pixel counts of (reference, predicted) pairs, skipping reference pixels equal to ``ignore``."""
    ref = np.asarray(reference).ravel().astype(np.int64)
    pred = np.asarray(predicted).ravel().astype(np.int64)
    keep = (ref != ignore) & (ref < n_classes) & (pred < n_classes)
    idx = ref[keep] * n_classes + pred[keep]
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


#: The scores a run, a candidate or a baseline is summed up by.
HEADLINE = ("accuracy", "dice", "mean_iou", "kappa")


def headline(metrics: dict) -> dict:
    """The headline scores of a metrics dict (missing ones as None)."""
    return {k: metrics.get(k) for k in HEADLINE}


def metrics_from_confusion(cm: np.ndarray, names: list[str] | None = None) -> dict:
    """Overall accuracy, Cohen's kappa, per-class precision/recall/F1/IoU, and their means.

    Means (Dice = mean F1, mean IoU) are taken over classes present in the reference, so a
    class with no reference pixel neither helps nor hurts. A class that is present but never
    predicted scores 0, which is what exposes a model that only predicts the majority class.
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    total = cm.sum()
    tp = np.diag(cm)
    ref = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    precision = _safe_div(tp, pred)
    recall = _safe_div(tp, ref)
    f1 = _safe_div(2 * tp, ref + pred)
    iou = _safe_div(tp, ref + pred - tp)
    present = ref > 0
    precision = np.where(present & (pred == 0), 0.0, precision)
    accuracy = float(tp.sum() / total) if total else float("nan")
    expected = float((ref * pred).sum() / total**2) if total else float("nan")
    kappa = (accuracy - expected) / (1 - expected) if total and expected < 1 else float("nan")
    names = names or [str(i) for i in range(k)]
    per_class = [
        {
            "index": i,
            "name": names[i],
            "precision": finite(precision[i]),
            "recall": finite(recall[i]),
            "f1": finite(f1[i]),
            "iou": finite(iou[i]),
            "support": int(ref[i]),
            "predicted": int(pred[i]),
        }
        for i in range(k)
    ]
    return {
        "accuracy": finite(accuracy),
        "kappa": finite(kappa),
        "dice": finite(np.nanmean(np.where(present, f1, np.nan))) if present.any() else None,
        "mean_iou": finite(np.nanmean(np.where(present, iou, np.nan))) if present.any() else None,
        "per_class": per_class,
        "confusion": cm.astype(np.int64).tolist(),
        "pixels": int(total),
    }
