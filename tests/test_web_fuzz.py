"""Fuzz the web app's HTTP API from its OpenAPI schema (schemathesis strategies, hypothesis): no 5xx, no crash.

Every operation in the schema gets generated requests, valid and invalid by the schema; each must be
answered with a status below 500, and a refusal must say why.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from terralearn.web.app import create_app
from terralearn.web.security import CSRF_HEADER


def _app(workspace: Path):
    (workspace / "notes.txt").write_text("not a raster")
    (workspace / "folder").mkdir(exist_ok=True)
    return create_app(workspace, max_upload_mb=1)


def _operations() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        schema = schemathesis.openapi.from_asgi("/openapi.json", _app(Path(tmp)))
        return [op.ok().label for op in schema.get_all_operations()]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    app = _app(tmp_path_factory.mktemp("fuzz-workspace"))
    return app, schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("label", _operations())
def test_api_never_fails_with_a_server_error(label, fuzzed):
    app, schema = fuzzed
    operation = schema.find_operation_by_label(label)
    headers = {CSRF_HEADER: app.state.guard.csrf}

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def run(case):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:500])
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            body = response.json()
            assert body.get("error") or body.get("detail") or body.get("errors"), body

    run()


def test_schema_lists_every_api_route(fuzzed):
    paths = fuzzed[0].openapi()["paths"]
    for route in ("/api/files", "/api/describe", "/api/upload", "/api/check", "/api/jobs/{stage}", "/api/jobs/{job_id}",
                  "/api/jobs/{job_id}/cancel", "/api/runs", "/api/runs/compare", "/api/tiles/{z}/{x}/{y}.png"):  # fmt: skip
        assert route in paths, route
