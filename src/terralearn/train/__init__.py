"""Stage 2: a ChipSet -> a model package, recorded as a run in the workspace registry.

Every epoch ends with a checkpoint in the run folder (written atomically), so a run killed
even with SIGKILL resumes with `terralearn train --resume RUN`, losing at most the epoch in
progress. Ctrl-C stops cleanly and packages the best model so far. Accuracy is measured on
the chip set's validation split, which export made spatially independent.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from terralearn import __version__
from terralearn.classes import distinct_colours
from terralearn.config import UNLABELLED, TrainConfig
from terralearn.errors import RunError
from terralearn.geo.metrics import headline, metrics_from_confusion
from terralearn.io.atomic import ensure_can_write_dir, write_text_atomic
from terralearn.io.checkpoint import load_checkpoint, save_checkpoint, save_samples
from terralearn.io.package import save_package
from terralearn.models.device import resolve_device
from terralearn.runs import Registry
from terralearn.train.data import TrainingData, load_training_data
from terralearn.train.diagnostics import METRIC_WORDS, training_warnings
from terralearn.train.loop import Trainer, make_model, state_numpy  # noqa: F401 - part of the stage's API

EpochCallback = Callable[[dict], None]


@dataclass
class TrainResult:
    run_id: int
    status: str
    package: Path | None
    run_dir: Path
    card: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    baseline: dict | None = None
    warnings: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    weights_note: str | None = None
    report: Path | None = None


def model_card(config: TrainConfig, data: TrainingData, trainer_info: dict) -> dict:
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


def train(
    config: TrainConfig,
    workspace: Path | str | None = None,
    on_epoch: EpochCallback | None = None,
    resume_run: int | None = None,
) -> TrainResult:
    """Train, evaluate, package and record. Returns when finished, stopped early, or interrupted (Ctrl-C)."""
    registry = Registry(workspace)
    if resume_run is None:
        ensure_can_write_dir(config.out, config.overwrite)
    t0 = time.perf_counter()
    if config.model == "auto":  # the selection works on the chip set put back together (every label, no split)
        from terralearn.train.scenes import load_scene_data

        data = load_scene_data(config.chips, config.ignore_classes)
    else:
        data = load_training_data(config.chips, config.ignore_classes)
    m = data.chipset.manifest
    run_fields = dict(
        name=config.name or (f"{config.model}-{config.encoder}" if config.encoder else config.model),
        chip_set=str(Path(config.chips).resolve()), chip_set_fingerprint=data.chipset.fingerprint,
        bands=len(data.band_names), pixel_size=m["grid"]["pixel_size"][0],
        chip_size=config.chip_size or m["chips"]["tile_size"][0], architecture=config.model,
        backbone=config.encoder, loss=config.loss,
        epochs_set=config.epochs if config.model not in ("random_forest", "auto") else None, config=config.model_dump(mode="json"),
        package=str(Path(config.out).resolve()),
    )  # fmt: skip
    if resume_run is None:
        run_id = registry.start_run(**run_fields)
    else:
        run_id = resume_run
        registry.update_run(run_id, status="running", pid=os.getpid())
    run_dir = registry.root / "runs" / f"run-{run_id:04d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", json.dumps(config.model_dump(mode="json"), indent=2))
    try:
        if config.model == "auto":
            result = _train_auto(config, data, registry, run_id, run_dir, on_epoch)
        elif config.model == "random_forest":
            result = _train_forest(config, data, registry, run_id, run_dir)
        else:
            result = _train_deep(config, data, registry, run_id, run_dir, on_epoch, resume_run is not None)
    except KeyboardInterrupt:  # pragma: no cover - handled inside _train_deep; forest training is short
        registry.update_run(run_id, status="interrupted")
        raise
    except BaseException:
        registry.update_run(run_id, status="failed")
        raise
    result.seconds = time.perf_counter() - t0
    return result


def _train_deep(config, data, registry, run_id, run_dir, on_epoch, resuming) -> TrainResult:
    from terralearn.train.baseline import forest_baseline
    from terralearn.train.review import write_run_report

    device = resolve_device(config.device)
    trainer = Trainer(config, data, device)
    start_epoch = 1
    previous_seconds = 0.0
    baseline = None
    if resuming:
        state = load_checkpoint(run_dir)
        if state is None:
            raise RunError(f"Run {run_id} has no checkpoint to resume from.", "Start a new training run.")
        trainer.setup_optimizer(state["learning_rate"])
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.history = state["history"]
        trainer.best_score = state["best_score"]
        trainer.best_epoch = state["best_epoch"]
        trainer.best_state = state["best_model"]
        trainer.weights_used = state.get("weights", trainer.weights_used)
        baseline = state.get("baseline")
        previous_seconds = state.get("seconds", 0.0)
        start_epoch = state["epoch"] + 1
    else:
        if config.baseline and len(data.x_val):
            baseline = headline(forest_baseline(data, config.trees, config.seed)["metrics"])
        trainer.setup_optimizer(config.learning_rate or trainer.find_learning_rate())
    registry.update_run(run_id, device=str(device), weights=trainer.weights_used,
                        baseline_accuracy=(baseline or {}).get("accuracy"),
                        baseline_mean_iou=(baseline or {}).get("mean_iou"))  # fmt: skip
    status = "finished"
    t_start = time.perf_counter()
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            t_epoch = time.perf_counter()
            train_loss = trainer.train_epoch(epoch)
            val_loss, cm = trainer.evaluate(trainer.x_val, trainer.y_val)
            metrics = metrics_from_confusion(cm, [c["name"] for c in data.classes])
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, **headline(metrics),
                   "lr": trainer.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t_epoch}  # fmt: skip
            row["val_loss"] = None if math.isnan(val_loss) else val_loss
            trainer.history.append(row)
            score = trainer.score(row)
            if trainer.best_score is None or score > trainer.best_score:
                trainer.best_score, trainer.best_epoch = score, epoch
                trainer.best_state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
                trainer.best_metrics = metrics
            seconds = previous_seconds + time.perf_counter() - t_start
            save_checkpoint(run_dir, trainer, epoch, seconds, baseline)
            registry.update_run(run_id, epochs_run=epoch, best_epoch=trainer.best_epoch, training_seconds=seconds,
                                **{k: row[k] for k in ("accuracy", "dice", "mean_iou")})  # fmt: skip
            if on_epoch:
                on_epoch({**row, "best_epoch": trainer.best_epoch, "epochs": config.epochs, "run_id": run_id})
            if config.patience and epoch - trainer.best_epoch >= config.patience:
                status = "stopped_early"
                break
    except KeyboardInterrupt:
        status = "interrupted"
    seconds = previous_seconds + time.perf_counter() - t_start
    if trainer.best_state is None:
        registry.update_run(run_id, status="interrupted", training_seconds=seconds)
        return TrainResult(run_id, "interrupted", None, run_dir, seconds=seconds, weights_note=trainer.weights_note)
    trainer.model.load_state_dict(trainer.best_state)
    _, cm = trainer.evaluate(trainer.x_val, trainer.y_val)
    metrics = metrics_from_confusion(cm, [c["name"] for c in data.classes])
    warnings = training_warnings(trainer.history, metrics, data.classes, baseline, config.monitor)
    info = {"weights": trainer.weights_used, "metrics": metrics, "baseline": baseline,
            "best_epoch": trainer.best_epoch, "epochs_run": len(trainer.history)}  # fmt: skip
    card = model_card(config, data, info)
    card["warnings"] = warnings
    card["run_id"] = run_id
    package = save_package(config.out, state_numpy(trainer.model), card, overwrite=True)
    samples = _validation_samples(trainer, data)
    save_samples(run_dir, samples)
    final = "interrupted" if status == "interrupted" else "finished"
    registry.update_run(
        run_id, status=final, epochs_run=len(trainer.history), best_epoch=trainer.best_epoch,
        training_seconds=seconds, model_size_mb=_size_mb(package), per_class_iou=[c["iou"] for c in metrics["per_class"]],
        **{k: metrics[k] for k in ("accuracy", "dice", "mean_iou")},
    )  # fmt: skip
    result = TrainResult(run_id, final, package, run_dir, card, trainer.history, metrics, baseline, warnings, seconds,
                         trainer.weights_note)  # fmt: skip
    write_summary(run_dir, summary_of(registry.run(run_id), card, trainer.history))
    result.report = write_run_report(run_id, workspace=registry.root)
    return result


def _size_mb(package: Path) -> float:
    return round((Path(package) / "model.safetensors").stat().st_size / 2**20, 3)


def _validation_samples(trainer: Trainer, data: TrainingData, n: int = 6) -> dict:
    """A few validation chips (the most labelled ones) with label and prediction, for the report."""
    if len(trainer.x_val) == 0:
        return {}
    labelled = (trainer.y_val != UNLABELLED).flatten(1).sum(1)
    pick = torch.argsort(labelled, descending=True)[:n]
    pred = trainer.predict(trainer.x_val[pick])
    x = trainer.x_val[pick].numpy()
    return {"image": x, "label": trainer.y_val[pick].numpy(), "prediction": pred,
            "chip_ids": np.array([data.val_ids[int(i)] for i in pick])}  # fmt: skip


def _train_forest(config, data, registry, run_id, run_dir) -> TrainResult:
    from terralearn.models.forest import to_tensors
    from terralearn.train.baseline import forest_baseline
    from terralearn.train.review import write_run_report

    t0 = time.perf_counter()
    out = forest_baseline(data, config.trees, config.seed)
    metrics = out["metrics"]
    seconds = time.perf_counter() - t0
    warnings = training_warnings([], metrics, data.classes, None, "accuracy")
    info = {"weights": "none", "metrics": metrics, "epochs_run": 0}
    card = model_card(config, data, info)
    card["warnings"] = warnings
    card["run_id"] = run_id
    package = save_package(config.out, to_tensors(out["forest"]), card, overwrite=True)
    registry.update_run(
        run_id, status="finished", epochs_run=0, training_seconds=seconds, model_size_mb=_size_mb(package),
        device="cpu", weights="none", per_class_iou=[c["iou"] for c in metrics["per_class"]],
        **{k: metrics[k] for k in ("accuracy", "dice", "mean_iou")},
    )  # fmt: skip
    write_summary(run_dir, summary_of(registry.run(run_id), card, []))
    report = write_run_report(run_id, workspace=registry.root)
    return TrainResult(run_id, "finished", package, run_dir, card, [], metrics, None, warnings, seconds, report=report)


def _train_auto(config, scene, registry, run_id, run_dir, on_event) -> TrainResult:
    """``--model auto``: choose by grouped cross-validation, refit on every label, package the chosen model."""
    from terralearn.models.forest import to_tensors
    from terralearn.train.review import write_run_report
    from terralearn.train.select import NETWORK_TILE, select_model

    t0 = time.perf_counter()
    device = resolve_device(config.device)
    criterion = config.monitor if config.monitor != "val_loss" else "mean_iou"
    registry.update_run(run_id, device=str(device), weights="none")
    sel = select_model(scene, folds=config.cv_folds, time_budget=config.time_budget, trees=config.trees,
                       seed=config.seed, device=device, criterion=criterion, on_event=on_event)  # fmt: skip
    network = sel.chosen != "random_forest"
    baseline = sel.baseline if network else None
    info = {"weights": "none", "metrics": sel.metrics, "baseline": baseline, "epochs_run": 0}
    card = model_card(config, scene, info)
    card["architecture"], card["backbone"] = sel.chosen, None
    card["metrics_source"] = f"grouped {sel.folds}-fold cross-validation on held-out polygons"
    if network:
        card["tile_size"] = NETWORK_TILE  # trained on crops of many sizes: large tiles classify as well
    card["selection"] = {
        "method": "grouped k-fold cross-validation (folds of whole polygons, or label patches)",
        "folds": sel.folds, "criterion": sel.criterion, "chosen": sel.chosen, "leaderboard": sel.leaderboard,
        "reason": sel.reason, "notes": sel.notes, "time_budget": config.time_budget,
        "seconds": round(sel.seconds, 1), "refit_seconds": round(sel.refit_seconds, 1), "steps": sel.steps,
        "refit": "The shipped model was refitted on every labelled pixel with the chosen settings"
                 + (f" ({sel.steps} training steps)." if sel.steps else ".")
                 + " Its figures are the cross-validated ones, never the refit's on its own training labels.",
        "class_polygons": {name: v["groups"] for name, v in sel.fold_summary.items()},
    }  # fmt: skip
    card["warnings"] = sel.warnings + training_warnings([], sel.metrics, scene.classes, baseline, criterion)
    card["run_id"] = run_id
    tensors = state_numpy(sel.network) if network else to_tensors(sel.forest)
    package = save_package(config.out, tensors, card, overwrite=True)
    seconds = time.perf_counter() - t0
    chosen_row = next((r for r in sel.leaderboard if r.get("chosen")), {})
    board = ", ".join(f"{r['candidate']} {r['score']:.3f}" if r.get("score") is not None
                      else f"{r['candidate']} {r['status']}" for r in sel.leaderboard)  # fmt: skip
    registry.update_run(
        run_id, status="finished", architecture=sel.chosen, backbone=None, epochs_run=0, training_seconds=seconds,
        model_size_mb=_size_mb(package), per_class_iou=[c["iou"] for c in sel.metrics["per_class"]],
        baseline_accuracy=(sel.baseline or {}).get("accuracy"), baseline_mean_iou=(sel.baseline or {}).get("mean_iou"),
        selection=f"{sel.chosen} by {sel.folds}-fold CV {METRIC_WORDS.get(criterion, criterion)} ({board})",
        cv_spread=chosen_row.get(f"{criterion}_spread"), **{k: sel.metrics[k] for k in ("accuracy", "dice", "mean_iou")},
    )  # fmt: skip
    write_summary(run_dir, summary_of(registry.run(run_id), card, []))
    report = write_run_report(run_id, workspace=registry.root)
    return TrainResult(run_id, "finished", package, run_dir, card, [], sel.metrics, baseline, card["warnings"],
                       seconds, report=report)  # fmt: skip


def summary_of(run: dict, card: dict, history: list[dict]) -> dict:
    """Everything the report shows about a run, as plain JSON."""
    counts = card["training_data"]["class_pixels"]
    val_support = {c["index"]: c["support"] for c in card["metrics"].get("per_class", [])}
    return {
        "run_id": run["id"], "name": run["name"], "created": run["created"], "status": run["status"],
        "task": card["task"], "architecture": card["architecture"], "backbone": card["backbone"],
        "weights": card["weights"], "device": run["device"], "chip_set": card["training_data"]["chip_set"],
        "bands": card["bands"], "chip_size": card["chip_size"], "pixel_size": card["pixel_size"],
        "epochs_set": run["epochs_set"], "epochs_run": run["epochs_run"], "best_epoch": run["best_epoch"],
        "monitor": card["training"]["monitor"], "training_seconds": run["training_seconds"],
        "model_size_mb": run["model_size_mb"],
        "classes": [{**c, "train_pixels": int(counts[c["index"]]), "val_pixels": int(val_support.get(c["index"], 0))}
                    for c in card["classes"]],
        "history": history, "metrics": card["metrics"],
        "baseline": {"name": "random forest (per pixel)", **card["baseline"]} if card.get("baseline") else None,
        "warnings": card.get("warnings", []),
        "selection": card.get("selection"),
        "settings": {k: card["training"][k] for k in ("loss", "batch_size", "learning_rate", "augment",
                     "class_balancing", "oversample", "mixup", "freeze_backbone", "patience", "seed")
                     if k in card["training"]},
    }  # fmt: skip


def write_summary(run_dir: Path, summary: dict) -> None:
    write_text_atomic(Path(run_dir) / "summary.json", json.dumps(summary, indent=2, default=str))


def resume(run_id: int, workspace: Path | str | None = None, on_epoch=None) -> TrainResult:
    """Continue an interrupted (or killed) run from its last checkpoint."""
    registry = Registry(workspace)
    run = registry.run(run_id)
    if run["status"] in ("finished", "failed"):
        raise RunError(f"Run {run_id} is {run['status']}; only interrupted runs can be resumed.",
                       "Start a new run with `terralearn train`.")  # fmt: skip
    run_dir = registry.root / "runs" / f"run-{run_id:04d}"
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise RunError(f"Run {run_id} has no saved settings in {run_dir}.", "Start a new run.")
    config = TrainConfig.build(**json.loads(config_path.read_text()))
    return train(config, workspace, on_epoch=on_epoch, resume_run=run_id)
