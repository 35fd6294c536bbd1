"""The main job on the built-in sample: every stage of the workflow, one after the other.

Sample scene -> pre-flight checks -> chip export -> training (the default: model selection by
cross-validation among the random forest and small CNNs) -> training report -> classification of the whole scene -> evaluation of the map
against the full truth map (the sample's only: real users evaluate against held-out polygons).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from terralearn.checks import Finding
from terralearn.classify import ClassifyResult, classify
from terralearn.config import ClassifyConfig, EvaluateConfig, ExportConfig, TrainConfig
from terralearn.evaluate import EvalResult, evaluate
from terralearn.export import ExportResult, export
from terralearn.sample import SampleScene, make_sample
from terralearn.train import TrainResult, train

DEMO_TILE = 64
DEMO_STRIDE = 32
DEMO_EPOCHS = 15
#: The default model selection, kept short so that the main job finishes in a few minutes on 2 cores.
DEMO_TIME_BUDGET = 100.0
#: Two folds of polygons: a network fits in the short budget beside the forest.
DEMO_FOLDS = 2


@dataclass
class DemoResult:
    folder: Path
    scene: SampleScene
    findings: list[Finding]
    export: ExportResult
    train: TrainResult | None = None
    classify: ClassifyResult | None = None
    evaluate: EvalResult | None = None


def run_demo(
    folder: Path,
    seed: int = 42,
    progress=None,
    workspace=None,
    on_epoch=None,
    epochs=DEMO_EPOCHS,
    time_budget: float = DEMO_TIME_BUDGET,
    model: str = "auto",
) -> DemoResult:
    """Sample scene, checks, chips, a trained model and its report, in ``folder`` (replacing earlier demo output)."""
    folder = Path(folder)
    scene = make_sample(folder / "sample", seed=seed)
    config = ExportConfig.build(
        rasters=[scene.raster], labels=scene.labels, class_field=scene.class_field,
        class_name_field=scene.class_name_field, tile_size_x=DEMO_TILE, tile_size_y=DEMO_TILE,
        stride_x=DEMO_STRIDE, stride_y=DEMO_STRIDE, out=folder / "chips", overwrite=True, seed=seed,
    )  # fmt: skip
    result = export(config, progress=progress)  # runs the pre-flight checks first
    trained = train(
        TrainConfig.build(chips=config.out, out=folder / "model", model=model, epochs=epochs, seed=seed,
                          time_budget=time_budget, cv_folds=DEMO_FOLDS, overwrite=True, name=f"demo {model}"),
        workspace=workspace, on_epoch=on_epoch,
    )  # fmt: skip
    mapped = classify(ClassifyConfig.build(model=trained.package, rasters=[scene.raster], out=folder / "map.tif",
                                           overwrite=True), progress=progress)  # fmt: skip
    assessed = evaluate(
        EvaluateConfig.build(prediction=mapped.out, reference=scene.truth, out=folder / "evaluation",
                             image=[scene.raster], rgb_bands=[5, 4, 3], overwrite=True),
        workspace=workspace,
    )  # fmt: skip
    return DemoResult(folder, scene, result.findings, result, trained, mapped, assessed)
