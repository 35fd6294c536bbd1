"""The workspace's files: listing, search for the pickers, summaries, downloads, uploads, the sample scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse

from terralearn.errors import InputFileError, TerraLearnError, UploadTooLargeError, WorkspacePathError
from terralearn.web import inspect as inspect_io
from terralearn.web.routes import Files, WorkspacePath

SAMPLE_IMAGE = "sample_scene.tif"
MB = 1024 * 1024

router = APIRouter()


@router.get("/files/{path:path}", include_in_schema=False)
def workspace_file(path: str, files: Files):
    """A workspace file shown in the browser (reports, pictures), sandboxed."""
    target = files.resolve(path)
    if target.is_dir():
        raise WorkspacePathError(f"'{path}' is a folder.", "Open a file inside it from the Data page.")
    return FileResponse(target)


@router.get("/api/files", tags=["workspace"])
def list_files(files: Files, path: WorkspacePath = "") -> dict:
    """The files and folders of one workspace folder."""
    folder = files.resolve(path)
    if not folder.is_dir():
        raise WorkspacePathError(f"'{path}' is not a folder.", "Give a folder of the workspace.")
    parent = None if folder == files.root else files.relative(folder.parent)
    return {"path": files.relative(folder), "parent": parent, "entries": files.listdir(path)}


@router.get("/api/find", tags=["workspace"])
def find(files: Files,
         kinds: Annotated[str, Query(max_length=200, description="Comma-separated kinds")] = "raster") -> dict:  # fmt: skip
    """Workspace items of the given kinds (for the pickers), newest first."""
    wanted = {k.strip() for k in kinds.split(",") if k.strip()}
    items = files.find(wanted)
    folders = {i["path"] for i in items if i["kind"] == "package" and i.get("is_dir")}
    # a package folder and the zip written next to it are one model: offer the folder
    return {"items": [i for i in items if not (i["path"].endswith(".zip") and i["path"][:-4] in folders)]}


@router.get("/api/describe", tags=["workspace"])
def describe(files: Files, path: WorkspacePath) -> dict:
    """A dataset's summary: bands, CRS, pixel size, extent, fields of a vector layer."""
    target = files.resolve(path)
    return {"path": files.relative(target), "kind": files.kind_of(target), **_describe(target)}


@router.get("/api/download", tags=["workspace"])
def download(files: Files, path: WorkspacePath):
    """Download a workspace file (maps, styles, reports)."""
    target = files.resolve(path)
    if not target.is_file():
        raise WorkspacePathError(f"'{path}' is not a file.", "Pick a file, not a folder.")
    return FileResponse(target, filename=target.name, content_disposition_type="attachment")


@router.post("/api/upload", tags=["workspace"])
async def upload(request: Request, files: Files, file: UploadFile = File(...),
                 folder: str = Form("uploads", max_length=200)):  # fmt: skip
    """Upload a GeoTIFF, a GeoPackage, a GeoJSON or a zipped shapefile into the workspace."""
    max_upload_mb = request.app.state.max_upload_mb
    limit = max_upload_mb * MB
    size = int(request.headers.get("content-length") or 0)
    if size > limit + MB:
        raise UploadTooLargeError(f"The upload is too large ({size / MB:,.0f} MB; the limit is {max_upload_mb} MB).",
                          "Copy large files into the workspace folder directly; they appear on the Data page.")  # fmt: skip
    # save_upload resolves the folder inside the workspace (and refuses one outside it)
    saved = files.save_upload(file.file, file.filename or "upload", subdir=folder.strip("/") or "uploads",
                              max_bytes=limit)  # fmt: skip
    return {"path": files.relative(saved), "kind": files.kind_of(saved)}


@router.post("/api/sample", tags=["workspace"])
def sample(files: Files) -> dict:
    """Write the built-in sample scene (6-band image and land-cover polygons) into the workspace."""
    from terralearn.sample import make_sample

    out = files.root / "sample"
    if not (out / SAMPLE_IMAGE).exists():
        make_sample(out)
    return {"path": files.relative(out), "items": files.listdir("sample")}


def _describe(target: Path) -> dict:
    try:
        return inspect_io.describe(target)
    except TerraLearnError:
        raise
    except Exception as exc:  # a file GDAL or OGR cannot read: say so, do not crash
        raise InputFileError(f"Cannot read '{target.name}': {exc}", "Check that the file is complete.") from None
