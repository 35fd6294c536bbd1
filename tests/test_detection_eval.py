"""Detection accuracy: matching, AP, COCO agreement, AOI, tile seams (evaluate/detections.py), and the stage with
its report (evaluate/detection_stage.py, evaluate/detection_report.py).

Hand-checkable cases on boxes 10 m wide in EPSG:32633; the AP values are worked out in the comments.
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine

from terralearn.config import DetectionEvaluateConfig
from terralearn.errors import ConfigError, OutputExistsError
from terralearn.evaluate.detection_stage import evaluate_detections
from terralearn.evaluate.detections import (
    average_precision,
    coco_map,
    evaluate_boxes,
    match_detections,
    seam_distance,
    seam_table,
    tile_seams,
)
from terralearn.io.detections import write_detections

UTM = "EPSG:32633"
X0, Y0 = 500_000.0, 5_000_000.0


def box(i: int, dx: float = 0.0, size: float = 10.0) -> list[float]:
    """The i-th 10 m box along a row (20 m apart), shifted by dx."""
    x = X0 + 20 * i + dx
    return [x, Y0, x + size, Y0 + size]


def test_perfect_detections_score_one():
    refs = [box(i) for i in range(4)]
    r = evaluate_boxes(refs, [0, 0, 1, 1], [0.9, 0.8, 0.7, 0.6], refs, [0, 0, 1, 1], ["car", "truck"])
    for c in r.per_class:
        assert (c.tp, c.fp, c.fn) == (2, 0, 0)
        assert c.precision == c.recall == c.f1 == c.ap == c.ap50 == 1.0
    assert r.map50 == pytest.approx(1.0) and r.map == pytest.approx(1.0) and r.map50_all_point == 1.0


def test_false_positive_ranked_above_the_true_positive():
    # ranked: FP (0.9), TP (0.5); one object. Precision 0 at recall 0, then 1/2 at recall 1: AP = 1 * 0.5
    r = evaluate_boxes([box(5), box(0)], [0, 0], [0.9, 0.5], [box(0)], [0], ["car"])
    c = r.per_class[0]
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    assert c.ap == pytest.approx(0.5) and r.map50 == pytest.approx(0.5)
    # ranked TP, FP, TP over two objects: (P, R) = (1, .5), (.5, .5), (2/3, 1); envelope: .5 * 1 + .5 * 2/3 = 5/6
    r = evaluate_boxes([box(0), box(5), box(1)], [0, 0, 0], [0.9, 0.8, 0.7], [box(0), box(1)], [0, 0], ["car"])
    assert r.per_class[0].ap == pytest.approx(5 / 6)
    assert r.map50 == pytest.approx(5 / 6, abs=0.01)  # COCO's 101-point interpolation is close


def test_duplicate_detection_counts_as_false_positive():
    r = evaluate_boxes([box(0), box(0, dx=1)], [0, 0], [0.9, 0.8], [box(0)], [0], ["car"])
    c = r.per_class[0]
    assert (c.tp, c.fp, c.fn) == (1, 1, 0) and c.precision == 0.5 and c.recall == 1.0
    assert r.matching.det_ref.tolist() == [0, -1]  # the higher score took the object
    assert c.ap == 1.0  # the duplicate ranks below the only TP: it costs precision, not AP


def test_class_mismatch_is_a_false_positive_and_a_miss():
    r = evaluate_boxes([box(0)], [1], [0.9], [box(0)], [0], ["car", "truck"])
    car, truck = r.per_class
    assert (car.tp, car.fp, car.fn, car.ap) == (0, 0, 1, 0.0)
    assert (truck.tp, truck.fp, truck.fn, truck.reference) == (0, 1, 0, 0)
    assert truck.ap is None and truck.recall is None  # no reference: undefined, left out of mAP
    assert r.map50 == 0.0 and r.map50_all_point == 0.0


def test_greedy_match_takes_the_best_unmatched_object():
    # A (0.9) overlaps R0 by IoU 80/130 = 0.615 and R1 by 90/120 = 0.75: it takes its best, R1.
    # B (0.8) overlaps R1 by 0.75 too, but R1 is taken; R0 at 70/130 = 0.538 still clears 0.5: B takes R0 (the COCO
    # rule; VOC's code would call B a false positive). C (0.7) overlaps both by more than 0.5, both are taken: FP.
    refs = [[0, 0, 10, 10], [4, 0, 14, 10]]
    dets = [[2, 0, 13, 10], [3, 0, 13, 10], [2, 0, 12, 10]]
    m = match_detections(dets, [0, 0, 0], [0.9, 0.8, 0.7], refs, [0, 0], min_iou=0.5)
    assert m.det_ref.tolist() == [1, 0, -1] and m.ref_det.tolist() == [1, 0]
    assert m.iou[:2] == pytest.approx([0.75, 70 / 130]) and m.tp.tolist() == [True, True, False]


def test_min_iou_and_score_threshold():
    # shifted 4 m on a 10 m box: IoU = 60 / 140 = 0.43: a miss at 0.5, a match at 0.4
    det, ref = [box(0, dx=4)], [box(0)]
    assert evaluate_boxes(det, [0], [0.9], ref, [0], ["car"]).per_class[0].tp == 0
    r = evaluate_boxes(det, [0], [0.9], ref, [0], ["car"], min_iou=0.4)
    assert r.per_class[0].tp == 1 and r.per_class[0].ap == 1.0 and r.per_class[0].ap50 == 0.0
    # a threshold above the TP's score: counts drop to nothing, AP (over all detections) stays
    r = evaluate_boxes([box(0), box(1)], [0, 0], [0.3, 0.9], [box(0), box(1)], [0, 0], ["car"], score_threshold=0.5)
    c = r.per_class[0]
    assert (c.tp, c.fp, c.fn, c.detections) == (1, 0, 1, 1) and c.recall == 0.5 and c.ap == 1.0


def test_aoi_keeps_objects_whose_centre_is_inside():
    aoi = shapely.box(X0 - 1, Y0 - 1, X0 + 50, Y0 + 11)  # holds the centres of boxes 0, 1, 2 (x = 5, 25, 45)
    dets = [box(0), box(1), box(4)]  # box 4 lies outside (a FP there is not counted)
    refs = [box(0), box(1), box(2), box(3)]  # box 2 is missed inside, box 3 lies outside
    r = evaluate_boxes(dets, [0, 0, 0], [0.9, 0.8, 0.7], refs, [0] * 4, ["car"], aoi=aoi)
    c = r.per_class[0]
    assert (c.tp, c.fp, c.fn) == (2, 0, 1)
    assert r.counts["reference_outside_aoi"] == 1 and r.counts["detections_outside_aoi"] == 1


def test_own_ap50_agrees_with_coco():
    rng = np.random.default_rng(7)
    n = 150
    xy = rng.uniform(0, 2000, (n, 2)) + np.array([X0, Y0])
    refs = np.concatenate([xy, xy + rng.uniform(5, 15, (n, 2))], axis=1)
    labels = rng.integers(0, 3, n)
    keep = rng.random(n) < 0.8  # 80 % found, boxes jittered by up to 2 m
    dets = refs[keep] + rng.normal(0, 1.0, (keep.sum(), 4))
    fp_xy = rng.uniform(0, 2000, (40, 2)) + np.array([X0, Y0])
    dets = np.concatenate([dets, np.concatenate([fp_xy, fp_xy + 10], axis=1)])
    det_labels = np.concatenate([labels[keep], rng.integers(0, 3, 40)])
    scores = rng.random(len(dets))
    r = evaluate_boxes(dets, det_labels, scores, refs, labels, ["a", "b", "c"])
    assert 0.2 < r.map50 < 0.95  # a non-trivial case
    assert r.map50_all_point == pytest.approx(r.map50, abs=0.02)
    assert r.map < r.map50  # stricter IoUs cost AP
    coco = coco_map(dets, det_labels, scores, refs, labels, 3)
    assert coco["map"] == pytest.approx(np.mean(coco["per_class"]))


def test_average_precision_all_point():
    assert average_precision([1.0, 0.5, 2 / 3], [0.5, 0.5, 1.0]) == pytest.approx(5 / 6)
    assert average_precision([], []) == 0.0  # no detection: nothing found
    assert np.isnan(average_precision([0.0], [np.nan]))  # no reference object: undefined


def test_tile_seams_and_seam_table():
    # width 100, tiles of 40 overlapping by 10: starts 0, 30, 60; edges inside the raster at 30, 40, 60, 70
    t = Affine(2.0, 0, X0, 0, -2.0, Y0 + 200)
    xs, ys = tile_seams(t, 100, 100, 40, 10)
    assert xs.tolist() == [X0 + 60, X0 + 80, X0 + 120, X0 + 140]
    assert ys.tolist() == sorted([Y0 + 200 - 2 * r for r in (30, 40, 60, 70)])
    assert tile_seams(t, 30, 30, 40, 10)[0].size == 0  # one tile: no seam
    centred = [[X0 + 58, Y0 + 98, X0 + 62, Y0 + 102]]  # centre (X0 + 60, Y0 + 100): on a seam in x
    assert seam_distance(centred, xs, ys)[0] == pytest.approx(0.0)
    # two objects on a seam (missed) and two far away (found), one correct detection far away
    refs = np.array([[X0 + 59, Y0 + 10, X0 + 61, Y0 + 12], [X0 + 79, Y0 + 15, X0 + 81, Y0 + 17],
                     [X0 + 99, Y0 + 10, X0 + 101, Y0 + 12], [X0 + 29, Y0 + 19, X0 + 31, Y0 + 21]])  # fmt: skip
    table = seam_table(refs, [False, False, True, True], refs[2:3], [True], xs, ys, edges=[0, 5, 100])
    near, far = table["bins"]
    assert (near["reference"], near["found"], near["recall"]) == (2, 0, 0.0)
    assert (far["reference"], far["found"], far["recall"], far["precision"]) == (2, 2, 1.0, 1.0)
    assert near["precision"] is None and far["high"] is None  # no detection near; the last bin is open


# --------------------------------------------------------------------------------------------- the stage


CLASSES = [
    {"index": 0, "value": 3, "name": "car", "colour": "#e41a1c"},
    {"index": 1, "value": 7, "name": "truck", "colour": "#377eb8"},
]


@pytest.fixture
def scene(tmp_path):
    """Detections on a 100 x 100 raster of 2 m pixels (tiles 40, overlap 10) and reference polygons named by class.

    car: two found, one missed, one FP; truck: one found; the reference also holds a 'boat' no detection has.
    """
    dets = [box(0), box(1, dx=1), box(8), box(3)]
    write_detections(
        tmp_path / "det.gpkg", dets, [3, 3, 3, 7], None, [0.9, 0.8, 0.6, 0.7], UTM, CLASSES,
        metadata={"grid": {"transform": [2.0, 0, X0, 0, -2.0, Y0 + 200], "width": 100, "height": 100},
                  "tile_size": 40, "overlap": 10},
    )  # fmt: skip
    refs = [box(0), box(1), box(2), box(3), box(6)]
    gpd.GeoDataFrame({"kind": ["car", "car", "CAR", "truck", "boat"]}, geometry=[shapely.box(*b) for b in refs],
                     crs=UTM).to_file(tmp_path / "ref.gpkg", engine="pyogrio")  # fmt: skip
    return tmp_path


def test_stage_writes_metrics_report_and_plots(scene):
    cfg = DetectionEvaluateConfig.build(prediction=scene / "det.gpkg", reference=scene / "ref.gpkg",
                                        class_field="kind", out=scene / "eval")  # fmt: skip
    res = evaluate_detections(cfg)
    m = json.loads(res.metrics_json.read_text())
    assert {"map50", "map", "per_class", "min_iou", "counts"} <= set(m)
    rows = {r["class_name"]: r for r in m["per_class"]}
    assert set(rows) == {"car", "truck", "boat"}  # 'CAR' matched the name case aside; 'boat' added
    car = rows["car"]
    assert (car["class_value"], car["tp"], car["fp"], car["fn"]) == (3, 2, 1, 1)
    assert car["precision"] == pytest.approx(2 / 3) and car["recall"] == pytest.approx(2 / 3)
    assert car["ap50"] == pytest.approx(2 / 3)  # TP, TP, FP over 3 objects: precision 1 up to recall 2/3
    assert rows["truck"]["ap50"] == 1.0 and rows["boat"]["fn"] == 1 and rows["boat"]["ap50"] == 0.0
    assert m["map50"] == pytest.approx((2 / 3 + 1 + 0) / 3, abs=0.01)
    assert m["counts"]["tp"] == 3 and m["counts"]["reference"] == 5
    assert m["seams"] is not None and sum(b["reference"] for b in m["seams"]["bins"]) == 5
    assert any(w["code"] == "reference_classes_unknown" for w in m["warnings"])
    html = res.report.read_text()
    assert "truck" in html and "boat" in html and "Accuracy near tile seams" in html
    assert res.pr_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and res.seams_png.exists()
    with pytest.raises(OutputExistsError):
        evaluate_detections(cfg)
    again = evaluate_detections(cfg.model_copy(update={"overwrite": True, "min_iou": 0.3}))
    assert again.metrics["min_iou"] == 0.3


def test_stage_settings_errors(scene):
    with pytest.raises(ConfigError, match="min_iou = 0"):
        DetectionEvaluateConfig.build(prediction="a.gpkg", reference="b.gpkg", out="o", min_iou=0)
    cfg = DetectionEvaluateConfig.build(prediction=scene / "det.gpkg", reference=scene / "ref.gpkg", out=scene / "e")
    with pytest.raises(ConfigError, match=r"2 classes .*no class field"):
        evaluate_detections(cfg)  # two detection classes need the reference's class field
    assert not (scene / "e").exists()
    write_detections(scene / "bare.gpkg", [box(0)], [3], None, [0.9], UTM, CLASSES)  # no tile grid recorded
    cfg = cfg.model_copy(update={"prediction": scene / "bare.gpkg", "class_field": "kind", "tile_size": 40})
    with pytest.raises(ConfigError, match=r"tile_size = 40 .* grid is unknown"):
        evaluate_detections(cfg)


def test_stage_with_points_aoi_and_no_tile_grid(tmp_path):
    # one class, no class field: every point is a 'car'; points buffered by 5 m match the 10 m boxes at IoU 1
    write_detections(tmp_path / "det.gpkg", [box(0), box(1), box(2)], [3, 3, 3], None, [0.9, 0.8, 0.7], UTM,
                     CLASSES[:1])  # fmt: skip
    pts = [shapely.Point(b[0] + 5, b[1] + 5) for b in (box(0), box(1), box(5))]  # box(5) lies outside the AOI
    gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=pts, crs=UTM).to_file(tmp_path / "pts.gpkg", engine="pyogrio")
    gpd.GeoDataFrame(geometry=[shapely.box(X0, Y0, X0 + 60, Y0 + 10)], crs=UTM).to_file(tmp_path / "aoi.gpkg")
    cfg = DetectionEvaluateConfig.build(prediction=tmp_path / "det.gpkg", reference=tmp_path / "pts.gpkg",
                                        out=tmp_path / "eval", point_radius=5, aoi=tmp_path / "aoi.gpkg")  # fmt: skip
    res = evaluate_detections(cfg)
    car = res.metrics["per_class"][0]
    assert (car["tp"], car["fp"], car["fn"]) == (2, 1, 0)  # box(2) has no point: a FP; the point at box(5) is out
    assert res.metrics["counts"]["reference_outside_aoi"] == 1 and res.metrics["counts"]["reference_points"] == 3
    assert res.metrics["seams"] is None and res.seams_png is None
    assert "no tile size" in res.report.read_text()


def test_an_annotation_file_of_pixel_boxes_is_a_reference_on_the_detections_grid(scene):
    # the scene's grid: 2 m pixels from (X0, Y0 + 200) down; the same reference as ref.gpkg, as a VOC file of pixels
    to_pixel = ~Affine(2.0, 0, X0, 0, -2.0, Y0 + 200)
    lines = []
    for name, b in zip(["car", "car", "car", "truck", "boat"], [box(0), box(1), box(2), box(3), box(6)], strict=True):
        (c0, r1), (c1, r0) = to_pixel @ (b[0], b[1]), to_pixel @ (b[2], b[3])
        lines.append(f"<object><name>{name}</name><bndbox><xmin>{c0}</xmin><ymin>{r0}</ymin><xmax>{c1}</xmax>"
                     f"<ymax>{r1}</ymax></bndbox></object>")  # fmt: skip
    (scene / "ref.xml").write_text(f"<annotation><filename>scene.tif</filename><size><width>100</width><height>100"
                                   f"</height><depth>1</depth></size>{''.join(lines)}</annotation>")  # fmt: skip
    vector = evaluate_detections(DetectionEvaluateConfig.build(
        prediction=scene / "det.gpkg", reference=scene / "ref.gpkg", class_field="kind", out=scene / "a"))  # fmt: skip
    pixels = evaluate_detections(DetectionEvaluateConfig.build(
        prediction=scene / "det.gpkg", reference=scene / "ref.xml", out=scene / "b"))  # fmt: skip
    assert pixels.metrics["per_class"] == vector.metrics["per_class"]
    assert pixels.metrics["map50"] == vector.metrics["map50"] and pixels.metrics["counts"]["reference"] == 5
    # detections without the grid of `terralearn detect` cannot place pixel boxes: refused, nothing written
    write_detections(scene / "bare.gpkg", [box(0)], [3], None, [0.9], UTM, CLASSES)
    with pytest.raises(ConfigError, match="record no raster grid"):
        evaluate_detections(DetectionEvaluateConfig.build(prediction=scene / "bare.gpkg", reference=scene / "ref.xml",
                                                          out=scene / "c"))  # fmt: skip
    assert not (scene / "c").exists()
