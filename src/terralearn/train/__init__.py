"""Stage 2: a ChipSet -> a model package, recorded as a run in the workspace registry.

Every epoch ends with a checkpoint in the run folder (written atomically), so a run killed
even with SIGKILL resumes with `terralearn train --resume RUN` (``TrainConfig.resume``), losing
at most the epoch in progress. Ctrl-C stops cleanly and packages the best model so far. Accuracy
is measured on the chip set's validation split, which export made spatially independent.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from terralearn.config import ReportConfig, TrainConfig
from terralearn.errors import RunError
from terralearn.geo.metrics import headline, metrics_from_confusion
from terralearn.io.atomic import ensure_can_write_dir
from terralearn.io.checkpoint import load_checkpoint, save_checkpoint
from terralearn.io.chips import open_chipset, read_manifest
from terralearn.io.package import save_package
from terralearn.io.runfiles import (
    load_settings,
    make_run_dir,
    package_size_mb,
    run_dir,
    save_samples,
    save_settings,
    save_summary,
)
from terralearn.models.device import resolve_device
from terralearn.runs import Registry
from terralearn.tasks import DEFAULT_TASK, get_task
from terralearn.train.card import model_card, selection_card
from terralearn.train.data import load_training_data
from terralearn.train.diagnostics import METRIC_WORDS, training_warnings
from terralearn.train.loop import Trainer, state_numpy

__all__ = ["EpochCallback", "TrainResult", "train"]

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


def train(config: TrainConfig, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train, evaluate, package and record. Returns when finished, stopped early, or interrupted (Ctrl-C).

    With ``config.resume`` set, the interrupted (or killed) run continues from its last checkpoint, with the
    settings it was started with.
    """
    registry = Registry(config.workspace)
    resuming = config.resume is not None
    if resuming:
        config = _saved_config(registry, config)
    else:
        ensure_can_write_dir(config.out, config.overwrite)
    t0 = time.perf_counter()
    task = read_manifest(config.chips)["task"]
    if config.batch_size is None:  # the task's default, recorded as given (the card, the run's settings, resume)
        config = config.model_copy(update={"batch_size": config.batch_for(task)})
    return get_task(task).stage("train")(config, registry, resuming, on_epoch, t0)


def train_pixels(config: TrainConfig, registry: Registry, resuming: bool, on_epoch: EpochCallback | None,
                 t0: float) -> TrainResult:  # fmt: skip
    """Pixel classification's training (network, forest or ``--model auto``) inside the run bookkeeping."""
    if config.model == "auto":  # the selection works on the chip set put back together (every label, no split)
        from terralearn.train.scenes import load_scene_data

        data = load_scene_data(config.chips, config.ignore_classes)
    else:
        data = load_training_data(config.chips, config.ignore_classes)
    m = data.chipset.manifest
    run_fields = dict(
        name=config.name or (f"{config.model}-{config.encoder}" if config.encoder else config.model),
        task=m["task"], headline_metric=get_task(m["task"]).headline,
        chip_set=str(Path(config.chips).resolve()), chip_set_fingerprint=data.chipset.fingerprint,
        bands=len(data.band_names), pixel_size=m["grid"]["pixel_size"][0],
        chip_size=config.chip_size or m["chips"]["tile_size"][0], architecture=config.model,
        backbone=config.encoder, loss=config.loss,
        epochs_set=config.epochs if config.model not in ("random_forest", "auto") else None, config=config.model_dump(mode="json"),
        package=str(Path(config.out).resolve()),
    )  # fmt: skip
    if resuming:
        run_id = config.resume
        registry.update_run(run_id, status="running", pid=os.getpid())
    else:
        run_id = registry.start_run(**run_fields)
    folder = make_run_dir(registry.root, run_id)
    save_settings(folder, config.model_dump(mode="json"))
    try:
        if config.model == "auto":
            result = _train_auto(config, data, registry, run_id, folder, on_epoch)
        elif config.model == "random_forest":
            result = _train_forest(config, data, registry, run_id, folder)
        else:
            result = _train_deep(config, data, registry, run_id, folder, on_epoch, resuming)
    except KeyboardInterrupt:  # pragma: no cover - handled inside _train_deep; forest training is short
        registry.update_run(run_id, status="interrupted")
        raise
    except BaseException:
        registry.update_run(run_id, status="failed")
        raise
    if config.onnx and result.package is not None and result.card.get("architecture") != "random_forest":
        _cache_onnx(result)
    result.seconds = time.perf_counter() - t0
    return result


