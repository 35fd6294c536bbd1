"""The task families TerraLearn trains, each declared once: what its chips hold, how it is scored, what it writes.

A stage that must behave per task asks this registry instead of testing names: the run table ranks runs by the
task's headline metric (and whether higher is better), the loader refuses a package of another task with the
command that runs it, and export, train, the run summary and report, ONNX export, whole-raster prediction and
evaluation call the entry's stage functions (:meth:`Task.stage`). A new task is one entry here, its stage
modules, one registry of models in ``models/`` and at most one writer in ``io/``. The registry imports nothing
heavy: stages are named as ``module:function`` and imported when called.

The stage functions of every task share one signature per stage:

- ``export(ExportConfig, progress) -> ExportResult``
- ``train(TrainConfig, registry, resuming, on_epoch, t0) -> TrainResult``
- ``summary(run row, card, history) -> dict`` (the run folder's summary.json)
- ``report(summary, out folder, raw samples) -> Path`` (the run's HTML report)
- ``onnx(OnnxConfig) -> OnnxResult``
- ``predict(config, progress) -> result`` over whole rasters, and ``evaluate(config) -> result``
"""

from __future__ import annotations

from dataclasses import dataclass

from terralearn import __version__
from terralearn.errors import ConfigError, PackageError


@dataclass(frozen=True)
class Task:
    """One task family (the narrow contract every stage reads)."""

    name: str  # as written in manifests, model cards and the run table
    words: str  # for messages
    targets: str  # what a chip's labels hold
    label_formats: tuple[str, ...]  # the chip layouts export writes (the first is the default)
    headline: str  # the metric runs are ranked by
    higher_is_better: bool
    command: str  # the command that applies a model of this task to whole rasters
    output: str  # what that command writes
    batch_size: int  # chips per training step by default
    stages: dict[str, str]  # stage name -> "module:function" (see the module documentation)

    def stage(self, name: str):
        """The function of stage ``name`` for this task, imported now."""
        import importlib

        try:
            module, function = self.stages[name].split(":")
        except KeyError:
            raise ConfigError(f"{self.words.capitalize()} has no {name} stage in TerraLearn {__version__}.",
                              f"What this version does for {self.words}: {', '.join(self.stages)}.") from None  # fmt: skip
        return getattr(importlib.import_module(module), function)


TASKS: dict[str, Task] = {
    "pixel_classification": Task(
        name="pixel_classification",
        words="pixel classification",
        targets="a class index per pixel (255 = unlabelled)",
        label_formats=("classified_tiles",),
        headline="mean_iou",
        higher_is_better=True,
        command="classify",
        output="a classified GeoTIFF",
        batch_size=16,
        stages={
            "export": "terralearn.export:export_pixels",
            "train": "terralearn.train:train_pixels",
            "summary": "terralearn.train.report:summary_of",
            "report": "terralearn.train.report:write_pixel_report",
            "onnx": "terralearn.predict.onnx:export_segmentation_onnx",
            "predict": "terralearn.predict:classify",
            "evaluate": "terralearn.evaluate:evaluate",
        },
    ),
    "detection": Task(
        name="detection",
        words="object detection",
        targets="boxes with a class each (pixel coordinates of the chip)",
        label_formats=("pascal_voc", "kitti", "coco"),
        headline="map50",
        higher_is_better=True,
        command="detect",
        output="a GeoPackage of boxes with class and score",
        batch_size=4,  # DOTA P0706: 20 epochs of batch 4 reached validation mAP50 0.96, 12 of batch 8 0.71
        stages={
            "export": "terralearn.tasks.detection:export_detection",
            "train": "terralearn.train:train_detection_run",
            "summary": "terralearn.train.detection_report:detection_summary",
            "report": "terralearn.train.detection_report:write_detection_report",
            "onnx": "terralearn.predict.onnx_detection:export_detector_onnx",
            "predict": "terralearn.predict.detect:detect",
            "evaluate": "terralearn.evaluate.detection_stage:evaluate_detections",
        },
    ),
    "instances": Task(
        name="instances",
        words="instance segmentation",
        targets="an instance ID and a class per pixel (one outline per object)",
        label_formats=("rcnn_masks", "coco_instances", "unet_id"),
        headline="map50",  # validation mask mAP at IoU 0.5
        higher_is_better=True,
        command="detect",
        output="a GeoPackage of polygons with class and score",
        batch_size=4,
        stages={  # evaluation of the polygons as a stage: not yet (the evaluator is evaluate/instances.py)
            "export": "terralearn.tasks.instances:export_instances",
            "train": "terralearn.train:train_detection_run",
            "summary": "terralearn.train.detection_report:detection_summary",
            "report": "terralearn.train.detection_report:write_detection_report",
            "predict": "terralearn.predict.detect:detect",
        },
    ),
}

#: Chip sets and packages written before tasks were recorded are pixel classification.
DEFAULT_TASK = "pixel_classification"


def get_task(name: str) -> Task:
    """The task ``name``; an unknown name lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"Unknown task {name!r}.", f"Choose one of: {', '.join(TASKS)}.") from None


def require_task(card: dict, wanted: str, source: object) -> None:
    """Refuse a model package of another task than the command's, naming the command that runs it."""
    task = card.get("task", DEFAULT_TASK)
    if task != wanted:
        theirs, mine = TASKS.get(task), get_task(wanted)
        runner = f"Use `terralearn {theirs.command}` with it" if theirs else "Train a model of this task"
        raise PackageError(
            f"'{source}' holds a model for {theirs.words if theirs else task}; `terralearn {mine.command}` needs "
            f"one for {mine.words}.",
            f"{runner}, or give a {mine.words} package here.",
        )
