"""The main job on the built-in sample: every stage of the workflow, one after the other.

Sample scene -> pre-flight checks -> chip export -> training (U-Net with the random-forest
baseline) -> report. Later stages (classify, evaluate) are added here as they land, so
`terralearn demo` always runs the whole workflow that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from terralearn.checks import Finding
from terralearn.config import ExportConfig, TrainConfig
from terralearn.export import ExportResult, export
from terralearn.sample import SampleScene, make_sample
from terralearn.train import TrainResult, train

DEMO_TILE = 64
DEMO_STRIDE = 32
DEMO_EPOCHS = 15


@dataclass
class DemoResult:
    folder: Path
    scene: SampleScene
    findings: list[Finding]
    export: ExportResult
    train: TrainResult | None = None


def run_demo(
    folder: Path, seed: int = 42, progress=None, workspace=None, on_epoch=None, epochs=DEMO_EPOCHS
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
        TrainConfig.build(chips=config.out, out=folder / "model", epochs=epochs, seed=seed, overwrite=True,
                          name="demo unet-resnet18"),
        workspace=workspace, on_epoch=on_epoch,
    )  # fmt: skip
    return DemoResult(folder, scene, result.findings, result, trained)
