"""The command line: help, happy paths, and one clear error for every bad input."""

from __future__ import annotations

import json
import re

import geopandas as gpd
import pytest
from typer.testing import CliRunner

from terralearn.cli.app import app
from tests.data.make_data import make_grid, make_raster, scene_polygons

runner = CliRunner()


def invoke(*args, workspace=None):
    result = runner.invoke(app, [str(a) for a in args], env={"TERRALEARN_WORKSPACE": str(workspace or ".")})
    return result, " ".join(result.output.split())


def base(scene, tmp_path, *extra):
    raster, labels, _ = scene
    return ["export", "--raster", raster, "--labels", labels, "--class-field", "code", "--tile-size", 16,
            "--out", tmp_path / "chips", "--workspace", tmp_path / "ws", *extra]  # fmt: skip


def assert_clean_error(result, text, *needles):
    assert result.exit_code != 0
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


def test_help_lists_every_command():
    result, text = invoke("--help")
    assert result.exit_code == 0
    for command in ("sample", "check", "export"):
        assert command in text


def test_sample_check_export_round_trip(tmp_path):
    ws = tmp_path / "ws"
    result, text = invoke("sample", tmp_path / "sample", "--size", 128, "--workspace", ws)
    assert result.exit_code == 0, text
    raster, labels = tmp_path / "sample" / "sample_scene.tif", tmp_path / "sample" / "sample_labels.gpkg"
    result, text = invoke("check", "-r", raster, "-l", labels, "--class-field", "class_id", "--tile-size", 32,
                          "--json", tmp_path / "f.json")  # fmt: skip
    assert result.exit_code == 0, text
    assert json.loads((tmp_path / "f.json").read_text())["ok"] is True
    result, text = invoke("export", "-r", raster, "-l", labels, "--class-field", "class_id", "--class-name-field",
                          "class_name", "--tile-size", 32, "--stride", 16, "--out", tmp_path / "chips",
                          "--workspace", ws)  # fmt: skip
    assert result.exit_code == 0, text
    assert "chips" in text and "split by polygons" in text
    assert (tmp_path / "chips" / "manifest.json").exists()
    assert (ws / "terralearn.db").exists()


def test_check_exits_non_zero_on_error(scene):
    raster, labels, _ = scene
    result, text = invoke("check", "-r", raster, "-l", labels, "--class-field", "nope")
    assert_clean_error(result, text, "'nope'", "Fields present: code, name")


def test_missing_raster(scene, tmp_path):
    _raster, _labels, _ = scene
    args = base(scene, tmp_path)
    args[2] = tmp_path / "nowhere.tif"
    result, text = invoke(*args)
    assert_clean_error(result, text, "nowhere.tif", "does not exist", "Fix:")
    assert not (tmp_path / "chips").exists()


def test_corrupt_raster(scene, tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 50)
    args = base(scene, tmp_path)
    args[2] = bad
    result, text = invoke(*args)
    assert_clean_error(result, text, "broken.tif", "not a readable raster", "Fix:")
    assert not (tmp_path / "chips").exists()


