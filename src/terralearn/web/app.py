"""The no-code web app: pages for each step of the workflow and the JSON API they call.

Thin by design: every request parses its input, calls a stage function, the job runner or the
io layer, and renders the result. Nothing here knows about geodata beyond what those return.
``create_app`` only assembles the app; the routes live in ``web/routes/``, one module per part.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from terralearn import __version__
from terralearn.errors import ChecksFailedError, TerraLearnError
from terralearn.web.jobs import JobStore
from terralearn.web.routes import files, jobs, pages, runs, stages, views
from terralearn.web.security import Guard, install
from terralearn.web.workspace import WorkspaceFiles

HERE = Path(__file__).parent
ROUTERS = (pages.router, files.router, views.router, stages.router, jobs.router, runs.router)


def create_app(workspace: Path | str, *, host: str = "127.0.0.1", token: str | None = None,
               max_upload_mb: int = 2048) -> FastAPI:  # fmt: skip
    """The app for one workspace. ``token`` is required when ``host`` is not a loopback address."""
    workspace_files = WorkspaceFiles(Path(workspace))
    store = JobStore(workspace_files.root)
    guard = Guard(host=host, token=token)
    if not guard.loopback_only and not token:
        raise TerraLearnError(f"Listening on '{host}' without an access token is refused.",
                              "Pass a token (terralearn ui --allow-remote makes one).")  # fmt: skip
    # no /docs or /redoc: FastAPI serves those from a CDN; the schema itself is at /openapi.json
    app = FastAPI(title="TerraLearn", version=__version__, lifespan=_lifespan, docs_url=None, redoc_url=None,
                  description="Local no-code app: check, export, train, classify, evaluate.")  # fmt: skip
    app.state.files, app.state.guard, app.state.store = workspace_files, guard, store
    app.state.max_upload_mb = max_upload_mb
    app.state.checked = False  # a check without errors was run (ticks the Check step)
    install(app, guard)
    app.add_exception_handler(TerraLearnError, _terralearn_error)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.mount("/vendor/leaflet", StaticFiles(directory=_leaflet_dir()), name="leaflet")
    for router in ROUTERS:
        app.include_router(router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    app.state.store.recover()
    yield


async def _terralearn_error(request: Request, exc: TerraLearnError) -> JSONResponse:
    """A TerraLearn error as JSON, with the HTTP status its class gives."""
    body = {"error": exc.message, "fix": exc.fix}
    if isinstance(exc, ChecksFailedError):
        body["findings"] = [f.as_dict() for f in exc.findings]
    return JSONResponse(body, status_code=exc.http_status)


def _leaflet_dir() -> Path:
    from xstatic.pkg import leaflet

    return Path(leaflet.BASE_DIR)
