"""The no-code web app: pages for each step of the workflow and the JSON API they call.

Thin by design: every request parses its input, calls a stage function, the job runner or the
io layer, and renders the result. Nothing here knows about geodata beyond what those return.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from terralearn import __version__
from terralearn.errors import (
    ChecksFailedError,
    InputFileError,
    TerraLearnError,
    UploadTooLargeError,
    WorkspacePathError,
)
from terralearn.runs import Registry, compare_runs
from terralearn.web import forms, jobs, render
from terralearn.web import inspect as inspect_io
from terralearn.web.security import CSRF_HEADER, Guard, install
from terralearn.web.workspace import WorkspaceFiles

HERE = Path(__file__).parent
SAMPLE_IMAGE = "sample_scene.tif"
MB = 1024 * 1024
#: The steps of the workflow, in order: (path, title, one-line purpose).
STEPS = [
    ("data", "Data", "Bring rasters and labels into the workspace and look at them."),
    ("check", "Check", "Find problems with the inputs before anything long starts."),
    ("export", "Export", "Cut training chips with an honest train/validation split."),
    ("train", "Train", "Train a model on the chips and watch it learn."),
    ("runs", "Runs", "Every training run, side by side."),
    ("classify", "Classify", "Turn a whole raster into a land-cover map."),
    ("evaluate", "Evaluate", "Measure the map's accuracy against reference data."),
]
Stage = Literal["check", "export", "train", "classify", "evaluate"]
JobStage = Literal["export", "train", "classify", "evaluate"]
#: Record numbers (jobs, runs): positive and small enough for SQLite.
Id = Annotated[int, PathParam(ge=1, le=2**53, description="Record number")]
QueryId = Annotated[int, Query(ge=1, le=2**53, description="Run number")]
TileIndex = Annotated[int, PathParam(ge=-(2**31), le=2**31)]


class FormValues(BaseModel):
    values: dict[str, Any] = Field(default_factory=dict, description="Setting name -> value, as the form holds it.")


class JobStarted(BaseModel):
    id: int


def create_app(workspace: Path | str, *, host: str = "127.0.0.1", token: str | None = None,
               max_upload_mb: int = 2048) -> FastAPI:  # fmt: skip
    """The app for one workspace. ``token`` is required when ``host`` is not a loopback address."""
    files = WorkspaceFiles(Path(workspace))
    root = files.root
    store = jobs.JobStore(root)
    guard = Guard(host=host, token=token)
    if not guard.loopback_only and not token:
        raise TerraLearnError(f"Listening on '{host}' without an access token is refused.",
                              "Pass a token (terralearn ui --allow-remote makes one).")  # fmt: skip

    @asynccontextmanager
    async def lifespan(_app):
        store.recover()
        yield

    # no /docs or /redoc: FastAPI serves those from a CDN; the schema itself is at /openapi.json
    app = FastAPI(title="TerraLearn", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Local no-code app: check, export, train, classify, evaluate.")  # fmt: skip
    app.state.files, app.state.guard, app.state.store = files, guard, store
    app.state.checked = False  # a check without errors was run (ticks the Check step)
    install(app, guard)
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.mount("/vendor/leaflet", StaticFiles(directory=_leaflet_dir()), name="leaflet")

    # ------------------------------------------------------------------------------------------ errors

    @app.exception_handler(TerraLearnError)
    async def _terralearn_error(request: Request, exc: TerraLearnError):
        status = exc.http_status
        body = {"error": exc.message, "fix": exc.fix}
        if isinstance(exc, ChecksFailedError):
            body["findings"] = [f.as_dict() for f in exc.findings]
        return JSONResponse(body, status_code=status)

    # ------------------------------------------------------------------------------------------- pages

    def page(request: Request, step: str) -> HTMLResponse:
        titles = {s: t for s, t, _ in STEPS}
        return templates.TemplateResponse(
            request, "page.html",
            {"steps": STEPS, "step": step, "title": titles.get(step, step.title()), "csrf": guard.csrf,
             "csrf_header": CSRF_HEADER, "workspace": str(root), "version": __version__,
             "purpose": next((p for s, _, p in STEPS if s == step), "")},
        )  # fmt: skip

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/data", status_code=303)

    def step_page(step: str):
        def show(request: Request) -> HTMLResponse:
            return page(request, step)

        return show

    for step, _title, _purpose in STEPS:
        app.add_api_route(f"/{step}", step_page(step), methods=["GET"], include_in_schema=False,
                          response_class=HTMLResponse)  # fmt: skip

    @app.get("/jobs/{job_id}", include_in_schema=False, response_class=HTMLResponse)
    def job_page(request: Request, job_id: Id):
        return page(request, "job")

    @app.get("/files/{path:path}", include_in_schema=False)
    def workspace_file(path: str):
        """A workspace file shown in the browser (reports, pictures), sandboxed."""
        target = files.resolve(path)
        if target.is_dir():
            raise WorkspacePathError(f"'{path}' is a folder.", "Open a file inside it from the Data page.")
        return FileResponse(target)

    # --------------------------------------------------------------------------------------- workspace

    @app.get("/api/status", tags=["workspace"])
    def status() -> dict:
        """The workspace, the version and the jobs still running."""
        jobs.reap()
        finished = {j["kind"] for j in store.list(200) if j["status"] == "finished"}
        registry = Registry(root)
        runs = registry.runs()
        runs_done = any(r["status"] in ("finished", "stopped_early") for r in runs)
        exported = bool(registry.chipsets())
        done = {  # also what was done on the command line (e.g. by `terralearn demo`) in this workspace
            "data": bool(files.find({"raster"}, limit=1)),
            "check": exported or app.state.checked,
            "export": exported,
            "train": runs_done,
            "runs": runs_done,
            "classify": "classify" in finished or bool(files.find({"map"}, limit=1)),
            "evaluate": "evaluate" in finished or any(r.get("eval_accuracy") is not None for r in runs),
        }
        return {"workspace": str(root), "version": __version__, "active_jobs": len(store.active()), "done": done}

    @app.get("/api/files", tags=["workspace"])
    def list_files(path: Annotated[str, Query(max_length=1024)] = "") -> dict:
        """The files and folders of one workspace folder."""
        folder = files.resolve(path)
        if not folder.is_dir():
            raise WorkspacePathError(f"'{path}' is not a folder.", "Give a folder of the workspace.")
        parent = None if folder == root else files.relative(folder.parent)
        return {"path": files.relative(folder), "parent": parent, "entries": files.listdir(path)}

    @app.get("/api/find", tags=["workspace"])
    def find(kinds: Annotated[str, Query(max_length=200, description="Comma-separated kinds")] = "raster") -> dict:
        """Workspace items of the given kinds (for the pickers), newest first."""
        wanted = {k.strip() for k in kinds.split(",") if k.strip()}
        items = files.find(wanted)
        folders = {i["path"] for i in items if i["kind"] == "package" and i.get("is_dir")}
        # a package folder and the zip written next to it are one model: offer the folder
        return {"items": [i for i in items if not (i["path"].endswith(".zip") and i["path"][:-4] in folders)]}

    @app.get("/api/describe", tags=["workspace"])
    def describe(path: Annotated[str, Query(max_length=1024)]) -> dict:
        """A dataset's summary: bands, CRS, pixel size, extent, fields of a vector layer."""
        target = files.resolve(path)
        return {"path": files.relative(target), "kind": files.kind_of(target), **_describe(target)}

    @app.get("/api/quicklook", tags=["workspace"], response_class=Response)
    def quicklook(path: Annotated[str, Query(max_length=1024)], size: Annotated[int, Query(ge=64, le=2048)] = 640):
        """A quick-look PNG of a raster, a map or a vector layer."""
        target = files.resolve(path)
        return Response(_render(render.quicklook_png, target, max_size=size), media_type="image/png")

    @app.get("/api/pyramid", tags=["map"])
    def pyramid(path: Annotated[str, Query(max_length=1024)]) -> dict:
        """Size and zoom levels of a raster for the map viewer, and its legend when it is a classified map."""
        target = files.resolve(path)
        info = _render(render.raster_pyramid, target)
        kind = files.kind_of(target)
        return {**info, "kind": kind, "legend": _render(render.legend, target) if kind == "map" else []}

    @app.get("/api/tiles/{z}/{x}/{y}.png", tags=["map"], response_class=Response)
    def tile(
        z: Annotated[int, PathParam(ge=0, le=30)],
        x: TileIndex,
        y: TileIndex,
        path: Annotated[str, Query(max_length=1024)],
    ):
        """One 256x256 tile of a raster in its own pixel grid (transparent outside it)."""
        target = files.resolve(path)
        data = _render(render.tile_png, target, z, x, y)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    @app.get("/api/download", tags=["workspace"])
    def download(path: Annotated[str, Query(max_length=1024)]):
        """Download a workspace file (maps, styles, reports)."""
        target = files.resolve(path)
        if not target.is_file():
            raise WorkspacePathError(f"'{path}' is not a file.", "Pick a file, not a folder.")
        return FileResponse(target, filename=target.name, content_disposition_type="attachment")

    @app.post("/api/upload", tags=["workspace"])
    async def upload(request: Request, file: UploadFile = File(...), folder: str = Form("uploads", max_length=200)):
        """Upload a GeoTIFF, a GeoPackage, a GeoJSON or a zipped shapefile into the workspace."""
        limit = max_upload_mb * MB
        size = int(request.headers.get("content-length") or 0)
        if size > limit + MB:
            raise UploadTooLargeError(f"The upload is too large ({size / MB:,.0f} MB; the limit is {max_upload_mb} MB).",
                              "Copy large files into the workspace folder directly; they appear on the Data page.")  # fmt: skip
        # save_upload resolves the folder inside the workspace (and refuses one outside it)
        saved = files.save_upload(file.file, file.filename or "upload", subdir=folder.strip("/") or "uploads",
                                  max_bytes=limit)  # fmt: skip
        return {"path": files.relative(saved), "kind": files.kind_of(saved)}

    @app.post("/api/sample", tags=["workspace"])
    def sample() -> dict:
        """Write the built-in sample scene (6-band image and land-cover polygons) into the workspace."""
        from terralearn.sample import make_sample

        out = root / "sample"
        if not (out / SAMPLE_IMAGE).exists():
            make_sample(out)
        return {"path": files.relative(out), "items": files.listdir("sample")}

    # --------------------------------------------------------------------------------------- forms

    @app.get("/api/forms/{stage}", tags=["stages"])
    def form(stage: Stage) -> dict:
        """Every setting of a stage: widget, help text, default, choices, bounds; and a free output name."""
        out = forms.suggest_output(stage, files) if stage in forms.OUTPUTS else None
        return {"stage": stage, "fields": forms.form_spec(stage), "output": out}

    @app.post("/api/validate/{stage}", tags=["stages"])
    def validate(stage: Stage, body: FormValues = Body(...)) -> dict:
        """Check a form's values; per-field messages for inline display."""
        config, errors, _ = forms.parse(stage, body.values, files)
        return {"ok": config is not None, "errors": errors}

    @app.post("/api/check", tags=["stages"])
    def check(body: FormValues = Body(...)):
        """The pre-flight findings for an export's inputs, with their fixes."""
        from terralearn.checks import run_checks

        config, errors, extras = forms.parse("check", body.values, files)
        if config is None:
            return JSONResponse({"error": "Some settings are not valid.", "errors": errors}, status_code=422)
        report = run_checks(config, **extras)
        app.state.checked = app.state.checked or report.ok
        return {"ok": report.ok, **report.as_dict()}

    # ----------------------------------------------------------------------------------------- jobs

    @app.post("/api/jobs/{stage}", tags=["jobs"], status_code=202, response_model=JobStarted)
    def start(stage: JobStage, body: FormValues = Body(...)):
        """Validate a stage's settings and start it as a background job."""
        config, errors, _ = forms.parse(stage, body.values, files)
        if config is None:
            return JSONResponse({"error": "Some settings are not valid.", "errors": errors}, status_code=422)
        out = getattr(config, "out", None)
        if out is not None and Path(out).exists() and not getattr(config, "overwrite", False):
            name = files.relative(Path(out))
            return JSONResponse({"error": f"'{name}' already exists.",
                                 "errors": {"out": f"'{name}' already exists: choose another name or tick overwrite."}},
                                status_code=422)  # fmt: skip
        return {"id": jobs.start_job(root, stage, config)}

    @app.get("/api/jobs", tags=["jobs"])
    def list_jobs(kind: Annotated[str | None, Query(max_length=20)] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:  # fmt: skip
        """The latest jobs, newest first (without their logs)."""
        jobs.reap()
        rows = store.list(limit, kind)
        return {"jobs": [{k: v for k, v in j.items() if k != "log"} for j in rows]}

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: Id) -> dict:
        """One job: status, progress, log, outputs."""
        jobs.reap()
        return store.get(job_id)

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel(job_id: Id) -> dict:
        """Stop a job. Training keeps the best model so far; nothing half-written is left."""
        return jobs.cancel_job(root, job_id)

    # ----------------------------------------------------------------------------------------- runs

    @app.get("/api/runs", tags=["runs"])
    def runs(sort: Annotated[str, Query(max_length=40)] = "id", descending: bool = True) -> dict:
        """The run registry."""
        rows = Registry(root).runs(sort, descending)
        for r in rows:
            report = root / "runs" / f"run-{r['id']:04d}" / "report" / "report.html"
            r["report"] = files.relative(report) if report.exists() else None
            r["package_path"] = _inside(files, r.get("package"))
            r["config"] = None
            r["per_class_iou"] = _json_list(r.get("per_class_iou"))
        return {"runs": rows}

    @app.get("/api/runs/compare", tags=["runs"])
    def compare(a: QueryId, b: QueryId) -> dict:
        """Two runs side by side with the difference of their scores."""
        registry = Registry(root)
        ra, rb = (dict(r, per_class_iou=_json_list(r.get("per_class_iou"))) for r in (registry.run(a), registry.run(b)))
        return {"a": a, "b": b, "rows": compare_runs(ra, rb)}

    @app.post("/api/runs/{run_id}/resume", tags=["runs"], status_code=202, response_model=JobStarted)
    def resume(run_id: Id):
        """Continue an interrupted training run from its last checkpoint, as a job."""
        return {"id": jobs.resume_training(root, run_id)}

    return app


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


def _describe(target: Path) -> dict:
    try:
        return inspect_io.describe(target)
    except TerraLearnError:
        raise
    except Exception as exc:  # a file GDAL or OGR cannot read: say so, do not crash
        raise InputFileError(f"Cannot read '{target.name}': {exc}", "Check that the file is complete.") from None


def _render(fn, target: Path, *args, **kwargs):
    try:
        return fn(target, *args, **kwargs)
    except TerraLearnError:
        raise
    except Exception as exc:
        raise InputFileError(f"Cannot draw '{target.name}': {exc}", "Pick a raster, a map or a vector layer.") from None


def _leaflet_dir() -> Path:
    from xstatic.pkg import leaflet

    return Path(leaflet.BASE_DIR)
