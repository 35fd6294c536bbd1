"""The file layer: stacking rasters with masks, fast chip writing, atomic outputs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from terralearn.io.atomic import atomic_dir, atomic_file
from terralearn.io.chips import GeoTiffChipWriter
from terralearn.io.raster import RasterStack, write_raster
from tests.data.make_data import UTM31, make_grid, make_raster


@pytest.mark.parametrize("dtype,count,shape", [("int16", 6, (6, 10, 10)), ("float32", 3, (3, 16, 12)),
                                               ("uint8", 1, (16, 16)), ("uint16", 2, (2, 7, 9))])  # fmt: skip
def test_template_chips_are_identical_to_tifffile_chips(tmp_path, dtype, count, shape):
    rng = np.random.default_rng(0)
    palette = {0: (255, 0, 0, 255), 1: (0, 0, 255, 255)} if count == 1 else None
    writer = GeoTiffChipWriter(UTM31, (10.0, 10.0), dtype, count, nodata=0, band_names=[f"b{i}" for i in range(count)],
                               colormap=palette)  # fmt: skip
    for i in range(3):
        data = (rng.random(shape) * 100).astype(dtype)
        writer.write(tmp_path / f"fast{i}.tif", data, 500_000 + 10 * i, 4_650_000 - 5 * i)
        writer._write_tifffile(tmp_path / f"slow{i}.tif", data, 500_000 + 10 * i, 4_650_000 - 5 * i)
        assert (tmp_path / f"fast{i}.tif").read_bytes() == (tmp_path / f"slow{i}.tif").read_bytes()
        with rasterio.open(tmp_path / f"fast{i}.tif") as src:
            assert src.crs == UTM31
            assert src.transform == Affine(10, 0, 500_000 + 10 * i, 0, -10, 4_650_000 - 5 * i)
            assert np.array_equal(src.read().reshape(shape), data)
            assert src.nodata == 0 and src.descriptions[0] == "b0"
            if palette:
                assert src.colormap(1)[1] == (0, 0, 255, 255)


def test_compressed_chips_use_tifffile(tmp_path):
    writer = GeoTiffChipWriter(UTM31, (10.0, 10.0), "int16", 2, compress=True)
    data = np.ones((2, 64, 64), "int16")
    writer.write(tmp_path / "c.tif", data, 0, 0)
    with rasterio.open(tmp_path / "c.tif") as src:
        assert src.compression.name == "deflate" and np.array_equal(src.read(), data)


def test_internal_mask_band_is_respected(tmp_path):
    grid = make_grid(width=20, height=10)
    path = tmp_path / "masked.tif"
    data = np.full((2, 10, 20), 7, np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=20, height=10, count=2, dtype="uint8", crs=grid.crs,
                       transform=grid.transform) as dst:  # fmt: skip
        dst.write(data)
        mask = np.full((10, 20), 255, np.uint8)
        mask[:, :5] = 0
        dst.write_mask(mask)
    with RasterStack([path]) as stack:
        values, valid = stack.read(Window(0, 0, 20, 10))
    assert not valid[:, :5].any() and valid[:, 5:].all()
    assert (values[:, :, 5:] == 7).all()


def test_warped_raster_without_nodata_is_invalid_outside_its_footprint(tmp_path):
    first = make_raster(tmp_path / "a.tif", make_grid(width=40, height=20), nodata_cols=0)
    small = make_grid(width=10, height=20, res=10.0, origin=(500_000, 4_650_000))
    other = tmp_path / "b.tif"
    write_raster(other, np.full((1, 20, 10), 3.0, np.float32), small)  # no nodata declared, another grid
    wider = make_grid(width=5, height=10, res=20.0, origin=(500_000, 4_650_000))
    write_raster(other, np.full((1, 10, 5), 3.0, np.float32), wider)
    with RasterStack([first, other]) as stack:
        values, valid = stack.read(Window(0, 0, 40, 20))
    assert valid[:, :10].all() and not valid[:, 12:].any()
    assert np.allclose(values[-1][:, :10], 3.0)


def test_atomic_dir_and_file_leave_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "f.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(tmp_path / "f.json") as tmp:
        tmp.write_text("whole")
    assert (tmp_path / "f.json").read_text() == "whole"
