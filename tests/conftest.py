from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("COLUMNS", "300")  # rich wraps at the terminal width; keep CLI messages on one line
if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs in one worker per core (pytest -n): one thread each, inherited by the commands the tests start,
    # or the workers' thread pools fight over the cores (measured: 3-5x slower training tests)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest

from tests.data.make_data import make_scene

#: The slowest test files, scheduled first so that the workers finish together (pytest -n with --dist loadfile).
SLOW_FIRST = ("test_shared_data.py", "test_cli.py", "test_autotrain.py", "test_web_e2e.py")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def scene(tmp_path):
    """(raster, labels, grid) of the default tiny scene."""
    return make_scene(tmp_path)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent (real datasets are only on the developers' machines)")
    return SHARED


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
