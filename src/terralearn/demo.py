"""The main job on the built-in sample: every stage of the workflow, one after the other.

Sample scene -> pre-flight checks -> chip export -> training (the default: model selection by
cross-validation among the random forest and small CNNs) -> training report -> classification of the whole scene -> evaluation of the map
against the full truth map (the sample's only: real users evaluate against held-out polygons).

When the selection ships a network, the demo also trains, maps and evaluates the random forest on the same
chips, so that it can show class by class where the network helps and where it does not (the sample's
town is told by its pattern of streets and lots, which a per-pixel model cannot see).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from terralearn.checks import Finding
from terralearn.config import ClassifyConfig, DemoConfig, EvaluateConfig, ExportConfig, TrainConfig
from terralearn.evaluate import EvalResult, evaluate
from terralearn.export import ExportResult, export
from terralearn.predict import ClassifyResult, classify
from terralearn.sample import SampleScene, make_sample
from terralearn.train import TrainResult, train

DEMO_TILE = 64
DEMO_STRIDE = 32
#: Two folds of polygons, and the forest against one small CNN (the one that keeps sharp edges): the demo stays
#: short, and its fixed steps (DemoConfig.steps) give the same model on a slow laptop as on a fast server.
DEMO_FOLDS = 2
DEMO_CANDIDATES = ["random_forest", "cnn_s"]


@dataclass
class DemoResult:
    folder: Path
    scene: SampleScene
    findings: list[Finding]
    export: ExportResult
    train: TrainResult | None = None
    classify: ClassifyResult | None = None
    evaluate: EvalResult | None = None
    forest: TrainResult | None = None  # the forest on the same chips, when a network was shipped
    forest_evaluate: EvalResult | None = None


def compare_maps(chosen: dict, forest: dict) -> list[dict]:
    """Per class (best gain first): IoU of the shipped map, of the forest's map, and the difference (pure)."""
    rows = []
    for a, b in zip(chosen["per_class"], forest["per_class"], strict=True):
        if a["support"] == 0 or a["iou"] is None or b["iou"] is None:
            continue
        rows.append({"name": a["name"], "iou": a["iou"], "forest_iou": b["iou"], "gain": a["iou"] - b["iou"]})
    return sorted(rows, key=lambda r: -r["gain"])


def run_demo(config: DemoConfig, progress=None, on_epoch=None) -> DemoResult:
    """Sample scene, checks, chips, a trained model and its report, in ``config.folder`` (replacing earlier demo
    output), recorded in the workspace's run table."""
    folder, seed, workspace = Path(config.folder), config.seed, config.workspace
    model, epochs, steps, time_budget = config.model, config.epochs, config.steps, config.time_budget
    scene = make_sample(folder / "sample", seed=seed)
    chips = ExportConfig.build(
        rasters=[scene.raster], labels=scene.labels, class_field=scene.class_field,
        class_name_field=scene.class_name_field, tile_size_x=DEMO_TILE, tile_size_y=DEMO_TILE,
        stride_x=DEMO_STRIDE, stride_y=DEMO_STRIDE, out=folder / "chips", overwrite=True, seed=seed,
        workspace=workspace,
    )  # fmt: skip
    result = export(chips, progress=progress)  # runs the pre-flight checks first, records the chip set
    trained = train(
        TrainConfig.build(chips=chips.out, out=folder / "model", model=model, epochs=epochs, seed=seed,
                          time_budget=time_budget, cv_folds=DEMO_FOLDS, candidates=DEMO_CANDIDATES, steps=steps,
                          overwrite=True, name=f"demo {model}",
                          workspace=workspace),
        on_epoch=on_epoch,
    )  # fmt: skip
    mapped = classify(ClassifyConfig.build(model=trained.package, rasters=[scene.raster], out=folder / "map.tif",
                                           overwrite=True), progress=progress)  # fmt: skip
    assessed = evaluate(
        EvaluateConfig.build(prediction=mapped.out, reference=scene.truth, out=folder / "evaluation",
                             image=[scene.raster], rgb_bands=[5, 4, 3], overwrite=True, workspace=workspace),
    )  # fmt: skip
    done = DemoResult(folder, scene, result.findings, result, trained, mapped, assessed)
    if trained.card["architecture"] != "random_forest":  # the model shipped, chosen or asked for
        done.forest = train(
            TrainConfig.build(chips=chips.out, out=folder / "model_forest", model="random_forest", seed=seed,
                              overwrite=True, name="demo random_forest (comparison)", workspace=workspace),
        )  # fmt: skip
        forest_map = classify(ClassifyConfig.build(model=done.forest.package, rasters=[scene.raster],
                                                   out=folder / "map_forest.tif", overwrite=True))  # fmt: skip
        done.forest_evaluate = evaluate(
            EvaluateConfig.build(prediction=forest_map.out, reference=scene.truth, out=folder / "evaluation_forest",
                                 overwrite=True, workspace=workspace),
        )  # fmt: skip
    return done
