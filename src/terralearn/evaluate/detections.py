"""Accuracy of object detections against reference objects: pure maths on box arrays, no file access.

Boxes are (N, 4) ``xyxy`` float arrays in map units (see :mod:`terralearn.geo.boxes`); classes are integer indices
0..K-1. The whole map is one "image".

- **Matching** (the COCO rule): per class, detections are taken highest score first (ties in input order); each
  takes the unmatched reference object of its class with the highest IoU, if that IoU is at least ``min_iou``
  (ties: the first object). A detection that takes none is a false positive, so a duplicate of a found object counts
  against precision; an object no detection takes is a false negative. (PASCAL VOC's code differs in one corner: a
  detection whose best object is already taken is a false positive there even when another object would do.)
- **Per class** (the table of ArcGIS' *Compute Accuracy For Object Detection*): TP/FP/FN, precision, recall and F1 of
  the detections scoring at least ``score_threshold``, and the average precision over all detections (all-point
  interpolation, as PASCAL VOC since 2010) at ``min_iou`` and at IoU 0.5, with the precision-recall curve.
- **COCO**: mAP@0.5 and mAP@[.5:.95] by ``faster_coco_eval`` (101-point interpolation, so within about 0.01 of the
  all-point values), with the area ranges off: map units are not pixels.
- **Tile seams**: recall and precision binned by the distance of each object's centre to the nearest tile edge,
  which shows whether merging the detections of overlapping tiles works.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from terralearn.geo.boxes import as_boxes, box_areas, boxes_to_polygons
from terralearn.geo.tiling import tile_starts

__all__ = [
    "ClassResult", "DetectionEvaluation", "Matching", "average_precision", "centres", "coco_map", "evaluate_boxes",
    "inside_aoi", "match_detections", "pr_curve", "seam_distance", "seam_table", "tile_seams",
]  # fmt: skip

#: The IoU thresholds of COCO's mAP@[.5:.95].
COCO_IOUS = np.linspace(0.5, 0.95, 10)
#: Boxes per COCO image (each image costs an IoU matrix of its detections by its objects).
COCO_IMAGE_BOXES = 2000


def _labels(labels, n: int) -> np.ndarray:
    out = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(out) != n:
        raise ValueError(f"got {n} boxes but {len(out)} labels")
    return out


def centres(boxes) -> np.ndarray:
    """(N, 2) centres of boxes."""
    b = as_boxes(boxes)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)


def inside_aoi(boxes, aoi) -> np.ndarray:
    """Whether each box's centre lies in the area of interest (a shapely geometry; the boundary counts)."""
    c = centres(boxes)
    shapely.prepare(aoi)
    return shapely.intersects_xy(aoi, c[:, 0], c[:, 1])


# --------------------------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Matching:
    """Greedy matches at one IoU threshold; arrays in the detections' and the references' input order."""

    order: np.ndarray  #: detection indices, highest score first (stable)
    tp: np.ndarray  #: bool per detection: it matched a reference object
    det_ref: np.ndarray  #: per detection, the index of the matched reference object, else -1
    ref_det: np.ndarray  #: per reference object, the index of its detection, else -1
    iou: np.ndarray  #: per detection, the IoU of its match (0 for a false positive)


def _pairs(db: np.ndarray, dl: np.ndarray, rb: np.ndarray, rl: np.ndarray, min_iou: float):
    """(detection, reference, IoU) of the same-class pairs with an IoU of at least ``min_iou`` (an STRtree query)."""
    if not len(db) or not len(rb):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    tree = shapely.STRtree(boxes_to_polygons(rb))
    d, r = tree.query(boxes_to_polygons(db), predicate="intersects")
    same = dl[d] == rl[r]
    d, r = d[same], r[same]
    a, b = db[d], rb[r]
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = box_areas(a) + box_areas(b) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    ok = iou >= min_iou
    return d[ok], r[ok], iou[ok]


