"""Object-detection accuracy report: metrics.json, the precision-recall curves, the seam plot and one HTML page.

Written for a GIS analyst checking detections over a whole raster: the headline COCO scores, the per-class table of
ArcGIS' *Compute Accuracy For Object Detection* (precision, recall, F1, AP, TP/FP/FN), the precision-recall curves
of all classes in one figure, and (when the tile grid is known) recall and precision by distance to the nearest tile
seam, which shows whether the detections of overlapping tiles were merged well.

Everything is drawn from the metrics dict alone (the curves are stored in it, thinned), so the page can be rebuilt
from ``metrics.json``. It uses the report kit of :mod:`terralearn.io.html` (same look as the map evaluation's
report); plots are embedded as data URIs and also written as PNGs. Every file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terralearn import __version__
from terralearn.evaluate.detections import ClassResult
from terralearn.io.atomic import write_json_atomic
from terralearn.io.html import (
    CSS,
    FACTS_AND_WARNINGS,
    class_colours,
    fmt,
    fmt_count,
    fmt_value,
    generated,
    new_figure,
    page,
    png_bytes,
    short,
    style_axes,
    warning_items,
    write_page,
    write_plots,
)

__all__ = ["METRICS", "DetectionReportFiles", "curve_points", "write_detection_outputs", "write_detection_report"]

METRICS = "metrics.json"
#: Points kept of each precision-recall curve in metrics.json (enough for a smooth plot).
CURVE_POINTS = 400
#: Classes with an AP below this are highlighted as weak.
WEAK_AP = 0.5


def curve_points(result: ClassResult, max_points: int = CURVE_POINTS) -> dict:
    """A class's precision-recall curve thinned to at most ``max_points`` points (the last one always kept)."""
    n = len(result.curve_precision)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int)) if n else np.zeros(0, int)

    def clean(a):
        return [None if not np.isfinite(v) else round(float(v), 6) for v in np.asarray(a)[idx]]

    return {"class_name": result.name, "precision": clean(result.curve_precision),
            "recall": clean(result.curve_recall), "score": clean(result.curve_score)}  # fmt: skip


# --------------------------------------------------------------------------------------------- plots


def _hexes(metrics: dict) -> dict[str, str]:
    rows = metrics.get("per_class") or []
    colours = class_colours([{"index": i, "name": r["class_name"], "colour": r.get("colour")}
                             for i, r in enumerate(rows)])  # fmt: skip
    return {r["class_name"]: "#{:02x}{:02x}{:02x}".format(*colours[i]) for i, r in enumerate(rows)}


def plot_pr_curves(metrics: dict):
    """Precision against recall for every class with reference objects, its AP in the legend; the dot is the
    operating point at the score threshold."""
    rows = {r["class_name"]: r for r in metrics.get("per_class") or []}
    hexes = _hexes(metrics)
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    style_axes(ax, 9)
    drawn = 0
    for curve in metrics.get("pr_curves") or []:
        row = rows.get(curve["class_name"], {})
        if not row.get("reference"):
            continue
        r = np.array([np.nan if v is None else v for v in curve["recall"]], float)
        p = np.array([np.nan if v is None else v for v in curve["precision"]], float)
        colour = hexes.get(curve["class_name"], "#333333")
        label = f"{short(curve['class_name'])} (AP {fmt(row.get('ap'))})"
        if len(r):
            ax.step(np.r_[0.0, r], np.r_[p[0], p], where="post", color=colour, linewidth=1.6, label=label)
        else:
            ax.plot([], [], color=colour, label=label + ", no detection")
        if row.get("recall") is not None and row.get("precision") is not None:
            ax.plot(row["recall"], row["precision"], "o", color=colour, markersize=5, markeredgecolor="#222222")
        drawn += 1
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Recall (share of reference objects found)", fontsize=10)
    ax.set_ylabel("Precision (share of detections correct)", fontsize=10)
    ax.set_title(f"Precision-recall curves at IoU ≥ {metrics.get('min_iou', 0.5):g}", fontsize=10)
    if drawn:
        ax.legend(fontsize=8 if drawn > 6 else 9, loc="lower left", frameon=False)
    return fig


def _bin_labels(seams: dict, unit: str) -> list[str]:
    out = []
    for b in seams["bins"]:
        out.append(f"{b['low']:g}–{b['high']:g}" if b["high"] is not None else f"≥ {b['low']:g}")
    return [f"{t} {unit}".strip() for t in out]


