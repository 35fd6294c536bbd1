"""The web app's routes, one module per part of the workflow, and what they share.

Each route reads the app's workspace, guard and job store from ``request.app.state`` (set by
``create_app``) through the dependencies below.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from terralearn.web.jobs import JobStore
from terralearn.web.workspace import WorkspaceFiles

#: Record numbers (jobs, runs): positive and small enough for SQLite.
Id = Annotated[int, PathParam(ge=1, le=2**53, description="Record number")]
QueryId = Annotated[int, Query(ge=1, le=2**53, description="Run number")]
#: A workspace-relative path given in the query.
WorkspacePath = Annotated[str, Query(max_length=1024)]


async def _files(request: Request) -> WorkspaceFiles:
    return request.app.state.files


async def _store(request: Request) -> JobStore:
    return request.app.state.store


#: The workspace's files.
Files = Annotated[WorkspaceFiles, Depends(_files)]
#: The workspace's job records.
Store = Annotated[JobStore, Depends(_store)]


class FormValues(BaseModel):
    values: dict[str, Any] = Field(default_factory=dict, description="Setting name -> value, as the form holds it.")


def invalid(errors: dict) -> JSONResponse:
    """The answer to a form with invalid settings: a message per field."""
    return JSONResponse({"error": "Some settings are not valid.", "errors": errors}, status_code=422)