def match_detections(det_boxes, det_labels, det_scores, ref_boxes, ref_labels, min_iou: float = 0.5) -> Matching:
    """Match detections to reference objects of the same class, greedily by score (see the module docstring).

    Candidate pairs come from an STRtree query, so the cost is O((N + M) log M) plus the overlapping pairs.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    db, rb = as_boxes(det_boxes), as_boxes(ref_boxes)
    dl, rl = _labels(det_labels, len(db)), _labels(ref_labels, len(rb))
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(db):
        raise ValueError(f"got {len(db)} boxes but {len(scores)} scores")
    if len(db) and len(rb):
        d, r, pair_iou = _pairs(db, dl, rb, rl, min_iou)
    else:
        d, r, pair_iou = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return greedy_matching(scores, len(rb), d, r, pair_iou)


def greedy_matching(scores, n_ref: int, d: np.ndarray, r: np.ndarray, pair_iou: np.ndarray) -> Matching:
    """Greedy matching by score from candidate pairs (detection ``d``, reference ``r``, IoU): each detection, in
    score order, takes the free reference of best IoU. Shared by boxes and by instance polygons."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_det = len(scores)
    order = np.argsort(-scores, kind="stable")
    det_ref = np.full(n_det, -1, np.int64)
    ref_det = np.full(n_ref, -1, np.int64)
    iou = np.zeros(n_det)
    if n_det and n_ref:
        rank = np.empty(n_det, np.int64)
        rank[order] = np.arange(n_det)
        pairs = np.lexsort((r, -pair_iou, rank[d]))  # by score rank, then best IoU, then first object
        d, r, pair_iou = d[pairs], r[pairs], pair_iou[pairs]
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]]) if len(d) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(d)] if len(d) else np.zeros(0, np.int64)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            for k in range(s, e):
                if ref_det[r[k]] < 0:
                    ref_det[r[k]] = d[k]
                    det_ref[d[k]] = r[k]
                    iou[d[k]] = pair_iou[k]
                    break
    return Matching(order, det_ref >= 0, det_ref, ref_det, iou)


# --------------------------------------------------------------------------------------------- curves


def pr_curve(tp_sorted, n_ref: int) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) after each detection, for detections sorted by score and their TP flags."""
    tp = np.asarray(tp_sorted, dtype=bool)
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, len(tp) + 1)
    recall = ctp / n_ref if n_ref > 0 else np.full(len(tp), np.nan)
    return precision, recall


def average_precision(precision, recall) -> float:
    """All-point interpolated AP (VOC 2010+): the area under the precision envelope; NaN without a recall."""
    p, r = np.asarray(precision, float), np.asarray(recall, float)
    if len(r) and np.isnan(r).any():
        return float("nan")
    mrec = np.concatenate([[0.0], r, [1.0]])
    mpre = np.concatenate([[0.0], p, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


# --------------------------------------------------------------------------------------------- COCO


def _coco_images(db: np.ndarray, dl: np.ndarray, rb: np.ndarray, rl: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """COCO image of each detection and reference object, and the number of images.

    COCO compares every detection with every object of its image and class, so the whole map as one image would
    need an N x M matrix. Only pairs with an IoU of 0.5 or more can match at COCO's thresholds, so the map is cut
    along the connected components of those pairs, packed into images of about ``COCO_IMAGE_BOXES`` boxes: every
    possible match stays within an image, and the matches (so the AP) are those of the map as one image.
    """
    d, r, _ = _pairs(db, dl, rb, rl, COCO_IOUS[0])
    n = len(db) + len(rb)
    graph = coo_matrix((np.ones(len(d)), (d, len(db) + r)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    start = np.cumsum(sizes) - sizes  # boxes before each component, in component order
    image_of_comp = start // COCO_IMAGE_BOXES
    _, image = np.unique(image_of_comp[comp], return_inverse=True)
    return image[: len(db)].astype(np.int64), image[len(db) :].astype(np.int64), int(image.max(initial=-1)) + 1


def _anns(boxes: np.ndarray, labels: np.ndarray, images: np.ndarray, scores: np.ndarray | None = None) -> list[dict]:
    """COCO annotations (xywh boxes, 1-based ids), with scores for detections."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    out = [{"id": i + 1, "image_id": g + 1, "category_id": c + 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
           for i, (b, c, g) in enumerate(zip(xywh.tolist(), labels.tolist(), images.tolist(), strict=True))]  # fmt: skip
    if scores is not None:
        for a, s in zip(out, scores.tolist(), strict=True):
            a["score"] = s
    return out


