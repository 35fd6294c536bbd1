"""Stage 3: whole-raster classification: streaming, seamless blending, georeferenced COG output."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from affine import Affine

from terralearn.config import ClassifyConfig, ExportConfig, TrainConfig
from terralearn.errors import OutputExistsError, RasterError
from terralearn.export import export
from terralearn.geo.blend import hann_weights
from terralearn.io.maps import validate_cog
from terralearn.io.package import read_card
from terralearn.io.raster import CLASS_TABLE_TAG, read_class_table, write_raster
from terralearn.predict import classify
from terralearn.train import train
from tests.data.make_data import make_grid, make_raster, make_scene


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pkg")
    raster, labels, _ = make_scene(folder)
    export(ExportConfig.build(rasters=[raster], labels=labels, class_field="code", class_name_field="name",
                              tile_size_x=16, tile_size_y=16, stride_x=8, stride_y=8, out=folder / "chips"))  # fmt: skip
    train(TrainConfig.build(chips=folder / "chips", out=folder / "model", model="tiny", epochs=3, learning_rate=0.01,
                            baseline=False, workspace=folder))  # fmt: skip
    return folder / "model"


def run(package, rasters, out, **kw):
    return classify(ClassifyConfig.build(model=package, rasters=rasters, out=out, **kw))


def image(path, grid, nodata_cols=4, seed=0):
    return make_raster(path, grid, nodata_cols=nodata_cols, seed=seed)


@pytest.mark.parametrize("width,height", [(64, 48), (37, 101), (1, 40), (40, 1)])
def test_output_is_a_georeferenced_cog_on_the_input_grid(package, tmp_path, width, height):
    grid = make_grid(width=width, height=height)
    src = image(tmp_path / "in.tif", grid, nodata_cols=min(4, width - 1) if width > 1 else 0)
    result = run(package, [src], tmp_path / "map.tif", tile_size=16, overlap=4)
    with rasterio.open(src) as s, rasterio.open(result.out) as m:
        assert m.crs == s.crs and m.transform == s.transform and (m.width, m.height) == (s.width, s.height)
        assert m.dtypes[0] == "uint8" and m.nodata == 255
        values = m.read(1)
        data = s.read()
    nodata = (data == -9999).any(axis=0)
    assert (values[nodata] == 255).all() and (values[~nodata] < 3).all()
    assert validate_cog(result.out)[0] and result.cog_valid
    assert sum(result.class_pixels) == int((~nodata).sum())


def test_map_carries_classes_colours_attribute_table_and_qgis_style(package, tmp_path):
    grid = make_grid()
    result = run(package, [image(tmp_path / "in.tif", grid)], tmp_path / "map.tif")
    table = read_class_table(result.out)
    assert [(c["value"], c["name"]) for c in table] == [(3, "forest"), (7, "water"), (22531, "wheat")]
    with rasterio.open(result.out) as m:
        assert CLASS_TABLE_TAG in m.tags()
        assert m.colormap(1)[1][:3] == (31, 120, 180)  # water is blue
    rat = ET.parse(result.attribute_table).getroot()
    rows = rat.findall(".//Row")
    assert [r.findall("F")[1].text for r in rows] == ["forest", "water", "wheat"]
    assert rows[2].findall("F")[2].text == "22531"
    qml = result.qml.read_text()
    assert 'type="paletted"' in qml and 'label="wheat (22531)"' in qml


def test_band_mismatch_is_a_clear_error(package, tmp_path):
    grid = make_grid()
    four = make_raster(tmp_path / "four.tif", grid, bands=4)
    with pytest.raises(RasterError, match=r"trained on 3 bands .* have 4 bands"):
        run(package, [four], tmp_path / "map.tif")
    # a model trained on described bands: a raster with other band descriptions is refused
    import shutil

    named_pkg = tmp_path / "named_model"
    shutil.copytree(package, named_pkg)
    card = json.loads((named_pkg / "model.json").read_text())
    card["bands"] = ["blue", "green", "red"]
    (named_pkg / "model.json").write_text(json.dumps(card))
    swapped = make_raster(tmp_path / "swapped.tif", grid, names=["red", "green", "blue"])
    with pytest.raises(RasterError, match=r"band names differ.*'blue', 'green', 'red'.*'red', 'green', 'blue'"):
        run(named_pkg, [swapped], tmp_path / "map.tif")
    assert run(named_pkg, [swapped], tmp_path / "map.tif", check_band_names=False).out.exists()
    same = make_raster(tmp_path / "same.tif", grid, names=["blue", "green", "red"])
    assert run(named_pkg, [same], tmp_path / "m2.tif").out.exists()
    # names made from file names (another scene, another file) are not compared
    assert run(named_pkg, [image(tmp_path / "other_scene.tif", grid)], tmp_path / "m3.tif").out.exists()


def test_rotated_and_south_up_rasters_are_refused(package, tmp_path):
    from terralearn.geo.grid import Grid
    from tests.data.make_data import UTM31

    for transform in (Affine(10, 2, 500_000, 2, -10, 4_650_000), Affine(10, 0, 500_000, 0, 10, 4_640_000)):
        path = tmp_path / "odd.tif"
        write_raster(path, np.ones((3, 20, 20), np.int16), Grid(UTM31, transform, 20, 20))
        with pytest.raises(RasterError, match="north-up"):
            run(package, [path], tmp_path / "map.tif", check_band_names=False, overwrite=True)


def test_existing_output_needs_overwrite(package, tmp_path):
    src = image(tmp_path / "in.tif", make_grid())
    run(package, [src], tmp_path / "map.tif")
    with pytest.raises(OutputExistsError):
        run(package, [src], tmp_path / "map.tif")
    assert run(package, [src], tmp_path / "map.tif", overwrite=True).out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "map.qml", "map.tif", "map.tif.aux.xml"]


def test_seamless_across_tile_sizes(package, tmp_path):
    grid = make_grid(width=96, height=80)
    src = image(tmp_path / "in.tif", grid, nodata_cols=0)
    a = run(package, [src], tmp_path / "a.tif", tile_size=16, overlap=8)
    b = run(package, [src], tmp_path / "b.tif", tile_size=24, overlap=12)
    with rasterio.open(a.out) as ma, rasterio.open(b.out) as mb:
        differ = ma.read(1) != mb.read(1)
    assert differ.mean() < 0.02
    # tile borders of run a (every 8 px) must not concentrate the disagreement
    border_cols = np.zeros(grid.width, bool)
    border_cols[::8] = True
    if differ.any():
        assert differ[:, border_cols].mean() <= 3 * differ.mean() + 0.01


def test_hann_weights_are_centred_and_positive():
    w = hann_weights(8, 6)
    assert w.shape == (8, 6) and (w > 0).all()
    assert w[3:5, 2:4].min() == w.max() or w.argmax() in (w.size // 2, w.size // 2 - 1, 27, 20)
    assert w[0, 0] < 0.05 and np.allclose(w, w[::-1, ::-1])
    assert hann_weights(1, 1).item() == 1.0


def test_onnx_backend_matches_torch(package, tmp_path):
    src = image(tmp_path / "in.tif", make_grid())
    a = run(package, [src], tmp_path / "torch.tif", tile_size=16, overlap=4, backend="torch", probabilities=True)
    b = run(package, [src], tmp_path / "onnx.tif", tile_size=16, overlap=4, backend="onnx", probabilities=True)
    assert (a.backend, b.backend) == ("torch", "onnx")
    with rasterio.open(a.out) as ma, rasterio.open(b.out) as mb, rasterio.open(a.probability) as pa:
        differ = ma.read(1) != mb.read(1)
        assert differ.mean() < 0.03
        # the few pixels that differ are near-ties of this briefly trained model (float rounding decides them)
        assert (pa.read(1)[differ] <= 60).all()


def test_onnx_runs_two_batches_at_once_with_the_serial_result(package, tmp_path, monkeypatch):
    from terralearn.predict.backends import OnnxBackend

    src = image(tmp_path / "in.tif", make_grid())
    maps = {}
    for parallel in (2, 1):  # batches of 2 tiles: many batches in flight, blended in order
        monkeypatch.setattr(OnnxBackend, "parallel", parallel)
        result = run(package, [src], tmp_path / f"p{parallel}.tif", tile_size=16, overlap=4, batch_size=2,
                     backend="onnx", probabilities=True)  # fmt: skip
        with rasterio.open(result.out) as m, rasterio.open(result.probability) as p:
            maps[parallel] = m.read(1), p.read(1).astype(int)
    assert (maps[2][0] == maps[1][0]).all() and np.abs(maps[2][1] - maps[1][1]).max() <= 1


def test_a_cached_onnx_export_classifies_without_importing_torch(package, tmp_path):
    import subprocess
    import sys

    src = image(tmp_path / "in.tif", make_grid())
    run(package, [src], tmp_path / "first.tif", tile_size=16, backend="onnx")  # exports into the package's cache
    code = (
        "import sys; from terralearn.cli.app import app\n"
        "try: app(sys.argv[1:], prog_name='terralearn')\n"
        "except SystemExit as exc: assert not exc.code, exc.code\n"
        "print('@@', 'torch' in sys.modules, 'segmentation_models_pytorch' in sys.modules)"
    )
    # the default backend (auto) runs the export that training cached
    args = ["classify", "-m", str(package), "-r", str(src), "-o", str(tmp_path / "again.tif"), "--tile-size", "16",
            "--workspace", str(tmp_path)]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert "@@ False False" in done.stdout and "ONNX Runtime" in done.stdout, done.stdout + done.stderr
    with rasterio.open(tmp_path / "first.tif") as a, rasterio.open(tmp_path / "again.tif") as b:
        assert (a.read(1) == b.read(1)).all()


def test_default_batch_holds_about_131072_pixels_of_tiles():
    from terralearn.predict.window import default_batch, plan_tiles

    assert default_batch(plan_tiles(1000, 1000, 64, None)) == 32
    assert default_batch(plan_tiles(1000, 1000, 256, None)) == 8  # never fewer than 8
    assert default_batch(plan_tiles(1000, 1000, 16, None)) == 512


def test_tta_aoi_and_probabilities(package, tmp_path):
    import geopandas as gpd

    from terralearn.io.vector import write_vector
    from tests.data.make_data import pixel_box

    grid = make_grid()
    src = image(tmp_path / "in.tif", grid)
    aoi = tmp_path / "aoi.gpkg"
    write_vector(gpd.GeoDataFrame(geometry=[pixel_box(grid, 10, 10, 40, 30)], crs="EPSG:4326").pipe(
        lambda g: g.set_crs(grid.crs, allow_override=True).to_crs("EPSG:4326")), aoi)  # fmt: skip
    result = run(package, [src], tmp_path / "map.tif", tta=True, aoi=aoi, probabilities=True)
    with rasterio.open(result.out) as m, rasterio.open(result.probability) as p:
        values, prob = m.read(1), p.read(1)
    inside = np.zeros(values.shape, bool)
    inside[10:30, 10:40] = True
    assert (values[~inside] == 255).all() and (values[inside] < 3).all()
    assert (prob[inside] >= 33).all() and (prob[inside] <= 100).all() and (prob[~inside] == 255).all()


def test_random_forest_packages_classify_too(package, tmp_path):
    chips = package.parent / "chips"
    train(TrainConfig.build(chips=chips, out=tmp_path / "rf", model="random_forest", trees=5, workspace=tmp_path))
    result = run(tmp_path / "rf", [image(tmp_path / "in.tif", make_grid())], tmp_path / "map.tif")
    with rasterio.open(result.out) as m:
        assert set(np.unique(m.read(1))) <= {0, 1, 2, 255}
    assert json.loads(json.dumps(result.class_pixels))


def test_training_caches_the_onnx_export_that_classify_runs_by_default(package, tmp_path, monkeypatch):
    import shutil

    from terralearn.io.onnx_cache import onnx_cache_dir
    from terralearn.predict import backends

    assert [p.name[-10:] for p in onnx_cache_dir(package).glob("*.onnx")] == ["32x32.onnx"]  # 16-px chips, padded
    src = image(tmp_path / "in.tif", make_grid())
    assert run(package, [src], tmp_path / "a.tif", tile_size=16, overlap=4).backend == "onnx"
    assert run(package, [src], tmp_path / "b.tif", tile_size=40).backend == "torch"  # no export for 64-px graphs
    assert run(package, [src], tmp_path / "c.tif", tile_size=16, backend="torch").backend == "torch"
    monkeypatch.setattr(backends, "_nvidia_driver", lambda: True)  # a GPU: PyTorch on CUDA (here: none, so CPU)
    assert backends.choose_backend(ClassifyConfig.build(model=package, rasters=[src], out=tmp_path / "d.tif"),
                                   read_card(package), (16, 16)) == "torch"  # fmt: skip
    monkeypatch.undo()
    bare = tmp_path / "bare"
    shutil.copytree(package, bare, ignore=shutil.ignore_patterns(".onnx-cache"))
    assert run(bare, [src], tmp_path / "e.tif", tile_size=16).backend == "torch"


def test_a_failed_onnx_export_leaves_a_working_package_and_says_so(tmp_path, monkeypatch):
    from terralearn.io.onnx_cache import onnx_cache_dir
    from terralearn.predict import onnx as deploy

    def broken(*args):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(deploy, "cache_default_export", broken)
    raster, labels, _ = make_scene(tmp_path)
    export(ExportConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=16, tile_size_y=16,
                              out=tmp_path / "chips"))  # fmt: skip
    result = train(TrainConfig.build(chips=tmp_path / "chips", out=tmp_path / "model", model="tiny", epochs=1,
                                     baseline=False, workspace=tmp_path))  # fmt: skip
    note = next(w for w in result.warnings if w["code"] == "onnx_export")
    assert "unsupported operator" in note["message"] and "PyTorch" in note["fix"]
    assert not onnx_cache_dir(result.package).exists()
    assert run(result.package, [raster], tmp_path / "map.tif").backend == "torch"


def test_onnx_export_is_cached_keyed_and_checked(package, tmp_path, monkeypatch):
    import shutil

    from terralearn.io import onnx_cache
    from terralearn.predict import onnx as deploy

    pkg = tmp_path / "model"
    shutil.copytree(package, pkg, ignore=shutil.ignore_patterns(".onnx-cache"))
    exports = []
    real_export = deploy.export_onnx
    monkeypatch.setattr(deploy, "export_onnx", lambda config: exports.append(config.size) or real_export(config))
    src = image(tmp_path / "in.tif", make_grid())

    def onnx_map(name, tile=16):
        result = run(pkg, [src], tmp_path / name, tile_size=tile, overlap=4, backend="onnx")
        with rasterio.open(result.out) as m:
            return m.read(1)

    first = onnx_map("a.tif")
    cache = onnx_cache.onnx_cache_dir(pkg)
    assert cache == pkg / ".onnx-cache" and len(list(cache.glob("*.onnx"))) == 1 and exports == [(32, 32)]
    assert (onnx_map("b.tif") == first).all() and exports == [(32, 32)]  # the cached export, not exported again
    onnx_map("c.tif", tile=40)  # another tile size: its own export
    assert exports == [(32, 32), (64, 64)] and len(list(cache.glob("*.onnx"))) == 2
    # an altered export (same name, other bytes) is never run: it is exported again
    cached = next(p for p in cache.glob("*.onnx") if p.name.endswith("-32x32.onnx"))
    cached.write_bytes(cached.read_bytes()[:-1] + b"\0")
    assert (onnx_map("d.tif") == first).all() and exports[-1] == (32, 32) and len(exports) == 3
    # a record for other weights (a retrained package under the same name) does not match either
    record = cached.with_suffix(".json")
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({**saved, "weights_sha256": "0" * 64}))
    assert (onnx_map("e.tif") == first).all() and len(exports) == 4
    assert json.loads(record.read_text()) == saved
    # a cache that cannot be written (a read-only package): exported for the run, in its temporary folder
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")
    monkeypatch.setattr(onnx_cache, "onnx_cache_dir", lambda package: blocked / "cache")
    assert (onnx_map("f.tif") == first).all() and len(exports) == 5
    assert sorted(p.name for p in tmp_path.glob(".terralearn-*")) == []


def test_area_in_km2_projected_geographic_and_unknown():
    from rasterio.crs import CRS

    from terralearn.geo.areas import area_km2
    from terralearn.geo.grid import Grid

    utm = make_grid(width=100, height=50, res=10.0)  # 1,000 m x 500 m
    assert area_km2(utm) == pytest.approx(0.5) and area_km2(utm, rows=25) == pytest.approx(0.25)
    feet = Grid(CRS.from_epsg(2263), Affine(10, 0, 1e6, 0, -10, 2e5), 100, 100)  # US survey feet
    assert area_km2(feet) == pytest.approx((1000 * 0.3048006096) ** 2 / 1e6)
    degrees = Grid(CRS.from_epsg(4326), Affine(1, 0, 10, 0, -1, 1), 1, 2)  # 1° x 2° across the equator
    assert area_km2(degrees) == pytest.approx(2 * 12364, rel=1e-3) and area_km2(degrees, 1) == pytest.approx(
        12364, rel=1e-3
    )
    assert area_km2(Grid(None, Affine(10, 0, 0, 0, -10, 0), 10, 10)) is None


def test_progress_bar_shows_pixels_and_km2(package, tmp_path):
    from rasterio.crs import CRS
    from rich.console import Console

    from terralearn.cli._common import progress_bar
    from terralearn.geo.areas import area_progress
    from terralearn.geo.grid import Grid

    grid = make_grid(width=64, height=48, res=100.0)  # 6.4 km x 4.8 km = 30.72 km²
    text = area_progress(grid)
    assert text(0, 64 * 48) == "0.0/30.7 km²" and text(64 * 24, 64 * 48) == "15.4/30.7 km²"
    geographic = area_progress(Grid(CRS.from_epsg(4326), Affine(0.1, 0, 10, 0, -0.1, 50), 10, 10))
    assert geographic(100, 100).startswith("≈") and geographic(100, 100).endswith(" km²")
    assert "no CRS" in area_progress(Grid(None, Affine(1, 0, 0, 0, -1, 0), 5, 5))(0, 25)
    # the bar itself: pixels done / total and the km² column, from classify's own progress calls
    bar, update = progress_bar("Classifying (pixels)", extra=text)
    calls = []
    src = image(tmp_path / "in.tif", grid)
    classify(
        ClassifyConfig.build(model=package, rasters=[src], out=tmp_path / "map.tif"),
        progress=lambda done, total: calls.append((done, total)) or update(done, total),
    )
    assert calls[-1] == (64 * 48, 64 * 48) and all(a[0] < b[0] for a, b in itertools.pairwise(calls))
    console = Console(record=True, width=160)
    console.print(bar.make_tasks_table(bar.tasks))
    shown = console.export_text()
    assert "3072/3072" in shown and "30.7/30.7 km²" in shown
    plain, plain_update = progress_bar("Exporting chips")  # other commands: unchanged columns
    plain_update(3, 10)
    assert len(plain.columns) == 4


def test_batches_span_tile_rows_without_changing_the_map(package, tmp_path):
    # 2 tiles per row: batches of 1, 3 (across two rows) and 64 (the whole raster, many rows) give one map
    src = image(tmp_path / "in.tif", make_grid(width=20, height=150), nodata_cols=2)
    maps = []
    for batch in (1, 3, 64):
        result = run(package, [src], tmp_path / f"b{batch}.tif", tile_size=16, overlap=4, batch_size=batch,
                     probabilities=True)  # fmt: skip
        with rasterio.open(result.out) as m, rasterio.open(result.probability) as p:
            maps.append((m.read(1), p.read(1)))
    for labels, prob in maps[1:]:
        assert (labels == maps[0][0]).mean() > 0.999 and np.abs(prob.astype(int) - maps[0][1]).max() <= 1


def test_a_window_with_its_halo_scores_as_the_whole_raster_does(tmp_path):
    """The streaming unit: any window, predicted with the tiles that touch it, gets the whole raster's scores."""
    from rasterio.windows import Window

    from terralearn.io.raster import RasterStack
    from terralearn.predict.window import WindowReader, plan_tiles, predict_window

    grid = make_grid(width=61, height=47)
    raster = make_raster(tmp_path / "r.tif", grid, bands=3, seed=3)

    def backend(tiles):  # depends on the whole tile, so that a missing halo tile would show
        logits = (
            tiles[:, :2] * np.array([1.0, -1.0], np.float32)[:, None, None]
            + tiles.mean(axis=(1, 2, 3))[:, None, None, None]
        )
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def scores(stack, tiles, window=None):
        mean = np.array([1500, 2500, 3500], np.float32)[:, None, None]  # make_raster: 1000 * band + 0..999
        with WindowReader(stack, tiles, mean, np.full_like(mean, 300), batch_size=5, window=window) as reader:
            bands = [(s.window, s.sums.copy(), s.weights.copy(), s.valid.copy())
                     for s in predict_window(reader, backend, 2, with_weights=True)]  # fmt: skip
        top, left = int(bands[0][0].row_off), int(bands[0][0].col_off)
        assert all(int(w.col_off) == left for w, *_ in bands)
        assert [int(w.row_off) for w, *_ in bands] == list(np.cumsum([top] + [int(w.height) for w, *_ in bands])[:-1])
        return np.concatenate([s for _, s, _, _ in bands], 1) / np.concatenate([w for _, _, w, _ in bands])

    with RasterStack([raster]) as stack:
        tiles = plan_tiles(grid.height, grid.width, 16, None)
        whole = scores(stack, tiles)
        assert whole.shape == (2, 47, 61) and 0.05 < whole[0, :, 4:].mean() < 0.95  # soft scores, both classes
        for col, row, width, height in [(0, 0, 61, 47), (5, 7, 20, 13), (40, 30, 21, 17), (13, 0, 1, 1)]:
            part = scores(stack, tiles, Window(col, row, width, height))
            assert part.shape == (2, height, width)
            np.testing.assert_allclose(part, whole[:, row : row + height, col : col + width], rtol=1e-5, atol=1e-6)
