"""`terralearn detect`: a detection model over whole rasters into a GeoPackage, merged across tile seams.

The merge and the streaming are tested with an *oracle* network that finds the scene's bright squares by
thresholding (exact boxes, no training): whatever the tiling, its detections must come out once each, at their
map coordinates. One CLI test runs real (untrained) torchvision detectors end to end.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import torch
from scipy import ndimage
from torch import nn
from typer.testing import CliRunner

from terralearn.cli.app import app
from terralearn.config import DetectConfig, DetectionEvaluateConfig
from terralearn.errors import InputFileError, OutputExistsError, PackageError, RasterError
from terralearn.evaluate.detection_stage import evaluate_detections
from terralearn.geo.boxes import pairwise_iou, pixel_to_map
from terralearn.geo.tiling import central_zones
from terralearn.io.detections import read_detections
from terralearn.io.package import save_package
from terralearn.io.raster import describe_raster, write_raster
from terralearn.predict.detect import detect
from terralearn.predict.detect_window import TileDetector
from terralearn.predict.window import plan_tiles
from tests.data.make_data import make_grid, make_objects_scene, pixel_box
from tests.test_tasks import fake_package

CLASSES = [{"index": 0, "value": 1, "name": "car", "colour": "#ff0000"},
           {"index": 1, "value": 2, "name": "boat", "colour": "#0000ff"}]  # fmt: skip


class Oracle(nn.Module):
    """Bright squares of normalised tiles: band 1 above 20 is a car (label 1), the last band a boat (label 2)."""

    def forward(self, images):
        out = []
        for im in images:
            a = im.numpy()
            boxes, labels = [], []
            for label, band in ((1, 0), (2, a.shape[0] - 1)):
                found, _ = ndimage.label(a[band] > 20)
                for sl in ndimage.find_objects(found):
                    boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
                    labels.append(label)
            out.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "scores": torch.full((len(boxes),), 0.9), "labels": torch.tensor(labels, dtype=torch.int64)})  # fmt: skip
        return out


def card_for(raster, task="detection", chip=64) -> dict:
    """A card following the detection contract (``detector_for_card``) for ``raster``'s bands."""
    info = describe_raster(raster)
    return {"task": task, "architecture": "faster_rcnn_resnet18_fpn", "band_count": info.count,
            "bands": list(info.band_names), "classes": CLASSES, "chip_size": [chip, chip], "preset": "cpu",
            "anchor_sizes": [4, 8, 16, 24, 32], "normalisation": {"mean": [200.0] * info.count,
                                                                  "std": [20.0] * info.count},
            "nodata": None, "pixel_size": list(info.grid.res)}  # fmt: skip


def package(folder, raster, tensors=None, overwrite=False):
    return save_package(folder, tensors or {"w": np.zeros(1, np.float32)}, card_for(raster), overwrite=overwrite)


def run(tmp_path, raster, name="out.gpkg", **settings):
    config = DetectConfig.build(model=package(tmp_path / "pkg", raster, overwrite=True), rasters=[raster],
                                out=tmp_path / name,
                                **{"tile_size": 64, "overlap": 16, **settings})  # fmt: skip
    return detect(config, network=Oracle()), read_detections(config.out)


def seam_scene(tmp_path, squares, size=128, bands=4):
    """Noise with bright squares (col0, row0, side, band) on a 0.5 m UTM grid."""
    grid = make_grid(width=size, height=size, res=0.5)
    data = np.random.default_rng(1).normal(200, 20, (bands, size, size))
    for c, r, s, band in squares:
        data[band, r : r + s, c : c + s] += 750
    path = tmp_path / "seam.tif"
    write_raster(path, np.clip(data, 0, 65535).astype("uint16"), grid)
    return path, grid


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    return make_objects_scene(tmp_path_factory.mktemp("objects"), bands=4, size=128, n=24, seed=3)


