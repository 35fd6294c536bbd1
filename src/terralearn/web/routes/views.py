"""Pictures of workspace files: quick-looks, and the map viewer's zoom levels, tiles and legends."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam

from terralearn.errors import InputFileError, TerraLearnError
from terralearn.web import render
from terralearn.web.routes import Files, WorkspacePath

TileIndex = Annotated[int, PathParam(ge=-(2**31), le=2**31)]

router = APIRouter()


@router.get("/api/quicklook", tags=["workspace"], response_class=Response)
def quicklook(files: Files, path: WorkspacePath, size: Annotated[int, Query(ge=64, le=2048)] = 640):
    """A quick-look PNG of a raster, a map or a vector layer."""
    target = files.resolve(path)
    return Response(_render(render.quicklook_png, target, max_size=size), media_type="image/png")


@router.get("/api/pyramid", tags=["map"])
def pyramid(files: Files, path: WorkspacePath) -> dict:
    """Size and zoom levels of a raster for the map viewer, and its legend when it is a classified map."""
    target = files.resolve(path)
    info = _render(render.raster_pyramid, target)
    kind = files.kind_of(target)
    return {**info, "kind": kind, "legend": _render(render.legend, target) if kind == "map" else []}


@router.get("/api/tiles/{z}/{x}/{y}.png", tags=["map"], response_class=Response)
def tile(
    files: Files,
    z: Annotated[int, PathParam(ge=0, le=30)],
    x: TileIndex,
    y: TileIndex,
    path: WorkspacePath,
):
    """One 256x256 tile of a raster in its own pixel grid (transparent outside it)."""
    target = files.resolve(path)
    data = _render(render.tile_png, target, z, x, y)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/api/detections", tags=["map"])
def detections(files: Files, path: WorkspacePath, limit: Annotated[int, Query(ge=1, le=100_000)] = 20_000) -> dict:
    """The boxes of a detections GeoPackage in the detected raster's pixels, best first, for the map viewer."""
    target = files.resolve(path)
    return _render(render.detection_boxes, target, limit=limit)


def _render(fn, target: Path, *args, **kwargs):
    try:
        return fn(target, *args, **kwargs)
    except TerraLearnError:
        raise
    except Exception as exc:
        raise InputFileError(f"Cannot draw '{target.name}': {exc}", "Pick a raster, a map or a vector layer.") from None
