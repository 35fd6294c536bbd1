"""The stages' forms: every setting with its help, inline validation, and the pre-flight check."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Request

from terralearn.web import forms
from terralearn.web.routes import Files, FormValues, invalid

Stage = Literal["check", "export", "train", "classify", "evaluate", "detect", "evaluate_detections"]

router = APIRouter(tags=["stages"])


@router.get("/api/forms/{stage}")
def form(stage: Stage, files: Files) -> dict:
    """Every setting of a stage: widget, help text, default, choices, bounds; and a free output name."""
    out = forms.suggest_output(stage, files) if stage in forms.OUTPUTS else None
    return {"stage": stage, "fields": forms.form_spec(stage), "output": out}


@router.post("/api/validate/{stage}")
def validate(stage: Stage, files: Files, body: FormValues = Body(...)) -> dict:
    """Check a form's values; per-field messages for inline display."""
    config, errors = forms.parse(stage, body.values, files)
    return {"ok": config is not None, "errors": errors}


@router.post("/api/check")
def check(request: Request, files: Files, body: FormValues = Body(...)):
    """The pre-flight findings for an export's inputs, with their fixes."""
    from terralearn.checks import run_checks

    config, errors = forms.parse("check", body.values, files)
    if config is None:
        return invalid(errors)
    report = run_checks(config)
    request.app.state.checked = request.app.state.checked or report.ok
    return {"ok": report.ok, **report.as_dict()}