@pytest.mark.parametrize("name,content", [("labels.gpkg", b"not a geopackage"), ("labels.geojson", b"{ broken")])
def test_unreadable_vector(scene, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    args = base(scene, tmp_path)
    args[4] = bad
    result, text = invoke(*args)
    assert_clean_error(result, text, name, "could not be read as a vector layer", "Fix:")
    assert not (tmp_path / "chips").exists()


def test_tile_larger_than_raster(scene, tmp_path):
    args = base(scene, tmp_path)
    args[args.index("--tile-size") + 1] = 100
    result, text = invoke(*args)
    assert_clean_error(result, text, "100 x 100 px is larger than the raster (64 x 48 px)", "--tile-size")
    assert not (tmp_path / "chips").exists()


@pytest.mark.parametrize("stride", [0, -4])
def test_stride_zero_or_negative(scene, tmp_path, stride):
    result, text = invoke(*base(scene, tmp_path, "--stride", stride))
    assert_clean_error(result, text, f"stride_x = {stride}", "greater than 0")
    assert not (tmp_path / "chips").exists()


def test_output_exists_needs_overwrite(scene, tmp_path):
    out = tmp_path / "chips"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result, text = invoke(*base(scene, tmp_path))
    assert_clean_error(result, text, "already exists and is not empty", "--overwrite")
    assert (out / "precious.txt").read_text() == "keep me"
    result, text = invoke(*base(scene, tmp_path, "--overwrite"))
    assert result.exit_code == 0, text
    assert not (out / "precious.txt").exists() and (out / "manifest.json").exists()


def test_rasters_not_overlapping(scene, tmp_path):
    far = make_raster(tmp_path / "far.tif", make_grid(origin=(900_000, 4_650_000)))
    result, text = invoke(*base(scene, tmp_path, "--raster", far))
    assert_clean_error(result, text, "far.tif", "does not overlap")
    assert not (tmp_path / "chips").exists()


def test_labels_not_overlapping(scene, tmp_path):
    _raster, _, grid = scene
    far = tmp_path / "far.gpkg"
    scene_polygons(grid).translate(xoff=50_000).to_file(far)
    args = base(scene, tmp_path)
    args[4] = far
    result, text = invoke(*args)
    assert_clean_error(result, text, "No label feature overlaps the raster", "CRS")
    assert not (tmp_path / "chips").exists()


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_labels_without_crs_are_assumed_in_the_raster_crs(scene, tmp_path):
    _raster, _, grid = scene
    nocrs = tmp_path / "nocrs.gpkg"
    gdf = scene_polygons(grid)
    gpd.GeoDataFrame(gdf.drop(columns="geometry"), geometry=list(gdf.geometry)).to_file(nocrs)
    args = base(scene, tmp_path)
    args[4] = nocrs
    result, text = invoke(*args)
    assert result.exit_code == 0, text
    assert "assumed to be in the raster's CRS" in text


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_projected_coordinates_in_geojson_are_caught(scene, tmp_path):
    _raster, _, grid = scene
    wrong = tmp_path / "utm_numbers.geojson"  # GeoJSON readers assume EPSG:4326
    gdf = scene_polygons(grid)
    gpd.GeoDataFrame(gdf.drop(columns="geometry"), geometry=list(gdf.geometry)).to_file(wrong)
    args = base(scene, tmp_path)
    args[4] = wrong
    result, text = invoke(*args)
    assert_clean_error(result, text, "which are not degrees", "GeoPackage with their true CRS")


def test_bad_choice_is_refused_by_the_parser(scene, tmp_path):
    result, text = invoke(*base(scene, tmp_path, "--split", "sideways"))
    assert_clean_error(result, text, "sideways")


def test_val_fraction_out_of_range(scene, tmp_path):
    result, text = invoke(*base(scene, tmp_path, "--val-fraction", 1.5))
    assert_clean_error(result, text, "val_fraction = 1.5", "below 1")


def test_debug_shows_the_traceback(scene, tmp_path):
    args = base(scene, tmp_path, "--debug")
    args[2] = tmp_path / "nowhere.tif"
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "InputFileError"
    assert isinstance(result.exception, OSError)


def test_demo_runs_the_workflow_on_the_sample(tmp_path):
    result, text = invoke("demo", "--workspace", tmp_path)
    assert result.exit_code == 0, text
    assert (tmp_path / "demo" / "chips" / "manifest.json").exists()
    assert "split by polygons" in text and "terralearn.db" in text
    assert f"terralearn ui --workspace {tmp_path}" in text  # how to open the same workspace in the browser
    assert (
        "CV mean IoU" in text and "chose " in text and "cross-validated accuracy" in text
    )  # the default's leaderboard
    # the sample's town is told by its pattern: the default ships a network, and the demo shows, against the
    # forest trained on the same chips, that it helps on the town
    assert "chose cnn_" in text and "Where the network helps" in text, text
    developed = re.search(r"developed IoU (\S+) vs (\S+) \((\S+), (\w+)\)", text)
    assert developed and float(developed[1]) > float(developed[2]) and developed[4] == "helps", text
    from terralearn.runs import Registry

    rows = Registry(tmp_path).chipsets()
    assert len(rows) == 1 and rows[0]["chips"] > 100 and rows[0]["classes"] == 6


def test_train_runs_report_and_onnx_commands(scene, tmp_path):
    ws = tmp_path / "ws"
    result, text = invoke(*base(scene, tmp_path, "--stride", 8))
    assert result.exit_code == 0, text
    for _ in range(2):
        result, text = invoke("train", "--chips", tmp_path / "chips", "--out", tmp_path / "pkg", "--model", "tiny",
                              "--epochs", 2, "--lr", 0.01, "--trees", 5, "--overwrite", "--workspace", ws)  # fmt: skip
        assert result.exit_code == 0, text
        assert "Run " in text and "random forest" in text and "report.html" in text
    result, text = invoke("runs", "--workspace", ws, "--sort", "accuracy", "--desc")
    assert result.exit_code == 0 and "tiny" in text
    result, _ = invoke("runs", "--json", "--workspace", ws)
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [1, 2] and rows[0]["epochs_run"] == 2 and rows[0]["status"] == "finished"
    result, _ = invoke("runs", "--csv", "--workspace", ws)
    assert result.output.splitlines()[0].startswith("id,created,name,status")
    result, text = invoke("runs", "compare", 1, 2, "--workspace", ws)
    assert result.exit_code == 0 and "run 1" in text and "run 2" in text
    result, text = invoke("report", 1, "--out", tmp_path / "rep", "--workspace", ws)
    assert result.exit_code == 0 and (tmp_path / "rep" / "report.html").exists()
    result, text = invoke("export-onnx", tmp_path / "pkg", "--workspace", ws)
    assert result.exit_code == 0 and (tmp_path / "pkg" / "model.onnx").exists()
    result, text = invoke("train", "--resume", 1, "--workspace", ws)
    assert_clean_error(result, text, "Run 1 is finished", "new run")
    result, text = invoke("report", 99, "--workspace", ws)
    assert_clean_error(result, text, "no run 99", "terralearn runs")


def test_ui_refuses_the_network_without_the_explicit_flag(tmp_path):
    result, text = invoke("ui", "--host", "0.0.0.0", "--workspace", tmp_path)
    assert_clean_error(result, text, "0.0.0.0", "--allow-remote")


def test_ui_serves_the_app_and_prints_its_address(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "terralearn", "ui", "--workspace", str(tmp_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={"COLUMNS": "200",
                            **__import__("os").environ})  # fmt: skip
    try:
        deadline, body = time.time() + 60, None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.3)
        assert body is not None and body["workspace"] == str(tmp_path.resolve())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data", timeout=5) as r:
            assert "Data" in r.read().decode()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://localhost:{port}/" in out
