"""Automatic warnings about a trained model, in plain words with a fix."""

from __future__ import annotations

import math

#: Differences smaller than this (on a 0-1 score) are a tie: neither model is clearly better.
TIE = 0.005
METRIC_WORDS = {"accuracy": "overall accuracy", "dice": "Dice", "mean_iou": "mean IoU", "kappa": "kappa"}
MONITOR_WORDS = {**METRIC_WORDS, "val_loss": "validation loss", "train_loss": "training loss"}


def compare_with_baseline(metrics: dict, baseline: dict | None, monitor: str | None) -> dict | None:
    """The one comparison a run's verdict rests on: the monitored score (mean IoU, then Dice, accuracy, kappa
    when the monitor is the loss or missing); None without a baseline or a shared score (pure).
    """
    if not baseline:
        return None
    order = [monitor] if monitor in METRIC_WORDS else []
    order += [k for k in ("mean_iou", "dice", "accuracy", "kappa") if k not in order]
    for key in order:
        mine, base = metrics.get(key), baseline.get(key)
        numbers = isinstance(mine, (int, float)) and isinstance(base, (int, float))
        if numbers and not (math.isnan(mine) or math.isnan(base)):
            return {"key": key, "model": float(mine), "baseline": float(base), "diff": float(mine - base)}
    return None


def training_warnings(history: list[dict], metrics: dict, classes: list[dict], baseline: dict | None,
                      monitor: str) -> list[dict]:  # fmt: skip
    """Warnings for the report and the end of training.

    - majority_class: high accuracy while some class is (almost) never found - the model
      predicts mostly the majority class (the "99.9 % accuracy, Dice 0" failure);
    - never_predicted: a class present in the validation data that the model never outputs;
    - overfitting: validation loss rising for several epochs while training loss falls;
    - baseline_better: the per-pixel random forest scores at least as well;
    - no_validation: nothing to measure on.
    """
    out: list[dict] = []
    per_class = metrics.get("per_class", [])
    present = [c for c in per_class if c["support"] > 0]
    if not present:
        return [{"code": "no_validation", "message": "The validation split holds no labelled pixel, so no score "
                 "could be measured.", "fix": "Export again with --val-fraction 0.2 (or more labels)."}]  # fmt: skip
    acc = metrics.get("accuracy") or 0.0
    total_pred = sum(c["predicted"] for c in present) or 1
    top = max(present, key=lambda c: c["predicted"])
    weak = [c for c in present if (c["iou"] or 0.0) < 0.05]
    if acc >= 0.8 and weak and top["predicted"] / total_pred > 0.8:
        names = ", ".join(c["name"] for c in weak)
        out.append({"code": "majority_class", "message": f"Accuracy is {acc:.1%}, but the model predicts "
                    f"'{top['name']}' for {top['predicted'] / total_pred:.0%} of pixels and almost never finds "
                    f"{names} (IoU below 0.05): the high accuracy comes from the majority class.",
                    "fix": "Train with --loss focal (or focal_dice), --class-balancing and --oversample, monitor "
                    "mean_iou, or label more of the rare classes."})  # fmt: skip
    never = [c["name"] for c in present if c["predicted"] == 0]
    if never:
        out.append({"code": "never_predicted", "message": f"Classes never predicted on the validation data: "
                    f"{', '.join(never)}.", "fix": "Use --class-balancing / --oversample, train longer, or check "
                    "that these classes have enough training pixels."})  # fmt: skip
    start = overfitting_start(history)
    if start is not None:
        out.append({"code": "overfitting", "message": f"Validation loss has risen since epoch {start} while the "
                    "training loss kept falling: the model is overfitting.", "fix": "Keep the best epoch (done), "
                    "add augmentation or labels, or lower --epochs / --patience."})  # fmt: skip
    verdict = compare_with_baseline(metrics, baseline, monitor)
    if verdict is not None and verdict["diff"] < TIE:
        word = METRIC_WORDS[verdict["key"]]
        how = "scores as well as" if verdict["diff"] > -TIE else "beats"
        out.append({"code": "baseline_better", "message": f"The per-pixel random forest {how} the deep model: "
                    f"{word} {verdict['baseline']:.3f} against {verdict['model']:.3f}. Deep learning does not "
                    "clearly beat the baseline on this data as trained.", "fix": "Use the random forest "
                    "(--model random_forest), or let TerraLearn choose (--model auto, the default), or give the "
                    "network more labels."})  # fmt: skip
    return out


def overfitting_start(history: list[dict], rising: int = 3) -> int | None:
    """The epoch after the lowest validation loss, if it rose for ``rising`` epochs since while training loss fell."""
    vals = [(h["epoch"], h.get("val_loss"), h.get("train_loss")) for h in history]
    vals = [v for v in vals if v[1] is not None and not math.isnan(v[1])]
    if len(vals) < rising + 2:
        return None
    best = min(range(len(vals)), key=lambda i: vals[i][1])
    after = vals[best:]
    if len(after) <= rising:
        return None
    val_up = all(after[i + 1][1] >= after[i][1] * 0.999 for i in range(len(after) - 1)) or (
        after[-1][1] > vals[best][1] * 1.1
    )
    train_down = after[-1][2] < after[0][2]
    return after[1][0] if val_up and train_down else None
