"""The workflow's pages (one per step, and one per job) and its progress, which ticks the steps."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from terralearn import __version__
from terralearn.runs import Registry
from terralearn.web import jobs
from terralearn.web.routes import Files, Id, Store
from terralearn.web.security import CSRF_HEADER

#: The steps of the workflow, in order: (path, title, one-line purpose).
STEPS = [
    ("data", "Data", "Bring rasters and labels into the workspace and look at them."),
    ("check", "Check", "Find problems with the inputs before anything long starts."),
    ("export", "Export", "Cut training chips with an honest train/validation split."),
    ("train", "Train", "Train a model on the chips and watch it learn."),
    ("runs", "Runs", "Every training run, side by side."),
    ("classify", "Classify", "Turn a whole raster into a land-cover map."),
    ("detect", "Detect", "Find objects in a whole raster: one box per object, in a GeoPackage."),
    ("evaluate", "Evaluate", "Measure the map's accuracy against reference data."),
]

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")


def page(request: Request, step: str) -> HTMLResponse:
    titles = {s: t for s, t, _ in STEPS}
    state = request.app.state
    return templates.TemplateResponse(
        request, "page.html",
        {"steps": STEPS, "step": step, "title": titles.get(step, step.title()), "csrf": state.guard.csrf,
         "csrf_header": CSRF_HEADER, "workspace": str(state.files.root), "version": __version__,
         "purpose": next((p for s, _, p in STEPS if s == step), "")},
    )  # fmt: skip


@router.get("/", include_in_schema=False)
def home():
    return RedirectResponse("/data", status_code=303)


def step_page(step: str):
    def show(request: Request) -> HTMLResponse:
        return page(request, step)

    return show


for step, _title, _purpose in STEPS:
    router.add_api_route(f"/{step}", step_page(step), methods=["GET"], include_in_schema=False,
                         response_class=HTMLResponse)  # fmt: skip


@router.get("/jobs/{job_id}", include_in_schema=False, response_class=HTMLResponse)
def job_page(request: Request, job_id: Id):
    return page(request, "job")


@router.get("/api/status", tags=["workspace"])
def status(request: Request, files: Files, store: Store) -> dict:
    """The workspace, the version and the jobs still running."""
    jobs.reap()
    root = files.root
    finished = {j["kind"] for j in store.list(200) if j["status"] == "finished"}
    registry = Registry(root)
    runs = registry.runs()
    runs_done = any(r["status"] in ("finished", "stopped_early") for r in runs)
    exported = bool(registry.chipsets())
    done = {  # also what was done on the command line (e.g. by `terralearn demo`) in this workspace
        "data": bool(files.find({"raster"}, limit=1)),
        "check": exported or request.app.state.checked,
        "export": exported,
        "train": runs_done,
        "runs": runs_done,
        "classify": "classify" in finished or bool(files.find({"map"}, limit=1)),
        "detect": "detect" in finished,
        "evaluate": bool({"evaluate", "evaluate_detections"} & finished)
        or any(r.get("eval_accuracy") is not None for r in runs),
    }
    return {"workspace": str(root), "version": __version__, "active_jobs": len(store.active()), "done": done}
