"""Model review: the report of a recorded run, rebuilt from its run folder at any time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from terralearn.errors import RunError
from terralearn.geo.bands import named_rgb
from terralearn.io.checkpoint import load_samples
from terralearn.runs import Registry
from terralearn.train.report import write_training_report


def rgb_indices(band_names: list[str]) -> list[int]:
    """Bands to show as red, green, blue: named ones if present, else the first three (or one band as grey)."""
    named = named_rgb(band_names)
    if named is not None:
        return named
    return [0, 1, 2] if len(band_names) >= 3 else [0, 0, 0]


def stretch(rgb: np.ndarray) -> np.ndarray:
    """A per-band 2-98 % linear stretch to uint8, as GIS software shows multispectral data."""
    out = np.empty(rgb.shape, dtype=np.uint8)
    for b in range(rgb.shape[-1]):
        band = np.nan_to_num(rgb[..., b].astype(np.float64))
        lo, hi = np.percentile(band, [2, 98])
        out[..., b] = np.clip((band - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    return out


def report_samples(samples: dict, band_names: list[str]) -> list[dict]:
    if not samples:
        return []
    idx = rgb_indices(band_names)
    out = []
    for i in range(len(samples["image"])):
        out.append({
            "chip": f"chip {int(samples['chip_ids'][i])}",
            "image_rgb": stretch(np.moveaxis(samples["image"][i][idx], 0, -1)),
            "label": samples["label"][i],
            "prediction": samples["prediction"][i],
        })  # fmt: skip
    return out


def write_run_report(run_id: int, out_dir: Path | None = None, workspace=None) -> Path:
    """Write the HTML report (and its PNGs) of run ``run_id``; default into the run folder."""
    registry = Registry(workspace)
    run = registry.run(run_id)
    run_dir = registry.root / "runs" / f"run-{run_id:04d}"
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise RunError(f"Run {run_id} ({run['status']}) has no results to report yet.",
                       f"Let it finish, or resume it with `terralearn train --resume {run_id}`.")  # fmt: skip
    summary = json.loads(summary_path.read_text())
    summary["status"] = run["status"]
    samples = report_samples(load_samples(run_dir), summary.get("bands", []))
    return write_training_report(summary, Path(out_dir) if out_dir else run_dir / "report", samples)
