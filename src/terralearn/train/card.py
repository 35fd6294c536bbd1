"""The model card of a trained package: what the model is, what it was trained on, how good it is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from terralearn import __version__
from terralearn.classes import distinct_colours
from terralearn.config import UNLABELLED, TrainConfig
from terralearn.train.data import TrainingData

if TYPE_CHECKING:
    from terralearn.train.select import Selection


def model_card(config: TrainConfig, data: TrainingData, trainer_info: dict) -> dict:
    """The card of a model trained with ``config`` on ``data``; ``trainer_info`` adds weights, metrics, epochs."""
    m = data.chipset.manifest
    tile = m["chips"]["tile_size"]
    return {
        "task": "pixel_classification",
        "architecture": config.model,
        "backbone": config.encoder,
        "weights": trainer_info.get("weights", "none"),
        "bands": data.band_names,
        "band_count": len(data.band_names),
        "normalisation": {"mean": data.mean.tolist(), "std": data.std.tolist()},
        "nodata": m.get("nodata"),
        "nodata_is_nan": m.get("nodata_is_nan", False),
        "classes": [{k: c[k] for k in ("index", "value", "name", "colour")} for c in distinct_colours(data.classes)],
        "ignored_classes": data.ignored,
        "unlabelled_value": UNLABELLED,
        "chip_size": [config.chip_size, config.chip_size] if config.chip_size else tile,
        "trained_chip_size": tile,
        "pixel_size": m["grid"]["pixel_size"],
        "crs": m["grid"].get("crs_name"),
        "crs_units": m["grid"].get("units"),
        "training_data": {
            "chip_set": str(Path(config.chips).resolve()),
            "fingerprint": data.chipset.fingerprint,
            "train_chips": len(data.train_ids),
            "val_chips": len(data.val_ids),
            "split": m["split"]["method"],
            "class_pixels": data.class_pixels.tolist(),
        },
        "training": {k: v for k, v in config.model_dump(mode="json").items() if k not in ("chips", "out")},
        "metrics": trainer_info.get("metrics", {}),
        "baseline": trainer_info.get("baseline"),
        "best_epoch": trainer_info.get("best_epoch"),
        "epochs_run": trainer_info.get("epochs_run"),
        "versions": {"terralearn": __version__, "torch": torch.__version__},
    }


def selection_card(sel: Selection, time_budget: float) -> dict:
    """The card's record of a ``--model auto`` selection."""
    return {
        "method": "grouped k-fold cross-validation (folds of whole polygons, or label patches)",
        "folds": sel.folds, "criterion": sel.criterion, "chosen": sel.chosen, "leaderboard": sel.leaderboard,
        "reason": sel.reason, "notes": sel.notes, "time_budget": time_budget,
        "seconds": round(sel.seconds, 1), "refit_seconds": round(sel.refit_seconds, 1), "steps": sel.steps,
        "refit": "The shipped model was refitted on every labelled pixel with the chosen settings"
                 + (f" ({sel.steps} training steps)." if sel.steps else ".")
                 + " Its figures are the cross-validated ones, never the refit's on its own training labels.",
        "class_polygons": {name: v["groups"] for name, v in sel.fold_summary.items()},
    }  # fmt: skip
