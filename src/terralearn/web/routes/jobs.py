"""Background jobs: start a stage, list and follow jobs, cancel one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from terralearn.web import forms, jobs
from terralearn.web.routes import Files, FormValues, Id, Store, invalid

JobStage = Literal["export", "train", "classify", "evaluate", "detect", "evaluate_detections"]

router = APIRouter(tags=["jobs"])


class JobStarted(BaseModel):
    id: int


@router.post("/api/jobs/{stage}", status_code=202, response_model=JobStarted)
def start(stage: JobStage, files: Files, body: FormValues = Body(...)):
    """Validate a stage's settings and start it as a background job."""
    config, errors = forms.parse(stage, body.values, files)
    if config is None:
        return invalid(errors)
    out = getattr(config, "out", None)
    if out is not None and Path(out).exists() and not getattr(config, "overwrite", False):
        name = files.relative(Path(out))
        return JSONResponse({"error": f"'{name}' already exists.",
                             "errors": {"out": f"'{name}' already exists: choose another name or tick overwrite."}},
                            status_code=422)  # fmt: skip
    return {"id": jobs.start_job(files.root, stage, config)}


@router.get("/api/jobs")
def list_jobs(store: Store, kind: Annotated[str | None, Query(max_length=20)] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:  # fmt: skip
    """The latest jobs, newest first (without their logs)."""
    jobs.reap()
    rows = store.list(limit, kind)
    return {"jobs": [{k: v for k, v in j.items() if k != "log"} for j in rows]}


@router.get("/api/jobs/{job_id}")
def get_job(job_id: Id, store: Store) -> dict:
    """One job: status, progress, log, outputs."""
    jobs.reap()
    return store.get(job_id)


@router.post("/api/jobs/{job_id}/cancel")
def cancel(job_id: Id, files: Files) -> dict:
    """Stop a job. Training keeps the best model so far; nothing half-written is left."""
    return jobs.cancel_job(files.root, job_id)
