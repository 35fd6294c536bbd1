"""`terralearn detect --model model.onnx`: third-party detectors in the QGIS Deepness convention (YOLO layouts).

The ONNX models here are small hand-made YOLO heads that *find* bright 16-px squares (an average pool over
8-px grid cells, exact boxes): whatever the tiling, each square must come out once, at its map coordinates,
with its class, and only when the input is scaled as Deepness scales it (``(x / 255 - mean) / std``).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from terralearn.config import DetectConfig
from terralearn.errors import ConfigError, PackageError
from terralearn.io.detections import read_detections
from terralearn.io.raster import write_raster
from terralearn.predict import deepness
from terralearn.predict.detect import detect
from terralearn.predict.onnx_detector import onnx_detection_card
from tests.data.make_data import make_grid, pixel_box

MEAN, STD = [0.5, 0.5], [0.25, 0.25]  # Deepness units: the model sees (x / 255 - 0.5) / 0.25
BACKGROUND, BRIGHT = 100, 220  # -0.43 and 1.45 once scaled
SQUARES = [(8, 8, "ship"), (40, 40, "car"), (40, 96, "ship"), (88, 152, "car"), (112, 16, "ship"), (24, 176, "car"),
           (64, 112, "ship")]  # (row, col) of each 16-px square, all on the 8-px cell grid  # fmt: skip


class SquareYolo(nn.Module):
    """A YOLO head over 8-px cells: each cell proposes the 16-px box it starts; band 2 says ship or car."""

    def __init__(self, layout: str) -> None:
        super().__init__()
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.avg_pool2d(x, 16, stride=8)  # (B, 2, n, n): mean of each cell's 16-px window
        b, _, n, m = z.shape
        ii, jj = torch.meshgrid(torch.arange(n, dtype=x.dtype), torch.arange(m, dtype=x.dtype), indexing="ij")
        cx, cy = (8 * jj + 8).expand(b, n, m), (8 * ii + 8).expand(b, n, m)
        size = torch.full_like(cx, 16.0)
        obj = torch.sigmoid(20 * (z[:, 0] - 1.0))  # a whole bright window only (a half one scores ~0)
        ship = torch.sigmoid(10 * (z[:, 1] - 0.5))
        rows = [cx, cy, size, size] + ([obj] if self.layout != "YOLO_Ultralytics" else [])
        # YOLOv5 rows hold class probabilities beside the objectness; v6 and Ultralytics rows hold class scores
        rows += [ship, 1 - ship] if self.layout == "YOLO_v5_or_v7_default" else [ship * obj, (1 - ship) * obj]
        out = torch.stack([r.reshape(b, -1) for r in rows], 1)  # (B, values, N)
        return out if self.layout == "YOLO_Ultralytics" else out.transpose(1, 2)


def export_yolo(path, layout, meta: dict, batch_dynamic=False, side=64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SquareYolo(layout), (torch.zeros(1, 2, side, side),), str(path), input_names=["images"],
                          output_names=["output0"], dynamic_axes={"images": {0: "batch"}} if batch_dynamic else None,
                          opset_version=17, dynamo=False)  # fmt: skip
    model = onnx.load(str(path))
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))
    return path


def deepness_meta(layout, **extra):
    return {"model_type": json.dumps("Detector"), "det_type": json.dumps(layout), "resolution": 50,
            "class_names": {"0": "ship", "1": "car"}, "standardization_mean": MEAN, "standardization_std": STD,
            "tiles_overlap": 25, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_det")
    grid = make_grid(width=200, height=136, res=0.5)  # UTM, 0.5 m pixels (odd sizes: the last tiles overlap more)
    data = np.full((2, grid.height, grid.width), BACKGROUND, np.uint8)
    for row, col, name in SQUARES:
        data[0, row : row + 16, col : col + 16] = BRIGHT
        data[1, row : row + 16, col : col + 16] = BRIGHT if name == "ship" else BACKGROUND
    write_raster(root / "scene.tif", data, grid)
    return root, grid


def run(scene, model, name, **kw):
    root, _ = scene
    config = DetectConfig.build(model=model, rasters=[root / "scene.tif"], out=root / f"{name}.gpkg", **kw)
    return detect(config), read_detections(root / f"{name}.gpkg")


def expected(grid):
    return sorted((round(g.bounds[0], 3), round(g.bounds[3], 3), name)
                  for g, name in ((pixel_box(grid, c, r, c + 16, r + 16), n) for r, c, n in SQUARES))  # fmt: skip


def found(layer):
    pairs = zip(layer.boxes, layer.class_names, strict=True)
    return sorted((round(float(b[0]), 3), round(float(b[3]), 3), str(n)) for b, n in pairs)


@pytest.mark.parametrize("layout", ["YOLO_v5_or_v7_default", "YOLO_Ultralytics"])
def test_a_yolo_onnx_model_detects_every_object_once_at_its_map_position(scene, tmp_path, layout):
    root, grid = scene
    model = export_yolo(
        tmp_path / "yolo.onnx", layout, deepness_meta(layout), batch_dynamic=layout == "YOLO_Ultralytics"
    )
    result, gdf = run(scene, model, f"found_{layout}")
    assert result.tile_size == 64 and result.overlap == 16  # the graph's input; tiles_overlap 25 %
    assert result.tiles > 6  # the squares lie across many tiles and seams
    assert found(gdf) == expected(grid)
    assert gdf.scores.min() > 0.9 and result.counts == {"ship": 4, "car": 3}
    sides = gdf.boxes[:, 2:] - gdf.boxes[:, :2]
    assert np.allclose(sides, 8.0)  # 16 px of 0.5 m


def test_the_input_is_scaled_as_deepness_scales_it(scene, tmp_path):
    layout = "YOLO_v6"
    # without standardisation Deepness feeds x / 255: the background (0.39) and the squares (0.86) both stay
    # under the head's objectness level, so nothing is found; with it, every square is
    plain = {k: v for k, v in deepness_meta(layout).items() if not k.startswith("standardization")}
    _, none = run(scene, export_yolo(tmp_path / "plain.onnx", layout, plain), "plain")
    assert len(none) == 0
    _, gdf = run(scene, export_yolo(tmp_path / "std.onnx", layout, deepness_meta(layout)), "std")
    assert found(gdf) == expected(scene[1])
    mean, std = deepness.raw_standardisation({"standardization_mean": MEAN, "standardization_std": STD}, 2)
    x = np.array([0.0, 100.0, 220.0, 255.0])
    assert np.allclose((x - mean[0]) / std[0], (x / 255 - MEAN[0]) / STD[0])


def test_the_card_comes_from_the_metadata_and_the_graph(tmp_path):
    layout = "YOLO_v5_or_v7_default"
    model = export_yolo(tmp_path / "m.onnx", layout, deepness_meta(layout, det_conf=0.6, det_iou_thresh=0.4))
    card = onnx_detection_card(model)
    assert (card["task"], card["band_count"], card["chip_size"], card["pixel_size"]) == ("detection", 2, [64, 64],
                                                                                          [0.5, 0.5])  # fmt: skip
    assert [c["name"] for c in card["classes"]] == ["ship", "car"] and [c["value"] for c in card["classes"]] == [1, 2]
    assert card["onnx"]["det_conf"] == 0.6 and card["onnx"]["batch"] == 1 and card["onnx"]["fixed_input"]
    assert np.allclose(card["normalisation"]["mean"], [127.5, 127.5])
    # no class names: as many classes as the output holds
    bare = export_yolo(tmp_path / "bare.onnx", layout, {"model_type": json.dumps("Detector")})
    assert [c["name"] for c in onnx_detection_card(bare)["classes"]] == ["class_1", "class_2"]


def test_the_models_own_confidence_applies_unless_the_command_sets_one(scene, tmp_path):
    layout = "YOLO_v5_or_v7_default"
    model = export_yolo(tmp_path / "conf.onnx", layout, deepness_meta(layout, det_conf=0.999999))
    result, gdf = run(scene, model, "strict")
    assert len(gdf) == 0  # every square scores about 0.9999: under the model's det_conf
    result, gdf = run(scene, model, "given", threshold=0.5)
    assert len(gdf) == len(SQUARES)


def test_wrong_onnx_models_and_tiles_are_refused_in_plain_words(scene, tmp_path):
    layout = "YOLO_v5_or_v7_default"
    model = export_yolo(tmp_path / "m.onnx", layout, deepness_meta(layout))
    with pytest.raises(ConfigError, match="takes tiles of 64 px at most"):
        run(scene, model, "big", tile_size=128)
    segmentor = export_yolo(tmp_path / "seg.onnx", layout, {**deepness_meta(layout), "model_type": '"Segmentor"'})
    with pytest.raises(PackageError, match="'Segmentor' model"):
        run(scene, segmentor, "seg")
    odd = export_yolo(tmp_path / "odd.onnx", layout, {**deepness_meta(layout), "det_type": '"YOLO_v99"'})
    with pytest.raises(PackageError, match="det_type 'YOLO_v99'"):
        run(scene, odd, "odd")
    three = export_yolo(tmp_path / "three.onnx", layout, {**deepness_meta(layout),
                                                          "class_names": {"0": "a", "1": "b", "2": "c"}})  # fmt: skip
    with pytest.raises(PackageError, match="names 3 classes, but its output holds 2"):
        run(scene, three, "three")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(PackageError, match="not a readable ONNX model"):
        run(scene, tmp_path / "junk.onnx", "junk")
    assert not list(scene[0].glob("big*")) and not list(scene[0].glob("seg*"))  # nothing written


def test_the_layouts_decode_to_corner_boxes_and_scores():
    rows = np.array([[[10, 20, 4, 6, 0.5, 0.2, 0.8]]], np.float32)  # cx, cy, w, h, objectness, two classes
    boxes, scores, classes = deepness.decode(rows, "YOLO_v5_or_v7_default")
    assert np.allclose(boxes, [[8, 17, 12, 23]]) and np.allclose(scores, [0.4]) and classes.tolist() == [1]
    _, scores, _ = deepness.decode(rows, "YOLO_v6")
    assert np.allclose(scores, [0.8])  # the objectness is ignored
    columns = np.array([[[10], [20], [4], [6], [0.7], [0.1]]], np.float32)  # (1, 4 + K, N)
    boxes, scores, classes = deepness.decode(columns, "YOLO_Ultralytics")
    assert np.allclose(boxes, [[8, 17, 12, 23]]) and np.allclose(scores, [0.7]) and classes.tolist() == [0]
    assert len(deepness.decode(np.zeros((1, 0, 7)), "YOLO_v5_or_v7_default")[0]) == 0
    assert deepness.class_count("YOLO_Ultralytics", (1, 6, 8400)) == 2
    assert deepness.class_count("YOLO_v6", (1, "n", 7)) == 2 and deepness.class_count("YOLO_v6", (1, "n", "v")) is None
    assert deepness.read_value('"Detector"') == "Detector" and deepness.read_value("Detector") == "Detector"
    assert deepness.read_value("{0: 'ship'}") == {0: "ship"}


def test_the_command_line_detects_with_an_onnx_file(scene, tmp_path):
    from typer.testing import CliRunner

    from terralearn.cli.app import app

    layout = "YOLO_Ultralytics"
    model = export_yolo(tmp_path / "cli.onnx", layout, deepness_meta(layout), batch_dynamic=True)
    out = tmp_path / "cli.gpkg"
    result = CliRunner().invoke(app, ["detect", "-m", str(model), "-r", str(scene[0] / "scene.tif"), "-o", str(out),
                                      "--workspace", str(tmp_path / "ws")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Detected 7 objects (ship 4, car 3)" in result.output and len(read_detections(out)) == 7
    result = CliRunner().invoke(app, ["detect", "-m", str(tmp_path / "missing.onnx"), "-r",
                                      str(scene[0] / "scene.tif"), "-o", str(tmp_path / "x.gpkg")])  # fmt: skip
    assert result.exit_code != 0 and "does not exist" in result.output and not (tmp_path / "x.gpkg").exists()