def coco_map(det_boxes, det_labels, det_scores, ref_boxes, ref_labels, n_classes: int) -> dict:
    """COCO bbox mAP by faster_coco_eval: ``map`` (@[.5:.95]), ``map50``, ``map75`` and ``per_class`` (AP@[.5:.95]
    per class, NaN without reference objects); every detection kept, one area range (map units are no pixels), the
    map cut into images that keep every possible match together (:func:`_coco_images`).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    db, rb = as_boxes(det_boxes), as_boxes(ref_boxes)
    dl, rl = _labels(det_labels, len(db)), _labels(ref_labels, len(rb))
    nan = float("nan")
    if len(rb) == 0:
        return {"map": nan, "map50": nan, "map75": nan, "per_class": [nan] * n_classes}
    origin = np.concatenate([db, rb]).min(axis=0)[[0, 1, 0, 1]]  # local coordinates keep float precision
    db, rb = db - origin, rb - origin

    image_d, image_r, n_images = _coco_images(db, dl, rb, rl)
    base = {"images": [{"id": i + 1, "width": 1, "height": 1} for i in range(n_images)],
            "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)]}  # fmt: skip
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    quiet = lambda *a, **k: None  # noqa: E731
    coco_gt = COCO({**base, "annotations": _anns(rb, rl, image_r)}, print_function=quiet)
    coco_dt = COCO({**base, "annotations": _anns(db, dl, image_d, scores)}, print_function=quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", ranges={"any": [0, 1e10]}, print_function=quiet)
    ev.params.catIds = list(range(1, n_classes + 1))
    ev.params.areaRng, ev.params.areaRngLbl = [[0.0, float("inf")]], ["all"]
    ev.params.maxDets = [int(max(1, np.bincount(image_d, minlength=1).max(initial=1)))]  # every detection counts
    ev.evaluate()
    ev.accumulate()
    prec = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]  # [T, R, K]
    per_t_k = np.where(prec > -1, prec, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of a class without reference objects is NaN
        ap_tk = np.nanmean(per_t_k, axis=1)  # [T, K]: AP per threshold and class
        t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
        t75 = int(np.argmin(np.abs(ev.params.iouThrs - 0.75)))
        return {
            "map": float(np.nanmean(ap_tk)),
            "map50": float(np.nanmean(ap_tk[t50])),
            "map75": float(np.nanmean(ap_tk[t75])),
            "per_class": [float(v) for v in np.nanmean(ap_tk, axis=0)],
        }


# --------------------------------------------------------------------------------------------- tile seams


def tile_seams(transform: Affine, width: int, height: int, tile_size: int, overlap: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Map x positions of the vertical seams and y positions of the horizontal ones of a tile grid.

    Tiles are laid as the predict stage lays them (:func:`terralearn.geo.tiling.tile_starts`: stride
    ``tile_size - overlap``, the last tile snapped to the edge); a seam is any tile edge inside the raster.
    """
    if transform.b != 0 or transform.d != 0:
        raise ValueError("tile seams need a grid without rotation")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"need 0 <= overlap ({overlap}) < tile_size ({tile_size})")

    def edges(length: int) -> np.ndarray:
        if tile_size >= length:
            return np.zeros(0)
        starts = tile_starts(length, tile_size, tile_size - overlap)
        e = np.unique(np.concatenate([starts, starts + tile_size]))
        return e[(e > 0) & (e < length)].astype(np.float64)

    xs = transform.c + edges(width) * transform.a
    ys = transform.f + edges(height) * transform.e
    return np.sort(xs), np.sort(ys)


def _nearest(values: np.ndarray, lines: np.ndarray) -> np.ndarray:
    if len(lines) == 0:
        return np.full(len(values), np.inf)
    i = np.searchsorted(lines, values)
    lo = lines[np.clip(i - 1, 0, len(lines) - 1)]
    hi = lines[np.clip(i, 0, len(lines) - 1)]
    return np.minimum(np.abs(values - lo), np.abs(values - hi))