def test_an_object_across_a_seam_comes_out_once_at_its_map_coordinates(tmp_path):
    # tiles of 64 px overlapping by 16 start at 0, 48, 64: the square (56..66) crosses the edge of the first tile
    raster, grid = seam_scene(tmp_path, [(56, 20, 10, 0)])
    truth = pixel_to_map([[56, 20, 66, 30]], grid.transform)
    for settings in ({}, {"exclude_padding": False, "merge": "greedy_nmm", "match_metric": "ios"}):
        result, layer = run(tmp_path, raster, overwrite=True, **settings)
        assert len(layer) == 1 and result.counts == {"car": 1, "boat": 0}
        np.testing.assert_allclose(layer.boxes, truth)
    # without the central zones and with plain IoU the cut box survives next to the whole one
    _, layer = run(tmp_path, raster, overwrite=True, exclude_padding=False)
    assert len(layer) == 2


def test_two_tile_sizes_give_the_same_objects_without_duplicates(tmp_path, objects):
    raster, _, grid, boxes, names = objects
    truth = pixel_to_map(boxes, grid.transform)
    counts = []
    for tile, overlap in ((64, 16), (96, 24)):
        result, layer = run(tmp_path / str(tile), raster, tile_size=tile, overlap=overlap)
        for cls in ("car", "boat"):
            b = layer.boxes[layer.class_names == cls]
            iou = pairwise_iou(b, b)
            np.fill_diagonal(iou, 0)
            assert not (iou > 0.5).any()
        assert pairwise_iou(layer.boxes, truth).max(axis=1).min() > 0.99  # every detection is a true square
        counts.append(len(layer))
        assert result.tiles == len(plan_tiles(128, 128, tile, overlap))
    assert abs(counts[0] - counts[1]) <= 0.05 * max(counts) and counts[0] == len(names)


def test_output_file_fields_style_and_seam_analysis(tmp_path, objects):
    raster, labels, grid, boxes, names = objects
    result, _ = run(tmp_path, raster)
    gdf = gpd.read_file(result.out, layer="detections")
    assert gdf.crs == grid.crs and {"class_name", "class_value", "score"} <= set(gdf.columns)
    assert sorted(gdf.class_name.unique()) == ["boat", "car"] and set(gdf.class_value) == {1, 2}
    assert result.qml.exists() and result.counts == {"car": names.count("car"), "boat": names.count("boat")}
    metrics = evaluate_detections(DetectionEvaluateConfig.build(prediction=result.out, reference=labels,
                                                                class_field="kind", out=tmp_path / "eval"))  # fmt: skip
    assert metrics.metrics["tiling"] == {"tile_size": 64, "overlap": 16, "width": 128, "height": 128}
    assert metrics.metrics["seams"] and not metrics.metrics["seams_note"]
    assert metrics.map50 == pytest.approx(1.0)
    # 16 px of overlap, anchors up to 32 px: the run says that larger objects may be cut and counted twice
    assert any("overlap by 16 px, less than the largest objects this model targets (32 px)" in w
               and "--tile-size 64" in w for w in result.warnings)  # fmt: skip


def test_the_overlap_warning_names_the_tile_that_fits_the_largest_objects(objects):
    from terralearn.predict.detect import overlap_warning

    card = card_for(objects[0])  # anchors up to 32 px
    assert "--tile-size 64" in overlap_warning(card, 64, 16, 1000)
    assert overlap_warning(card, 64, 32, 1000) is None  # the overlap holds the largest objects
    assert overlap_warning(card, 256, 16, 200) is None  # one tile covers the raster: nothing is cut


def test_central_zones_drop_boxes_in_a_shared_margin_only(objects):
    raster, _, grid, _, _ = objects
    tiles = plan_tiles(128, 128, 64, 16)  # starts 0, 48, 64
    lo, hi = central_zones(tiles.col_starts, 64)
    np.testing.assert_allclose(np.c_[lo, hi], [[-np.inf, 56], [56, 88], [88, np.inf]])
    tile = np.zeros((1, 4, 64, 64), np.float32)
    tile[0, 0, 10:16, 1:7] = 40  # left margin of the first tile: no neighbour there, kept
    tile[0, 0, 30:36, 58:64] = 40  # right margin, shared with the next tile: dropped
    for padding, expected in ((True, 1), (False, 2)):
        found = TileDetector(Oracle(), grid.transform, tiles, exclude_padding=padding)(tile, [(0, 0)])
        assert len(found) == expected
    found = TileDetector(Oracle(), grid.transform, tiles)(tile, [(0, 48)])  # the middle tile: both sides shared
    assert len(found) == 0