def train_detection_run(config: TrainConfig, registry: Registry, resuming: bool, on_epoch, t0: float) -> TrainResult:
    """A detection chip set: the detector stage (``train.detection``) inside the same run bookkeeping."""
    from terralearn.train.detection import detector_name, train_detection

    chipset = open_chipset(config.chips)
    m = chipset.manifest
    name = detector_name(config, m["task"])
    if resuming:
        run_id = config.resume
        registry.update_run(run_id, status="running", pid=os.getpid())
    else:
        run_id = registry.start_run(
            name=config.name or name, task=m["task"], headline_metric=get_task(m["task"]).headline,
            chip_set=str(Path(config.chips).resolve()), chip_set_fingerprint=chipset.fingerprint,
            bands=m["band_count"], pixel_size=m["grid"]["pixel_size"][0], chip_size=m["chips"]["tile_size"][0],
            architecture=name, backbone=None, loss="detector", epochs_set=config.epochs,
            config=config.model_dump(mode="json"), package=str(Path(config.out).resolve()),
        )  # fmt: skip
    folder = make_run_dir(registry.root, run_id)
    save_settings(folder, config.model_dump(mode="json"))
    try:
        result = train_detection(config, chipset, registry, run_id, folder, on_epoch, resuming)
    except BaseException:
        registry.update_run(run_id, status="failed")
        raise
    result.seconds = time.perf_counter() - t0
    return result


def _cache_onnx(result: TrainResult) -> None:
    """Cache the network's ONNX export for classify's default tile, so that classify on a CPU runs it without
    loading PyTorch (8 s instead of 16 s on the national case). A failed export leaves the package whole:
    classify then uses PyTorch, and the run says why."""
    if importlib.util.find_spec("onnxruntime") is None:
        return
    # The one import of another stage: training leaves the package ready for predict's fastest path.
    from terralearn.predict.inputs import default_tile
    from terralearn.predict.onnx import cache_default_export

    try:
        cache_default_export(result.package, result.card, default_tile(result.card))
    except Exception as exc:  # any exporter failure: the package works without the export
        result.warnings.append(
            {
                "code": "onnx_export",
                "message": f"The network could not be exported to ONNX ({type(exc).__name__}: {exc}).",
                "fix": "Nothing to do: classify uses PyTorch for this package, which starts slower but gives the same map.",
            }
        )


def _saved_config(registry: Registry, config: TrainConfig) -> TrainConfig:
    """The settings that run ``config.resume`` was started with; it must be resumable."""
    run_id = config.resume
    run = registry.run(run_id)
    if run["status"] in ("finished", "failed"):
        raise RunError(f"Run {run_id} is {run['status']}; only interrupted runs can be resumed.",
                       "Start a new run with `terralearn train`.")  # fmt: skip
    folder = run_dir(registry.root, run_id)
    saved = load_settings(folder)
    if saved is None:
        raise RunError(f"Run {run_id} has no saved settings in {folder}.", "Start a new run.")
    return TrainConfig.build(**saved, resume=run_id, workspace=config.workspace)


def _train_deep(config, data, registry, run_id, folder, on_epoch, resuming) -> TrainResult:
    from terralearn.train.baseline import forest_baseline

    device = resolve_device(config.device)
    trainer = Trainer(config, data, device)
    start_epoch = 1
    previous_seconds = 0.0
    baseline = None
    if resuming:
        state = load_checkpoint(folder)
        if state is None:
            raise RunError(f"Run {run_id} has no checkpoint to resume from.", "Start a new training run.")
        trainer.restore(state)
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
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            row = trainer.run_epoch(epoch)
            seconds = previous_seconds + time.perf_counter() - t_start
            save_checkpoint(folder, trainer, epoch, seconds, baseline)
            registry.update_run(run_id, epochs_run=epoch, best_epoch=trainer.best_epoch, training_seconds=seconds,
                                **{k: row[k] for k in ("accuracy", "dice", "mean_iou")})  # fmt: skip
            if on_epoch:
                on_epoch({**row, "best_epoch": trainer.best_epoch, "epochs": config.epochs, "run_id": run_id})
            if trainer.stops_early(epoch):
                status = "stopped_early"
                break
    except KeyboardInterrupt:
        status = "interrupted"
    seconds = previous_seconds + time.perf_counter() - t_start
    if trainer.best_state is None:
        registry.update_run(run_id, status="interrupted", training_seconds=seconds)
        return TrainResult(run_id, "interrupted", None, folder, seconds=seconds, weights_note=trainer.weights_note)
    trainer.model.load_state_dict(trainer.best_state)
    _, cm = trainer.evaluate(trainer.x_val, trainer.y_val)
    metrics = metrics_from_confusion(cm, [c["name"] for c in data.classes])
    warnings = training_warnings(trainer.history, metrics, data.classes, baseline, config.monitor)
    info = {"weights": trainer.weights_used, "metrics": metrics, "baseline": baseline,
            "best_epoch": trainer.best_epoch, "epochs_run": len(trainer.history)}  # fmt: skip
    card = _card(config, data, info, warnings, run_id)
    package = save_package(config.out, state_numpy(trainer.model), card, overwrite=True)
    save_samples(folder, trainer.validation_samples())
    final = "interrupted" if status == "interrupted" else "finished"
    registry.update_run(run_id, status=final, epochs_run=len(trainer.history), best_epoch=trainer.best_epoch,
                        training_seconds=seconds, model_size_mb=package_size_mb(package), **_scores(metrics))  # fmt: skip
    result = TrainResult(run_id, final, package, folder, card, trainer.history, metrics, baseline, warnings, seconds,
                         trainer.weights_note)  # fmt: skip
    result.report = _summary_and_report(registry, run_id, folder, card, trainer.history)
    return result


