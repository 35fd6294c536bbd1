"""The main job on the built-in sample: every stage of the workflow, one after the other.

For now: sample scene -> pre-flight checks -> chip export. Later stages (train, classify,
evaluate, report) are added here as they land, so `terralearn demo` always runs the whole
workflow that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from terralearn.checks import Finding
from terralearn.config import ExportConfig
from terralearn.export import ExportResult, export
from terralearn.sample import SampleScene, make_sample

DEMO_TILE = 64
DEMO_STRIDE = 32


@dataclass
class DemoResult:
    folder: Path
    scene: SampleScene
    findings: list[Finding]
    export: ExportResult


def run_demo(folder: Path, seed: int = 42, progress=None) -> DemoResult:
    """Write the sample scene into ``folder``, check it and export chips from it (replacing earlier demo output)."""
    folder = Path(folder)
    scene = make_sample(folder / "sample", seed=seed)
    config = ExportConfig.build(
        rasters=[scene.raster], labels=scene.labels, class_field=scene.class_field,
        class_name_field=scene.class_name_field, tile_size_x=DEMO_TILE, tile_size_y=DEMO_TILE,
        stride_x=DEMO_STRIDE, stride_y=DEMO_STRIDE, out=folder / "chips", overwrite=True, seed=seed,
    )  # fmt: skip
    result = export(config, progress=progress)  # runs the pre-flight checks first
    return DemoResult(folder, scene, result.findings, result)
