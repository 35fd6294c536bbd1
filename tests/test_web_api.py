"""The web app's pages and JSON API: workflow pages, forms, guards, path safety, uploads, jobs, runs."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from terralearn.config import TrainConfig
from terralearn.errors import TerraLearnError
from terralearn.train import train
from terralearn.web import jobs
from terralearn.web.app import create_app
from terralearn.web.routes.pages import STEPS
from terralearn.web.security import CSRF_HEADER
from tests.data.make_data import make_scene

STATIC = Path(__file__).parents[1] / "src" / "terralearn" / "web"


@pytest.fixture
def ws(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    raster, labels, _ = make_scene(workspace / "data")
    return workspace


@pytest.fixture
def app(ws):
    return create_app(ws, max_upload_mb=1)


@pytest.fixture
def client(app):
    c = TestClient(app)
    c.headers[CSRF_HEADER] = app.state.guard.csrf
    return c


SCENE = {"rasters": ["data/image.tif"], "labels": "data/labels.gpkg", "class_field": "code", "class_name_field": "name",
         "tile_size_x": 16, "tile_size_y": 16}  # fmt: skip


def test_every_step_has_a_page_with_the_workflow_path(client):
    titles = [t for _, t, _ in STEPS]
    assert titles == ["Data", "Check", "Export", "Train", "Runs", "Classify", "Detect", "Evaluate"]
    for step, title, _ in STEPS:
        r = client.get(f"/{step}")
        assert r.status_code == 200 and f"<h1>{title}</h1>" in r.text
        nav = re.findall(r'<span class="label">(\w+)</span>', r.text)
        assert nav == titles
        assert 'aria-current="page"' in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/", follow_redirects=False).headers["location"] == "/data"
    assert client.get("/vendor/leaflet/leaflet.js").status_code == 200


def test_nothing_is_fetched_from_another_host():
    """No CDN, no external fonts or tiles: every file the pages load is served by the app."""
    for path in [*STATIC.glob("static/*"), *STATIC.glob("templates/*")]:
        text = path.read_text()
        urls = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)
        assert [u for u in urls if "www.w3.org" not in u] == [], path


def test_forms_cover_every_setting_with_help(client):
    from terralearn.web.forms import STAGES

    for stage, config in STAGES.items():
        spec = client.get(f"/api/forms/{stage}").json()
        names = {f["name"] for f in spec["fields"]}
        assert set(config.model_fields) - {"schema_version"} <= names
        assert all(f["help"] for f in spec["fields"])
        assert not any(
            f["widget"] == "text" and f["name"] in ("rasters", "labels", "chips", "model") for f in spec["fields"]
        )
    export = client.get("/api/forms/export").json()
    assert export["output"] == "chips/chips-1"
    widgets = {f["name"]: f["widget"] for f in export["fields"]}
    assert widgets["rasters"] == widgets["labels"] == "pick" and widgets["class_field"] == "field"


def test_inline_validation_names_the_field_and_the_value(client):
    ok = client.post("/api/validate/export", json={"values": {**SCENE, "out": "chips/a"}}).json()
    assert ok == {"ok": True, "errors": {}}
    bad = client.post("/api/validate/export", json={"values": {**SCENE, "tile_size_x": -3, "out": "c"}}).json()
    assert not bad["ok"] and "-3" in bad["errors"]["tile_size_x"]
    missing = client.post("/api/validate/export", json={"values": {**SCENE, "labels": "data/nope.gpkg"}}).json()
    assert "does not exist" in missing["errors"]["labels"]
    outside = client.post("/api/validate/export", json={"values": {**SCENE, "out": "../escape"}}).json()
    assert "out of the workspace" in outside["errors"]["out"]


def test_check_returns_findings_with_fixes(client):
    r = client.post("/api/check", json={"values": SCENE})
    assert r.status_code == 200
    body = r.json()
    assert body["findings"] and all(f["fix"] for f in body["findings"])
    bad = client.post("/api/check", json={"values": {**SCENE, "class_field": "nope"}}).json()
    assert not bad["ok"] and any("nope" in f["message"] for f in bad["findings"] if f["severity"] == "error")


def test_data_pages_summary_quicklook_and_tiles(client):
    listing = client.get("/api/files", params={"path": "data"}).json()
    kinds = {e["name"]: e["kind"] for e in listing["entries"]}
    assert kinds == {"image.tif": "raster", "labels.gpkg": "vector"}
    raster = client.get("/api/describe", params={"path": "data/image.tif"}).json()
    assert raster["bands"] == 3 and raster["crs"]["epsg"] == 32631 and raster["pixel_size"] == [10.0, 10.0]
    vector = client.get("/api/describe", params={"path": "data/labels.gpkg"}).json()
    assert {f["name"] for f in vector["fields"]} >= {"code", "name"}
    png = client.get("/api/quicklook", params={"path": "data/image.tif"})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    pyramid = client.get("/api/pyramid", params={"path": "data/image.tif"}).json()
    assert pyramid["width"] == 64 and pyramid["height"] == 48
    tile = client.get("/api/tiles/0/0/0.png", params={"path": "data/image.tif"})
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    assert client.get("/api/find", params={"kinds": "vector"}).json()["items"][0]["path"] == "data/labels.gpkg"


@pytest.mark.parametrize(
    "url",
    [
        "/api/files?path=..",
        "/api/files?path=%2e%2e",
        "/api/files?path=/etc",
        "/api/describe?path=../../etc/passwd",
        "/api/describe?path=%2Fetc%2Fpasswd",
        "/api/download?path=data/../../ws-secret.txt",
        "/api/download?path=%2e%2e%2fws-secret.txt",
        "/api/download?path=%252e%252e%252fws-secret.txt",
        "/api/download?path=link-out/secret.txt",
        "/api/download?path=link-file",
        "/api/download?path=terralearn.db",
        "/api/quicklook?path=..%2Fws-secret.txt",
        "/files/%2e%2e/ws-secret.txt",
        "/files/..%2fws-secret.txt",
        "/files/link-file",
        "/files/link-out/secret.txt",
        "/api/tiles/0/0/0.png?path=/etc/passwd",
    ],
)
def test_no_path_outside_the_workspace_can_be_read(client, ws, url):
    outside = ws.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("TOP SECRET")
    (ws.parent / "ws-secret.txt").write_text("TOP SECRET")
    (ws / "link-out").symlink_to(outside, target_is_directory=True)
    (ws / "link-file").symlink_to(outside / "secret.txt")
    r = client.get(url)
    assert r.status_code in (400, 403, 404), (url, r.status_code)
    assert b"TOP SECRET" not in r.content and b"root:" not in r.content
    listed = client.get("/api/files").json()["entries"]
    assert not {e["name"] for e in listed} & {"link-out", "link-file", "terralearn.db"}


def test_writes_cannot_escape_the_workspace(client, ws):
    r = client.post("/api/jobs/export", json={"values": {**SCENE, "out": "/tmp/elsewhere"}})
    assert r.status_code == 422 and "out" in r.json()["errors"]
    r = client.post("/api/upload", files={"file": ("x.gpkg", b"x")}, data={"folder": "../up"})
    assert r.status_code == 403
    assert not (ws.parent / "up").exists()


def test_state_changes_need_the_page_token_and_the_same_origin(app, ws):
    plain = TestClient(app)
    assert plain.post("/api/sample").status_code == 403  # no anti-forgery token
    assert plain.post("/api/sample", headers={CSRF_HEADER: "guess"}).status_code == 403
    evil = {CSRF_HEADER: app.state.guard.csrf, "Origin": "http://evil.example"}
    assert plain.post("/api/jobs/export", json={"values": SCENE}, headers=evil).status_code == 403
    assert plain.get("/api/status", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    assert not (ws / "sample").exists()
    assert app.state.guard.csrf in plain.get("/data").text  # the page carries it for its own requests


def test_listening_on_the_network_requires_the_access_token(tmp_path):
    with pytest.raises(TerraLearnError, match="without an access token"):
        create_app(tmp_path, host="0.0.0.0")
    app = create_app(tmp_path, host="0.0.0.0", token="s3cret-token")
    c = TestClient(app)
    assert c.get("/api/status").status_code == 401
    assert c.get("/data").status_code == 401
    assert c.get("/data?token=wrong").status_code == 401
    r = c.get("/data?token=s3cret-token", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/data"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/api/status").status_code == 200  # the cookie is kept
    assert TestClient(app).get("/api/status", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def _tif_bytes(tmp_path) -> bytes:
    raster, _, _ = make_scene(tmp_path / "up")
    return Path(raster).read_bytes()


def test_uploads_are_checked_by_content_and_size(client, ws, tmp_path):
    tif = _tif_bytes(tmp_path)
    r = client.post("/api/upload", files={"file": ("scene.tif", tif)})
    assert r.status_code == 200 and r.json() == {"path": "uploads/scene.tif", "kind": "raster"}
    again = client.post("/api/upload", files={"file": ("scene.tif", tif)}).json()
    assert again["path"] == "uploads/scene-1.tif"
    fake = client.post("/api/upload", files={"file": ("evil.tif", b"<script>alert(1)</script>" * 10)})
    assert fake.status_code == 400 and "evil.tif" in fake.json()["error"]
    exe = client.post("/api/upload", files={"file": ("run.sh", b"#!/bin/sh\nrm -rf /\n")})
    assert exe.status_code == 400 and ".tif" in exe.json()["fix"] + exe.json()["error"]
    big = client.post("/api/upload", files={"file": ("big.tif", b"II*\x00" + b"0" * (3 * 1024 * 1024))})
    assert big.status_code == 413
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../escape.shp", b"x")
        z.writestr("../../escape.shx", b"x")
        z.writestr("../../escape.dbf", b"x")
    slip = client.post("/api/upload", files={"file": ("slip.zip", buf.getvalue())})
    assert slip.status_code == 400
    assert not list(ws.parent.glob("escape*")) and not list(ws.glob("escape*"))
    assert {p.name for p in (ws / "uploads").iterdir()} == {"scene.tif", "scene-1.tif"}  # nothing else left


def test_jobs_api_runs_an_export_and_refuses_to_overwrite(client, ws):
    r = client.post("/api/jobs/export", json={"values": {**SCENE, "out": "chips/chips-1", "val_fraction": 0.5}})
    assert r.status_code == 202
    job = jobs.wait(ws, r.json()["id"], timeout=120)
    assert job["status"] == "finished", job["log"]
    shown = client.get(f"/api/jobs/{job['id']}").json()
    assert shown["result"]["out"] == "chips/chips-1" and shown["result"]["chips"] > 0
    vectors = [i["path"] for i in client.get("/api/find", params={"kinds": "vector"}).json()["items"]]
    assert "chips/chips-1/validation.gpkg" in vectors  # the held-out polygons can be picked as the reference
    assert client.get("/api/jobs").json()["jobs"][0]["id"] == job["id"]
    again = client.post("/api/jobs/export", json={"values": {**SCENE, "out": "chips/chips-1"}})
    assert again.status_code == 422 and "already exists" in again.json()["errors"]["out"]
    assert client.get("/api/forms/export").json()["output"] == "chips/chips-2"
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409
    assert client.get("/api/jobs/999").status_code == 404
    status = client.get("/api/status").json()
    assert status["done"]["export"] and status["done"]["check"] and status["active_jobs"] == 0


def test_runs_table_sorts_compares_and_links_reports(client, ws):
    from terralearn.config import ExportConfig
    from terralearn.export import export

    export(ExportConfig.build(rasters=[ws / "data/image.tif"], labels=ws / "data/labels.gpkg", class_field="code",
                              tile_size_x=16, tile_size_y=16, out=ws / "chips", val_fraction=0.5))  # fmt: skip
    for i, epochs in enumerate((1, 2), start=1):
        train(TrainConfig.build(chips=ws / "chips", out=ws / f"m{i}", model="tiny", epochs=epochs, baseline=False,
                                learning_rate=0.01, workspace=ws))  # fmt: skip
    runs = client.get("/api/runs", params={"sort": "epochs_run", "descending": True}).json()["runs"]
    assert [r["epochs_run"] for r in runs] == [2, 1]
    assert runs[0]["report"] == "runs/run-0002/report/report.html" and runs[0]["package_path"] == "m2"
    report = client.get("/files/" + runs[0]["report"])
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert report.headers["content-security-policy"].startswith("sandbox")
    rows = {r["key"]: r for r in client.get("/api/runs/compare", params={"a": 1, "b": 2}).json()["rows"]}
    assert rows["epochs_run"]["diff"] == 1 and rows["architecture"]["a"] == "tiny"
    assert isinstance(rows["per_class_iou"]["a"], list) and isinstance(runs[0]["per_class_iou"], list)
    assert client.get("/api/runs/compare", params={"a": 1, "b": 9}).status_code == 404
    assert client.post("/api/runs/1/resume").status_code == 409  # finished runs are not resumed


def test_no_shell_and_no_pickles_in_the_app():
    src = Path(__file__).parents[1] / "src" / "terralearn"
    text = "\n".join(p.read_text() for p in src.rglob("*.py"))
    assert "shell=True" not in text and "os.system(" not in text and "os.popen(" not in text
    assert "import pickle" not in text and "pickle.load" not in text
    assert not re.search(r"torch\.load\((?![^)]*weights_only=True)", text)


def test_http_status_comes_from_the_error_class():
    from terralearn import errors

    assert errors.WorkspacePathMissingError("x").http_status == 404
    assert errors.WorkspacePathError("x").http_status == 403
    assert errors.UploadTooLargeError("x").http_status == 413 and errors.UploadError("x").http_status == 400
    assert errors.JobNotFoundError("x").http_status == 404 and errors.JobError("x").http_status == 409
    assert errors.RunNotFoundError("x").http_status == 404 and errors.RunError("x").http_status == 409
    assert errors.ConfigError("x").http_status == 400
    assert isinstance(errors.RunNotFoundError("x"), errors.RunError)  # callers catching the family still do


def test_detect_and_evaluate_detections_run_as_jobs_and_the_boxes_are_drawn(client, ws):
    import geopandas as gpd

    from terralearn.models.detection import build_detector
    from tests.data.make_data import make_objects_scene
    from tests.test_detect import package

    raster, labels, *_ = make_objects_scene(ws / "objects", bands=1, size=96, n=6, seed=1)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = build_detector("faster_rcnn_resnet18_fpn", 1, 2, 64, "cpu", anchor_sizes=(4, 8, 16, 24, 32))
    package(ws / "models" / "det", raster, {k: v.detach().numpy() for k, v in net.state_dict().items()})
    rel = raster.relative_to(ws).as_posix()
    form = client.get("/api/forms/detect").json()
    assert form["output"] == "detections/detections-1.gpkg" and {"model", "rasters", "threshold"} <= {
        f["name"] for f in form["fields"]}  # fmt: skip
    r = client.post("/api/jobs/detect", json={"values": {"model": "models/det", "rasters": [rel], "threshold": 0.05,
                                                         "out": "detections/d.gpkg"}})  # fmt: skip
    assert r.status_code == 202, r.text
    job = jobs.wait(ws, r.json()["id"], timeout=300)
    assert job["status"] == "finished", job.get("error")
    res = job["result"]
    assert res["out"] == "detections/d.gpkg" and res["rasters"] == [rel] and res["detections"] > 0
    assert sum(res["counts"].values()) == res["detections"] and "epoch" not in job["log"]
    drawn = client.get("/api/detections", params={"path": res["out"], "limit": 50}).json()
    assert drawn["total"] == res["detections"] and drawn["shown"] == min(50, drawn["total"])
    assert [c["name"] for c in drawn["classes"]] == ["car", "boat"]
    boxes = drawn["boxes"]
    assert all(-1 <= b[0] < b[2] <= 97 and -1 <= b[1] < b[3] <= 97 and b[4] in (0, 1) for b in boxes)
    assert [b[5] for b in boxes] == sorted((b[5] for b in boxes), reverse=True)  # best first
    assert client.get("/api/detections", params={"path": "data/labels.gpkg"}).status_code in (400, 404)
    # the detections against the scene's own labels, from the Evaluate page's second form
    ref = labels.relative_to(ws).as_posix()
    assert "kind" in gpd.read_file(labels).columns
    r = client.post("/api/jobs/evaluate_detections", json={"values": {"prediction": res["out"], "reference": ref,
                                                                      "class_field": "kind", "out": "evaluations/d"}})  # fmt: skip
    assert r.status_code == 202, r.text
    job = jobs.wait(ws, r.json()["id"], timeout=120)
    assert job["status"] == "finished", job.get("error")
    m = job["result"]["metrics"]
    assert {c["class_name"] for c in m["per_class"]} >= {"car", "boat"} and 0.0 <= (m["map50"] or 0.0) <= 1.0
    assert (ws / job["result"]["pr_png"]).read_bytes()[:4] == b"\x89PNG" and (ws / job["result"]["report"]).exists()
    page = client.get("/detect")
    assert page.status_code == 200 and "<h1>Detect</h1>" in page.text