def _train_forest(config, data, registry, run_id, folder) -> TrainResult:
    from terralearn.models.forest import to_tensors
    from terralearn.train.baseline import forest_baseline

    t0 = time.perf_counter()
    out = forest_baseline(data, config.trees, config.seed)
    metrics = out["metrics"]
    seconds = time.perf_counter() - t0
    warnings = training_warnings([], metrics, data.classes, None, "accuracy")
    card = _card(config, data, {"weights": "none", "metrics": metrics, "epochs_run": 0}, warnings, run_id)
    package = save_package(config.out, to_tensors(out["forest"]), card, overwrite=True)
    registry.update_run(run_id, status="finished", epochs_run=0, training_seconds=seconds,
                        model_size_mb=package_size_mb(package), device="cpu", weights="none",
                        **_scores(metrics))  # fmt: skip
    report = _summary_and_report(registry, run_id, folder, card, [])
    return TrainResult(run_id, "finished", package, folder, card, [], metrics, None, warnings, seconds, report=report)


def _train_auto(config, scene, registry, run_id, folder, on_event) -> TrainResult:
    """``--model auto``: choose by grouped cross-validation, refit on every label, package the chosen model."""
    from terralearn.models.forest import to_tensors
    from terralearn.train.select import NETWORK_TILE, select_model

    t0 = time.perf_counter()
    device = resolve_device(config.device)
    criterion = config.monitor if config.monitor != "val_loss" else "mean_iou"
    registry.update_run(run_id, device=str(device), weights="none")
    sel = select_model(scene, folds=config.cv_folds, time_budget=config.time_budget, trees=config.trees,
                       seed=config.seed, device=device, criterion=criterion, on_event=on_event,
                       candidates=tuple(config.candidates), steps=config.steps)  # fmt: skip
    network = sel.chosen != "random_forest"
    baseline = sel.baseline if network else None
    warnings = sel.warnings + training_warnings([], sel.metrics, scene.classes, baseline, criterion)
    info = {"weights": "none", "metrics": sel.metrics, "baseline": baseline, "epochs_run": 0}
    card = model_card(config, scene, info)
    card["architecture"], card["backbone"] = sel.chosen, None
    card["metrics_source"] = f"grouped {sel.folds}-fold cross-validation on held-out polygons"
    if network:
        card["tile_size"] = NETWORK_TILE  # trained on crops of many sizes: large tiles classify as well
    card["selection"] = selection_card(sel, config.time_budget)
    card["warnings"], card["run_id"] = warnings, run_id
    tensors = state_numpy(sel.network) if network else to_tensors(sel.forest)
    package = save_package(config.out, tensors, card, overwrite=True)
    seconds = time.perf_counter() - t0
    chosen_row = next((r for r in sel.leaderboard if r.get("chosen")), {})
    board = ", ".join(f"{r['candidate']} {r['score']:.3f}" if r.get("score") is not None
                      else f"{r['candidate']} {r['status']}" for r in sel.leaderboard)  # fmt: skip
    registry.update_run(
        run_id, status="finished", architecture=sel.chosen, backbone=None, epochs_run=0, training_seconds=seconds,
        model_size_mb=package_size_mb(package), baseline_accuracy=(sel.baseline or {}).get("accuracy"),
        baseline_mean_iou=(sel.baseline or {}).get("mean_iou"),
        selection=f"{sel.chosen} by {sel.folds}-fold CV {METRIC_WORDS.get(criterion, criterion)} ({board})",
        cv_spread=chosen_row.get(f"{criterion}_spread"), **_scores(sel.metrics),
    )  # fmt: skip
    report = _summary_and_report(registry, run_id, folder, card, [])
    return TrainResult(run_id, "finished", package, folder, card, [], sel.metrics, baseline, warnings, seconds,
                       report=report)  # fmt: skip


def _card(config: TrainConfig, data, info: dict, warnings: list[dict], run_id: int) -> dict:
    card = model_card(config, data, info)
    card["warnings"], card["run_id"] = warnings, run_id
    return card


def _scores(metrics: dict) -> dict:
    """The run table's score columns."""
    return {"per_class_iou": [c["iou"] for c in metrics["per_class"]],
            **{k: metrics[k] for k in ("accuracy", "dice", "mean_iou")}}  # fmt: skip


def _summary_and_report(registry: Registry, run_id: int, folder: Path, card: dict, history: list[dict]) -> Path:
    """Write the run's summary, then its report from the run folder; the report's path."""
    from terralearn.train.report import write_run_report

    summary = get_task(card.get("task", DEFAULT_TASK)).stage("summary")
    save_summary(folder, summary(registry.run(run_id), card, history))
    return write_run_report(ReportConfig(run=run_id, workspace=registry.root))