def seam_distance(boxes, xs, ys) -> np.ndarray:
    """Distance (map units) of each box's centre to the nearest seam line (inf without seams)."""
    c = centres(boxes)
    xs, ys = np.sort(np.asarray(xs, float)), np.sort(np.asarray(ys, float))
    return np.minimum(_nearest(c[:, 0], xs), _nearest(c[:, 1], ys))


def _nice_edges(top: float, n: int = 6) -> np.ndarray:
    """At most ``n`` equal bins from 0 to at least ``top``, their width 1, 2, 2.5 or 5 times a power of ten."""
    raw = top / n if top > 0 else 1.0
    mag = 10.0 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    return step * np.arange(0, int(np.ceil(top / step - 1e-9)) + 1 if top > 0 else 2)


def seam_table(ref_boxes, ref_found, det_boxes, det_tp, xs, ys, edges: Sequence[float] | None = None) -> dict:
    """Recall (of the reference objects) and precision (of the detections) by distance to the nearest seam.

    ``edges`` are the bin edges in map units (default: up to six bins of a round width up to the largest distance
    found); the last bin is open-ended. Returns ``{"edges": [...], "bins": [{low, high, reference, found, recall,
    detections, true_positives, precision}]}``.
    """
    xs, ys = np.sort(np.asarray(xs, float)), np.sort(np.asarray(ys, float))
    rd, dd = seam_distance(ref_boxes, xs, ys), seam_distance(det_boxes, xs, ys)
    if edges is None:
        finite = np.concatenate([rd, dd])
        finite = finite[np.isfinite(finite)]
        edges = _nice_edges(float(finite.max()) if len(finite) else 0.0)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or (np.diff(edges) <= 0).any():
        raise ValueError(f"seam bin edges must be at least two increasing values, got {edges.tolist()}")
    found, tp = np.asarray(ref_found, bool), np.asarray(det_tp, bool)
    ri = np.clip(np.searchsorted(edges, rd, side="right") - 1, 0, len(edges) - 2)
    di = np.clip(np.searchsorted(edges, dd, side="right") - 1, 0, len(edges) - 2)
    bins = []
    for k in range(len(edges) - 1):
        n_ref, n_found = int((ri == k).sum()), int(found[ri == k].sum())
        n_det, n_tp = int((di == k).sum()), int(tp[di == k].sum())
        bins.append({
            "low": float(edges[k]), "high": float(edges[k + 1]) if k < len(edges) - 2 else None,
            "reference": n_ref, "found": n_found, "recall": n_found / n_ref if n_ref else None,
            "detections": n_det, "true_positives": n_tp, "precision": n_tp / n_det if n_det else None,
        })  # fmt: skip
    return {"edges": edges.tolist(), "bins": bins}


# --------------------------------------------------------------------------------------------- the evaluation


@dataclass
class ClassResult:
    """The accuracy of one class; ``precision``/``recall`` arrays are its PR curve (highest score first)."""

    index: int
    name: str
    reference: int
    detections: int
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    ap: float | None
    ap50: float | None
    coco_ap: float | None
    curve_precision: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    curve_recall: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    curve_score: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def as_dict(self) -> dict:
        keys = ("index", "name", "reference", "detections", "tp", "fp", "fn", "precision", "recall", "f1", "ap",
                "ap50", "coco_ap")  # fmt: skip
        return {k: getattr(self, k) for k in keys}


