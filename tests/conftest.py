from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("COLUMNS", "300")  # rich wraps at the terminal width; keep CLI messages on one line

import pytest

from tests.data.make_data import make_scene

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
