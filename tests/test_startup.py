"""The command line answers at once: help and refused inputs load none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "segmentation_models_pytorch", "timm", "sklearn", "geopandas", "onnxruntime", "fastapi",
         "matplotlib", "rasterio", "uvicorn")  # fmt: skip

RUN = """
import json, sys
from terralearn.cli.app import app
try:
    app(sys.argv[1:], prog_name="terralearn")
except SystemExit as exc:
    code = exc.code
print("@@" + json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def command(*args: str) -> dict:
    """Run the CLI in a fresh interpreter; its exit code and the heavy modules it had loaded at the end."""
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=120)
    line = next(x for x in done.stdout.splitlines() if x.startswith("@@"))
    return {**json.loads(line[2:]), "output": done.stdout + done.stderr}


def loaded(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["train", "--help"],
        ["classify", "--help"],
        ["runs", "--help"],
        ["train", "--chips", "/nowhere", "--out", "/tmp/x", "--model", "no-such-model"],  # refused option
        ["export", "-r", "a.tif", "-l", "b.gpkg", "-o", "out", "--tile-size", "0"],  # refused by the config
        ["classify", "-m", "/nowhere/pkg", "-r", "/nowhere.tif", "-o", "/nowhere/map.tif"],  # no such package
    ],
    ids=["help", "train-help", "classify-help", "runs-help", "bad-model", "bad-tile-size", "missing-package"],
)
def test_help_and_refused_options_load_no_heavy_library(args):
    result = command(*args)
    assert result["heavy"] == [], result
    assert (result["code"] == 0) == ("--help" in args), result["output"]


def test_the_cli_module_imports_light():
    assert loaded("terralearn.cli.app") == []


def test_the_web_worker_imports_only_what_its_stage_needs():
    assert loaded("terralearn.web.jobs") == []  # the worker's entry module
    assert "torch" not in loaded("terralearn.export")  # an export job never loads the deep-learning stack