def test_area_of_interest_skips_tiles_and_drops_detections(tmp_path, objects):
    raster, _, grid, boxes, _ = objects
    aoi = gpd.GeoDataFrame(geometry=[pixel_box(grid, 0, 0, 40, 128)], crs=grid.crs)
    aoi.to_file(tmp_path / "aoi.gpkg")
    result, layer = run(tmp_path, raster, aoi=tmp_path / "aoi.gpkg")
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    assert len(layer) == int((centres < 40).sum()) > 0
    assert shapely.contains_xy(aoi.geometry[0], *((layer.boxes[:, :2] + layer.boxes[:, 2:]) / 2).T).all()
    assert result.tiles_skipped == 6 and result.tiles == 3  # the tile columns at 48 and 64 lie outside


def test_tta_gives_the_same_boxes_for_the_oracle(tmp_path, objects):
    raster = objects[0]
    _, plain = run(tmp_path / "a", raster)
    _, tta = run(tmp_path / "b", raster, tta=True)
    order = lambda layer: np.lexsort(layer.boxes.T[::-1])  # noqa: E731
    np.testing.assert_allclose(plain.boxes[order(plain)], tta.boxes[order(tta)])


def test_nodata_tiles_are_skipped(tmp_path):
    grid = make_grid(width=128, height=64, res=0.5)
    data = np.random.default_rng(0).normal(200, 20, (4, 64, 128)).astype("uint16")
    data[:, :, :64] = 0
    write_raster(tmp_path / "nd.tif", data, grid, nodata=0)
    result, layer = run(tmp_path, tmp_path / "nd.tif")
    assert result.tiles_skipped == 1 and len(layer) == 0  # the first tile (0..64) is all nodata


def test_errors_leave_no_output(tmp_path, objects):
    raster = objects[0]
    out = tmp_path / "out.gpkg"
    three = tmp_path / "three.tif"
    write_raster(three, np.full((3, 64, 64), 200, "uint16"), make_grid(64, 64, 0.5))
    cases = [
        (RasterError, "trained on 3 bands", dict(model=package(tmp_path / "p3", three), rasters=[raster])),
        (PackageError, "`terralearn detect` needs one for object",
         dict(model=fake_package(tmp_path / "seg", "pixel_classification"), rasters=[raster])),
        (InputFileError, "does not exist", dict(model=package(tmp_path / "p4", raster), rasters=[tmp_path / "no.tif"])),
    ]  # fmt: skip
    for error, words, settings in cases:
        with pytest.raises(error, match=words):
            detect(DetectConfig.build(out=out, **settings), network=Oracle())
        assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    out.write_text("old")
    with pytest.raises(OutputExistsError):
        detect(DetectConfig.build(out=out, model=tmp_path / "p4", rasters=[raster]), network=Oracle())
    assert out.read_text() == "old"


def test_cli_runs_untrained_detectors_on_1_and_4_bands(tmp_path):
    from terralearn.models.detection import build_detector

    for bands in (1, 4):
        folder = tmp_path / f"b{bands}"
        folder.mkdir()
        raster, *_ = make_objects_scene(folder, bands=bands, size=96, n=6, seed=bands)
        torch.manual_seed(0)
        net = build_detector("faster_rcnn_resnet18_fpn", bands, 2, 64, "cpu", anchor_sizes=(4, 8, 16, 24, 32))
        tensors = {k: v.detach().numpy() for k, v in net.state_dict().items()}
        pkg = package(folder / "pkg", raster, tensors)
        args = ["detect", "-m", pkg, "-r", raster, "-o", folder / "det.gpkg", "--threshold", "0.05", "--overlap",
                "16"]  # fmt: skip
        result = CliRunner().invoke(app, [str(a) for a in args], env={"TERRALEARN_WORKSPACE": str(tmp_path)})
        assert result.exit_code == 0, result.output
        assert "det.gpkg" in result.output and "car" in result.output
        layer = read_detections(folder / "det.gpkg")
        assert layer.crs is not None and layer.metadata["tile_size"] == 256  # the chip (64 px), at least 256
