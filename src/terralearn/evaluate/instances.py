"""Instance polygons against reference polygons, pure (shapely geometries in map coordinates in, figures out).

- **Matching** at ``min_iou`` (default 0.5, the SpaceNet building metric): predictions in score order each take
  the free reference polygon of the same class with the best polygon IoU (``evaluate.detections``' greedy
  matcher, fed with polygon IoUs from an STRtree query). Precision, recall and F1 per class and over all.
- **Mask AP**: all-point interpolated AP per class at IoU 0.5 (``mask_map50``, mean over classes with
  references) and the mean over IoU 0.50, 0.55, ..., 0.95 (``mask_map``, COCO's thresholds; matched with the
  same greedy rule at each).
- **Per-object IoU**: for each reference polygon, the best IoU of any prediction of its class (0 if none), as a
  distribution (quantiles and a histogram).
- **Merged and split objects**: a prediction is a *merge* when it covers at least half of each of two or more
  references; a reference is *split* when two or more predictions each lie at least half inside it. These are
  the errors that box metrics hide and that seams and touching buildings cause.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely

from terralearn.evaluate.detections import average_precision, greedy_matching, pr_curve

__all__ = ["MAP_THRESHOLDS", "evaluate_instances", "polygon_pairs"]

MAP_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())
COVER = 0.5  # the share of an object that counts as "covered" for merges and splits


def polygon_pairs(det, det_labels, ref, ref_labels):
    """(prediction, reference, IoU, intersection area) of every intersecting same-class pair."""
    det, ref = np.asarray(det, dtype=object), np.asarray(ref, dtype=object)
    if not len(det) or not len(ref):
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0), np.zeros(0)
    tree = shapely.STRtree(ref)
    d, r = tree.query(det, predicate="intersects")
    same = np.asarray(det_labels)[d] == np.asarray(ref_labels)[r]
    d, r = d[same], r[same]
    inter = shapely.area(shapely.intersection(det[d], ref[r]))
    union = shapely.area(det[d]) + shapely.area(ref[r]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return d, r, iou, inter


def _f1(p: float | None, r: float | None) -> float | None:
    return None if p is None or r is None or p + r == 0 else 2 * p * r / (p + r)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def evaluate_instances(det_polygons, det_labels, det_scores, ref_polygons, ref_labels, class_names: Sequence[str],
                       min_iou: float = 0.5) -> dict:  # fmt: skip
    """Every figure of the module documentation as plain JSON; labels are class indices into ``class_names``."""
    det = shapely.make_valid(np.asarray(det_polygons, dtype=object)) if len(det_polygons) else np.empty(0, object)
    ref = shapely.make_valid(np.asarray(ref_polygons, dtype=object)) if len(ref_polygons) else np.empty(0, object)
    dl, rl = np.asarray(det_labels, np.int64).reshape(-1), np.asarray(ref_labels, np.int64).reshape(-1)
    scores = np.asarray(det_scores, np.float64).reshape(-1)
    d, r, iou, inter = polygon_pairs(det, dl, ref, rl)
    per_class, aps, maps = [], [], []
    tp_all = fp_all = fn_all = 0
    for k, name in enumerate(class_names):
        di, ri = np.flatnonzero(dl == k), np.flatnonzero(rl == k)
        dmap, rmap = np.full(len(dl), -1), np.full(len(rl), -1)
        dmap[di], rmap[ri] = np.arange(len(di)), np.arange(len(ri))
        keep = (dl[d] == k) if len(d) else np.zeros(0, bool)
        cd, cr, ciou = dmap[d[keep]], rmap[r[keep]], iou[keep]
        at = {}
        for t in MAP_THRESHOLDS:
            ok = ciou >= t - 1e-12
            at[t] = greedy_matching(scores[di], len(ri), cd[ok], cr[ok], ciou[ok])
        ok = ciou >= min_iou - 1e-12
        m = greedy_matching(scores[di], len(ri), cd[ok], cr[ok], ciou[ok])
        tp, fp, fn = int(m.tp.sum()), int((~m.tp).sum()), int((m.ref_det < 0).sum())
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        ap50 = apm = None
        if len(ri):
            curves = {t: pr_curve(mt.tp[mt.order], len(ri)) for t, mt in at.items()}
            ap50 = average_precision(*curves[0.5]) if len(di) else 0.0
            apm = float(np.mean([average_precision(*c) if len(di) else 0.0 for c in curves.values()]))
            aps.append(ap50)
            maps.append(apm)
        p, rc = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_class.append({"name": str(name), "index": k, "references": int(len(ri)), "predictions": int(len(di)),
                          "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": rc, "f1": _f1(p, rc),
                          "ap50": ap50, "ap": apm})  # fmt: skip
    best = np.zeros(len(ref))
    if len(r):
        np.maximum.at(best, r, iou)
    p, rc = _ratio(tp_all, tp_all + fp_all), _ratio(tp_all, tp_all + fn_all)
    merged, split = _merges_and_splits(det, ref, d, r, inter)
    return {
        "min_iou": min_iou,
        "precision_50": p, "recall_50": rc, "f1_50": _f1(p, rc),
        "tp": tp_all, "fp": fp_all, "fn": fn_all,
        "mask_map50": float(np.mean(aps)) if aps else None,
        "mask_map": float(np.mean(maps)) if maps else None,
        "per_class": per_class,
        "object_iou": _distribution(best),
        "merged_predictions": merged, "split_references": split,
        "references": int(len(ref)), "predictions": int(len(det)),
    }  # fmt: skip


def _merges_and_splits(det, ref, d, r, inter) -> tuple[int, int]:
    if not len(d):
        return 0, 0
    covers_ref = inter >= COVER * shapely.area(ref[r])  # the prediction covers most of that reference
    inside_ref = inter >= COVER * shapely.area(det[d])  # the prediction lies mostly inside that reference
    merged = np.bincount(d[covers_ref], minlength=len(det)) >= 2
    split = np.bincount(r[inside_ref], minlength=len(ref)) >= 2
    return int(merged.sum()), int(split.sum())


def _distribution(values: np.ndarray) -> dict:
    if not len(values):
        return {"count": 0, "mean": None, "quantiles": {}, "histogram": {"edges": [], "counts": []}}
    edges = np.round(np.linspace(0, 1, 11), 2)
    counts, _ = np.histogram(values, bins=edges)
    return {
        "count": int(len(values)), "mean": float(values.mean()),
        "quantiles": {str(q): float(np.quantile(values, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }  # fmt: skip
