"""The run registry: every training run, two runs compared, an interrupted run resumed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query

from terralearn.errors import TerraLearnError
from terralearn.io.runfiles import REPORT_PAGE, report_dir
from terralearn.runs import Registry, compare_runs
from terralearn.web import jobs
from terralearn.web.routes import Files, Id, QueryId
from terralearn.web.routes.jobs import JobStarted
from terralearn.web.workspace import WorkspaceFiles

router = APIRouter(tags=["runs"])


@router.get("/api/runs")
def runs(files: Files, sort: Annotated[str, Query(max_length=40)] = "id", descending: bool = True) -> dict:
    """The run registry."""
    rows = Registry(files.root).runs(sort, descending)
    for r in rows:
        report = report_dir(files.root, r["id"]) / REPORT_PAGE
        r["report"] = files.relative(report) if report.exists() else None
        r["package_path"] = _inside(files, r.get("package"))
        r["config"] = None
        r["per_class_iou"] = _json_list(r.get("per_class_iou"))
    return {"runs": rows}


@router.get("/api/runs/compare")
def compare(a: QueryId, b: QueryId, files: Files) -> dict:
    """Two runs side by side with the difference of their scores."""
    registry = Registry(files.root)
    ra, rb = (dict(r, per_class_iou=_json_list(r.get("per_class_iou"))) for r in (registry.run(a), registry.run(b)))
    return {"a": a, "b": b, "rows": compare_runs(ra, rb)}


@router.post("/api/runs/{run_id}/resume", status_code=202, response_model=JobStarted)
def resume(run_id: Id, files: Files):
    """Continue an interrupted training run from its last checkpoint, as a job."""
    return {"id": jobs.resume_training(files.root, run_id)}


def _json_list(value):
    """Per-class figures are stored as JSON text in the registry; the API gives them as lists."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _inside(files: WorkspaceFiles, path: str | None) -> str | None:
    if not path:
        return None
    try:
        return files.relative(Path(path))
    except (ValueError, TerraLearnError):
        return None
