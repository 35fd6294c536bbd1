"""Instance polygons against reference polygons: F1 at IoU 0.5, mask AP, per-object IoU, merges and splits."""

from __future__ import annotations

import pytest
import shapely

from terralearn.evaluate.instances import evaluate_instances


def sq(x, y, s=10):
    return shapely.box(x, y, x + s, y + s)


def test_matches_at_iou_half_with_merges_splits_and_misses():
    refs = [sq(0, 0), sq(20, 0), sq(40, 0), sq(52, 0), sq(80, 0), sq(100, 0), sq(0, 40, 20)]
    preds = [
        sq(0, 0),  # exact: TP
        sq(21, 0),  # IoU 90/110 = 0.82: TP
        shapely.box(40, 0, 62, 10),  # covers refs 2 and 3 (40-50, 52-62): a merge; IoU with each < 0.5: FP
        sq(86, 0),  # IoU 40/160 = 0.25 with ref 4: FP (and ref 4 missed)
        shapely.box(0, 40, 9, 60),
        shapely.box(11, 40, 20, 60),  # two parts of ref 6 (IoU 0.45): a split, both FP
        sq(200, 200),  # nowhere: FP
    ]  # ref 5 (100, 0) is never predicted
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    out = evaluate_instances(preds, [0] * len(preds), scores, refs, [0] * len(refs), ["building"])
    assert (out["tp"], out["fp"], out["fn"]) == (2, 5, 5)
    assert out["precision_50"] == pytest.approx(2 / 7) and out["recall_50"] == pytest.approx(2 / 7)
    assert out["f1_50"] == pytest.approx(2 / 7)
    assert (out["merged_predictions"], out["split_references"]) == (1, 1)
    # AP50: the two best-scored predictions are the two hits: precision 1 up to recall 2/7
    assert out["mask_map50"] == pytest.approx(2 / 7)
    assert 0 < out["mask_map"] < out["mask_map50"]  # the shifted hit fails at IoU >= 0.85
    iou = out["object_iou"]
    assert iou["count"] == 7 and iou["quantiles"]["0.5"] == pytest.approx(100 / 220)  # best IoU per reference
    assert sum(iou["histogram"]["counts"]) == 7


def test_classes_are_matched_apart_and_empty_inputs_give_no_figure():
    refs, preds = [sq(0, 0), sq(20, 0)], [sq(0, 0), sq(20, 0)]
    out = evaluate_instances(preds, [1, 0], [0.9, 0.8], refs, [0, 1], ["a", "b"])
    assert out["tp"] == 0 and out["f1_50"] is None  # right place, wrong class: no match
    out = evaluate_instances(preds, [0, 1], [0.9, 0.8], refs, [0, 1], ["a", "b"])
    assert out["f1_50"] == 1.0 and out["mask_map"] == pytest.approx(1.0)
    assert [c["ap50"] for c in out["per_class"]] == [1.0, 1.0]
    none = evaluate_instances([], [], [], refs, [0, 0], ["a"])
    assert none["recall_50"] == 0.0 and none["precision_50"] is None and none["mask_map50"] == 0.0