def plot_seams(seams: dict, unit: str = ""):
    """Recall and precision per bin of distance to the nearest tile seam, with the counts on the bars."""
    bins = seams["bins"]
    x = np.arange(len(bins))
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    style_axes(ax, 9)
    for off, key, n_key, colour, label in ((-0.2, "recall", "reference", "#1f77b4", "Recall (reference objects)"),
                                           (0.2, "precision", "detections", "#ff7f0e", "Precision (detections)")):  # fmt: skip
        vals = [np.nan if b[key] is None else b[key] for b in bins]
        bars = ax.bar(x + off, vals, width=0.38, color=colour, label=label)
        for bar, b in zip(bars, bins, strict=True):
            ax.annotate(fmt_count(b[n_key]), (bar.get_x() + bar.get_width() / 2, np.nan_to_num(bar.get_height())),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")  # fmt: skip
    ax.set_xticks(x, labels=_bin_labels(seams, unit), fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("Distance of the object's centre to the nearest tile seam", fontsize=10)
    ax.set_ylabel("Share", fontsize=10)
    fig.legend(fontsize=8, loc="outside upper center", ncols=2, frameon=False)
    return fig


# --------------------------------------------------------------------------------------------- page

_TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TerraLearn detection accuracy – {{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
<header>
<h1>Detection accuracy · {{ title }}</h1>
<p class="sub">TerraLearn evaluation of detected objects against reference objects. A detection is correct when its
box overlaps an unmatched reference object of its class by an IoU of at least {{ min_iou }}; the best-scoring detections
are matched first, so a second detection of the same object counts as a false positive.</p>
"""
    + FACTS_AND_WARNINGS
    + """

<section id="accuracy">
<h2>Accuracy</h2>
<table class="big">
<tr><th>Metric</th><th class="n">Value</th></tr>
{% for label, value in headline %}<tr><td>{{ label }}</td><td class="n"><b>{{ value }}</b></td></tr>
{% endfor %}</table>
<p class="note">Average precision (AP) is the area under a class's precision-recall curve over all detections, whatever
their score; mAP averages it over the classes with reference objects. COCO's mAP@[.5:.95] also averages over IoU
thresholds from 0.5 to 0.95, so it rewards tight boxes. Precision, recall and F1 count the detections scoring at least
{{ score_threshold }}.</p>
</section>

<section id="classes">
<h2>Accuracy per class</h2>
<div class="tablewrap"><table>
<tr><th>Class</th><th class="n">Value</th><th class="n">Reference<br><small>objects</small></th>
<th class="n">Detections</th><th class="n">True<br>positives</th><th class="n">False<br>positives</th>
<th class="n">False<br>negatives</th><th class="n">Precision</th><th class="n">Recall</th><th class="n">F1</th>
<th class="n">AP<br><small>(IoU {{ min_iou }})</small></th><th class="n">AP<br><small>(COCO .5:.95)</small></th></tr>
{% for r in per_class %}<tr{% if r.weak %} class="weak"{% endif %}><td><span class="sw" style="background:{{ r.hex }}"></span>
{{- r.name }}{% if r.weak %}<span class="tag weak">weak</span>{% endif %}</td><td class="n">{{ r.value }}</td>
<td class="n">{{ r.reference }}</td><td class="n">{{ r.detections }}</td><td class="n">{{ r.tp }}</td>
<td class="n">{{ r.fp }}</td><td class="n">{{ r.fn }}</td><td class="n">{{ r.precision }}</td>
<td class="n">{{ r.recall }}</td><td class="n">{{ r.f1 }}</td><td class="n">{{ r.ap }}</td><td class="n">{{ r.coco_ap }}</td></tr>
{% endfor %}</table></div>
<p class="note">The columns of ArcGIS Pro's <i>Compute Accuracy For Object Detection</i> table. Classes with an AP below
{{ weak_ap }} are highlighted.</p>
<figure><img src="{{ images.pr_curves }}" alt="Precision-recall curves">
<figcaption>Precision against recall as the score threshold falls, one curve per class; the dot marks the threshold
used for the table. A curve that stays high to the right is good.</figcaption></figure>
</section>

<section id="seams">
<h2>Accuracy near tile seams</h2>
{% if seam_rows %}<table>
<tr><th>Distance to the nearest seam</th><th class="n">Reference objects</th><th class="n">Found</th>
<th class="n">Recall</th><th class="n">Detections</th><th class="n">Correct</th><th class="n">Precision</th></tr>
{% for r in seam_rows %}<tr><td>{{ r.label }}</td><td class="n">{{ r.reference }}</td><td class="n">{{ r.found }}</td>
<td class="n">{{ r.recall }}</td><td class="n">{{ r.detections }}</td><td class="n">{{ r.tp }}</td>
<td class="n">{{ r.precision }}</td></tr>
{% endfor %}</table>
{% if images.seams %}<figure><img src="{{ images.seams }}" alt="Recall and precision by distance to the nearest seam">
<figcaption>{{ seam_caption }} Lower recall or precision close to the seams than away from them means objects cut by a
tile edge are missed or detected twice: raise the overlap, or check the merging of overlapping tiles.</figcaption></figure>
{% endif %}{% else %}<p class="note">{{ seam_caption }}</p>{% endif %}
</section>

<section id="inputs">
<h2>Inputs and settings</h2>
<table>
{% for k, v in inputs %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}</table>
</section>

<footer>Generated by TerraLearn {{ version }} on {{ generated }}.</footer>
</main>
</body>
</html>
"""
)

_PAGE = page(_TEMPLATE)


@dataclass(frozen=True)
class DetectionReportFiles:
    report: Path
    metrics_json: Path
    pr_png: Path
    seams_png: Path | None


def _facts(metrics: dict) -> list[tuple[str, str]]:
    inputs = metrics.get("inputs") or {}
    counts = metrics.get("counts") or {}
    return [
        ("Detections file", str(inputs.get("prediction", "—"))),
        ("Reference", str(inputs.get("reference", "—"))),
        ("Class field", str(inputs.get("class_field") or "—")),
        ("Area of interest", str(inputs.get("aoi") or "—")),
        ("Reference objects", fmt_count(counts.get("reference"))),
        (
            "Detections",
            f"{fmt_count(counts.get('detections'))} ({fmt_count(counts.get('detections_scored'))} scoring "
            f"≥ {metrics.get('score_threshold', 0.0):g})",
        ),
        ("Match at IoU ≥", f"{metrics.get('min_iou', 0.5):g}"),
        ("Score threshold", f"{metrics.get('score_threshold', 0.0):g}"),
        ("CRS", str(metrics.get("crs") or "—")[:60]),
        ("Map unit", str(metrics.get("unit") or "map units")),
    ]


def write_detection_report(metrics: dict, out_dir: Path) -> DetectionReportFiles:
    """Write ``report.html``, ``pr_curves.png`` and (with a seam table) ``seams.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    seams = metrics.get("seams")
    unit = metrics.get("unit") or ""
    pngs = {"pr_curves": png_bytes(plot_pr_curves(metrics)),
            "seams": png_bytes(plot_seams(seams, unit)) if seams else None}  # fmt: skip
    images = write_plots(out_dir, pngs)
    hexes = _hexes(metrics)
    per_class = []
    for r in metrics.get("per_class") or []:
        ap = r.get("ap")
        per_class.append({
            "name": r["class_name"], "hex": hexes.get(r["class_name"], "#cccccc"),
            "value": "—" if r.get("class_value") is None else str(r["class_value"]),
            "reference": fmt_count(r.get("reference")), "detections": fmt_count(r.get("detections")),
            "tp": fmt_count(r.get("tp")), "fp": fmt_count(r.get("fp")), "fn": fmt_count(r.get("fn")),
            "precision": fmt(r.get("precision")), "recall": fmt(r.get("recall")), "f1": fmt(r.get("f1")),
            "ap": fmt(ap), "coco_ap": fmt(r.get("coco_ap")), "weak": ap is not None and ap < WEAK_AP,
        })  # fmt: skip
    counts = metrics.get("counts") or {}
    headline = [
        ("mAP@0.5 (COCO)", fmt(metrics.get("map50"))),
        ("mAP@[.5:.95] (COCO)", fmt(metrics.get("map"))),
        (f"Mean AP at IoU {metrics.get('min_iou', 0.5):g} (all-point, VOC)", fmt(metrics.get("map_min_iou"))),
        ("Precision", fmt(counts.get("precision"))),
        ("Recall", fmt(counts.get("recall"))),
        ("F1", fmt(counts.get("f1"))),
        ("True positives / false positives / false negatives",
         f"{fmt_count(counts.get('tp'))} / {fmt_count(counts.get('fp'))} / {fmt_count(counts.get('fn'))}"),
    ]  # fmt: skip
    seam_rows = []
    if seams:
        for label, b in zip(_bin_labels(seams, unit), seams["bins"], strict=True):
            seam_rows.append({
                "label": label, "reference": fmt_count(b["reference"]), "found": fmt_count(b["found"]),
                "recall": fmt(b["recall"]), "detections": fmt_count(b["detections"]),
                "tp": fmt_count(b["true_positives"]), "precision": fmt(b["precision"]),
            })  # fmt: skip
        tiling = metrics.get("tiling") or {}
        seam_caption = (f"Tiles of {tiling.get('tile_size', '?')} pixels overlapping by {tiling.get('overlap', '?')}; "
                        "distances from each box's centre to the nearest tile edge inside the raster.")  # fmt: skip
    else:
        seam_caption = metrics.get("seams_note") or "No seam analysis: the tile grid is unknown."
    inputs = metrics.get("inputs") or {}
    html = _PAGE.render(
        css=CSS + "\n.big{font-size:1.05em}\n",
        title=Path(str(inputs.get("prediction", "detections"))).name,
        facts=_facts(metrics),
        warnings=warning_items(metrics.get("warnings")),
        headline=headline,
        per_class=per_class,
        min_iou=f"{metrics.get('min_iou', 0.5):g}",
        score_threshold=f"{metrics.get('score_threshold', 0.0):g}",
        weak_ap=WEAK_AP,
        images=images,
        seam_rows=seam_rows,
        seam_caption=seam_caption,
        inputs=[(str(k), fmt_value(v)) for k, v in inputs.items()],
        version=__version__,
        generated=generated(),
    )
    report = out_dir / "report.html"
    write_page(report, html)
    return DetectionReportFiles(report, out_dir / METRICS, out_dir / "pr_curves.png",
                                out_dir / "seams.png" if seams else None)  # fmt: skip


def write_detection_outputs(metrics: dict, out_dir: Path) -> DetectionReportFiles:
    """``metrics.json`` and the report (PNGs and page) in ``out_dir``, each file written atomically."""
    write_json_atomic(Path(out_dir) / METRICS, metrics)
    return write_detection_report(metrics, out_dir)