@dataclass
class DetectionEvaluation:
    """Everything :func:`evaluate_boxes` measured; NaN-free (undefined values are None)."""

    per_class: list[ClassResult]
    map50: float | None
    map: float | None
    map75: float | None
    map50_all_point: float | None
    min_iou: float
    score_threshold: float
    counts: dict
    seams: dict | None = None
    matching: Matching | None = field(default=None, repr=False)


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def evaluate_boxes(det_boxes, det_labels, det_scores, ref_boxes, ref_labels, class_names: Sequence[str],
                   min_iou: float = 0.5, score_threshold: float = 0.0, aoi=None, seams=None,
                   seam_edges: Sequence[float] | None = None) -> DetectionEvaluation:  # fmt: skip
    """Match, count and score detections against reference objects (see the module docstring).

    ``aoi`` (shapely geometry) keeps only the detections and objects whose centre lies in it; ``seams`` is
    ``(xs, ys)`` from :func:`tile_seams` for the seam table.
    """
    db, rb = as_boxes(det_boxes), as_boxes(ref_boxes)
    dl, rl = _labels(det_labels, len(db)), _labels(ref_labels, len(rb))
    ds = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    if len(ds) != len(db):
        raise ValueError(f"got {len(db)} boxes but {len(ds)} scores")
    k = len(class_names)
    for what, lab in (("detection", dl), ("reference", rl)):
        if len(lab) and (lab.min() < 0 or lab.max() >= k):
            raise ValueError(f"{what} labels must lie in 0..{k - 1}, got {lab.min()}..{lab.max()}")
    counts = {"detections_given": len(db), "reference_given": len(rb)}
    if aoi is not None:
        dk, rk = inside_aoi(db, aoi), inside_aoi(rb, aoi)
        db, dl, ds, rb, rl = db[dk], dl[dk], ds[dk], rb[rk], rl[rk]
        counts.update(detections_outside_aoi=int((~dk).sum()), reference_outside_aoi=int((~rk).sum()))
    m = match_detections(db, dl, ds, rb, rl, min_iou)
    m50 = m if min_iou == 0.5 else match_detections(db, dl, ds, rb, rl, 0.5)
    coco = coco_map(db, dl, ds, rb, rl, k)
    above = ds >= score_threshold
    results = []
    for c in range(k):
        idx = m.order[dl[m.order] == c]
        n_ref = int((rl == c).sum())
        prec, rec = pr_curve(m.tp[idx], n_ref)
        ap = average_precision(prec, rec) if n_ref else float("nan")
        ap50 = ap if m50 is m else (average_precision(*pr_curve(m50.tp[m50.order[dl[m50.order] == c]], n_ref))
                                    if n_ref else float("nan"))  # fmt: skip
        sel = idx[above[idx]]
        tp = int(m.tp[sel].sum())
        fp, fn = len(sel) - tp, n_ref - tp
        results.append(ClassResult(
            index=c, name=str(class_names[c]), reference=n_ref, detections=len(sel), tp=tp, fp=fp, fn=fn,
            precision=_ratio(tp, tp + fp), recall=_ratio(tp, n_ref), f1=_ratio(2 * tp, 2 * tp + fp + fn),
            ap=_num(ap), ap50=_num(ap50), coco_ap=_num(coco["per_class"][c]),
            curve_precision=prec, curve_recall=rec, curve_score=ds[idx],
        ))  # fmt: skip
    with_ref = [r.ap50 for r in results if r.reference > 0 and r.ap50 is not None]
    tp_all = sum(r.tp for r in results)
    fp_all = sum(r.fp for r in results)
    counts.update(
        reference=len(rb), detections=len(db), detections_scored=int(above.sum()), tp=tp_all, fp=fp_all,
        fn=len(rb) - tp_all, precision=_ratio(tp_all, tp_all + fp_all), recall=_ratio(tp_all, len(rb)),
        f1=_ratio(2 * tp_all, tp_all + fp_all + len(rb)),
    )  # fmt: skip
    seam = None
    if seams is not None:
        xs, ys = seams
        if len(xs) or len(ys):
            found = (m.ref_det >= 0) & above[np.maximum(m.ref_det, 0)] if len(db) else np.zeros(len(rb), bool)
            seam = seam_table(rb, found, db[above], m.tp[above], xs, ys, seam_edges)
    return DetectionEvaluation(
        per_class=results, map50=_num(coco["map50"]), map=_num(coco["map"]), map75=_num(coco["map75"]),
        map50_all_point=float(np.mean(with_ref)) if with_ref else None, min_iou=float(min_iou),
        score_threshold=float(score_threshold), counts=counts, seams=seam, matching=m,
    )  # fmt: skip
