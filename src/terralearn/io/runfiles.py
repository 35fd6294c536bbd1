"""A run's folder in the workspace: its saved settings, its summary and its validation samples.

``<workspace>/runs/run-0001/`` holds ``config.json`` (the settings, read back to resume), ``summary.json``
(everything the report shows), ``samples.safetensors`` (a few validation chips with label and prediction), the
checkpoint (:mod:`terralearn.io.checkpoint`) and ``report/``. Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from terralearn.io.atomic import atomic_file, write_text_atomic

if TYPE_CHECKING:  # numpy and safetensors load only where samples are read or written (not for run paths)
    import numpy as np

REPORT_PAGE = "report.html"
SETTINGS = "config.json"
SUMMARY = "summary.json"
SAMPLES = "samples.safetensors"


def run_dir(root: Path, run_id: int) -> Path:
    """The folder of run ``run_id`` in the workspace ``root`` (not created)."""
    return Path(root) / "runs" / f"run-{run_id:04d}"


def report_dir(root: Path, run_id: int) -> Path:
    """The folder of run ``run_id``'s report (its HTML page ``REPORT_PAGE`` and PNGs)."""
    return run_dir(root, run_id) / "report"


def make_run_dir(root: Path, run_id: int) -> Path:
    """The folder of run ``run_id``, created if needed."""
    folder = run_dir(root, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_settings(folder: Path, settings: dict) -> None:
    write_text_atomic(Path(folder) / SETTINGS, json.dumps(settings, indent=2))


def load_settings(folder: Path) -> dict | None:
    """The saved settings of a run; None if it has none."""
    path = Path(folder) / SETTINGS
    return json.loads(path.read_text()) if path.exists() else None


def save_summary(folder: Path, summary: dict) -> None:
    write_text_atomic(Path(folder) / SUMMARY, json.dumps(summary, indent=2, default=str))


def load_summary(folder: Path) -> dict | None:
    """The summary of a run; None until the run has results."""
    path = Path(folder) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else None


def save_samples(folder: Path, samples: dict[str, np.ndarray]) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    if not samples:
        return
    with atomic_file(Path(folder) / SAMPLES) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in samples.items()}, str(tmp))


def load_samples(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(folder) / SAMPLES
    return load_file(str(path)) if path.exists() else {}


def package_size_mb(package: Path) -> float:
    """The size of a package's weights file, in MiB (recorded in the run table)."""
    return round((Path(package) / "model.safetensors").stat().st_size / 2**20, 3)
