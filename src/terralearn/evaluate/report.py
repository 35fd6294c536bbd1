"""Accuracy-assessment report: one self-contained HTML page (plus its PNGs) for `terralearn evaluate`.

Written for a GIS analyst checking a finished map: the headline scores, the area-adjusted accuracy and class
areas with their 95 % confidence intervals (Olofsson et al. 2014), user's and producer's accuracy per class,
the confusion matrix, and a preview of the map next to the input image with the legend. Plots are embedded as
base64 data URIs (inline CSS, no JavaScript, no network) and also written next to the page as PNG files.

The page is built with the report kit shared with the training report (:mod:`terralearn.io.html`); the preview
is read by :func:`terralearn.io.preview.read_preview`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from terralearn import __version__
from terralearn.errors import ConfigError
from terralearn.geo.bands import named_rgb
from terralearn.io.html import (
    CSS,
    FACTS_AND_WARNINGS,
    MAX_ANNOTATED_CLASSES,
    WEAK_IOU,
    class_table,
    fmt,
    fmt_count,
    fmt_value,
    generated,
    new_figure,
    page,
    per_class_rows,
    plot_confusion,
    png_bytes,
    short,
    warning_items,
    write_page,
    write_plots,
)
from terralearn.io.preview import NODATA_RGB, Preview, PreviewSpec
from terralearn.io.raster import describe_raster

__all__ = ["ReportFiles", "select_rgb_bands", "write_evaluation_report"]


# --------------------------------------------------------------------------------------------- preview


def select_rgb_bands(images: list[Path], rgb_bands: list[int] | None) -> PreviewSpec:
    """Check the image rasters and choose the bands shown as red, green, blue.

    ``rgb_bands`` (1-based, counted over the bands of all images in order) wins; otherwise the bands named
    red/green/blue; otherwise bands 1-2-3 (band 1 in grey for a single band). Raises a ConfigError for bands
    that do not exist.
    """
    if not images:
        if rgb_bands:
            raise ConfigError(
                f"rgb_bands = {list(rgb_bands)} was given but no image to show.",
                "Pass --image RASTER with the bands, or leave --rgb-bands out.",
            )
        return PreviewSpec()
    infos = tuple(describe_raster(p) for p in images)
    flat = [(i, b, name) for i, info in enumerate(infos) for b, name in enumerate(info.band_names, start=1)]
    listing = ", ".join(f"{n} = {name}" for n, (_, _, name) in enumerate(flat[:30], start=1))
    if rgb_bands:
        chosen = list(rgb_bands)
        if len(chosen) not in (1, 3):
            raise ConfigError(
                f"rgb_bands = {chosen}: give three bands (red, green, blue) or one band (grey).",
                "Pass e.g. --rgb-bands 3,2,1.",
            )
        bad = [b for b in chosen if not 1 <= b <= len(flat)]
        if bad:
            raise ConfigError(
                f"rgb_bands = {chosen}: band {bad[0]} does not exist; the image has {len(flat)} band(s): {listing}.",
                f"Choose bands between 1 and {len(flat)}.",
            )
        picks = [flat[b - 1] for b in chosen]
        label = "bands " + ", ".join(str(b) for b in chosen)
    else:
        named = named_rgb([name for _, _, name in flat])
        if named is not None:
            picks = [flat[i] for i in named]
            label = ", ".join(flat[i][2].strip().lower() for i in named)
        elif len(flat) >= 3:
            picks = flat[:3]
            label = "bands 1, 2, 3"
        else:
            picks = flat[:1]
            label = "band 1 (grey)"
    return PreviewSpec(infos, tuple((i, b) for i, b, _ in picks), label)


def _plot_preview(preview: Preview):
    panels = [("Map", preview.map_rgb)]
    if preview.image_rgb is not None:
        panels.insert(0, (f"Image ({preview.image_label})", preview.image_rgb))
    h, w = preview.map_rgb.shape[:2]
    side = 4.6 if len(panels) == 2 else 6.4
    k = len(preview.names)
    legend_rows = math.ceil((k + 1) / 4)
    fig = new_figure(side * len(panels) + 0.4, side * h / max(w, 1) + 0.45 + 0.24 * legend_rows)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, rgb) in zip(axes, panels, strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        for sp in ax.spines.values():
            sp.set_color("#999999")
    handles = [Patch(facecolor=preview.colours[i] / 255.0, edgecolor="#444444", label=short(preview.names[i]))
               for i in range(k)]  # fmt: skip
    handles.append(Patch(facecolor=np.array(NODATA_RGB) / 255.0, edgecolor="#444444", label="nodata"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), frameon=False,
               fontsize=8 if k > 10 else 9)  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------- page content


def _pm(value, ci, digits: int = 3) -> str:
    if value is None:
        return "—"
    return fmt(value, digits) + ("" if ci is None else f" ± {fmt(ci, digits)}")


def _pm_area(value, ci, digits: int) -> str:
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    return text if ci is None else f"{text} ± {ci:,.{digits}f}"


def _area_rows(metrics: dict, hexes: dict) -> tuple[list[dict], str, str]:
    """Rows of the area-adjusted table, the area unit shown, and the overall accuracy ± CI."""
    aa = metrics.get("area_adjusted")
    if not aa:
        return [], "", ""
    per_class = aa.get("per_class") or []
    km2 = any("area_km2" in r for r in per_class)
    pixel_km2 = (metrics.get("grid") or {}).get("pixel_area_m2")
    unit = "km²" if km2 else aa.get("area_unit", "map units²")
    digits = 2 if km2 else 1
    rows = []
    for r in per_class:
        mapped = r["map_pixels"] * pixel_km2 / 1e6 if km2 and pixel_km2 else (r["map_pixels"] * aa["pixel_area"])
        area, area_ci = (r.get("area_km2"), r.get("area_km2_ci")) if km2 else (r.get("area"), r.get("area_ci"))
        rows.append({
            "name": r["name"], "hex": hexes.get(r["index"], "#cccccc"),
            "map_pixels": fmt_count(r["map_pixels"]), "map_area": _pm_area(mapped, None, digits),
            "samples": fmt_count(r["samples"]),
            "users": _pm(r["users_accuracy"], r["users_accuracy_ci"]),
            "producers": _pm(r["producers_accuracy"], r["producers_accuracy_ci"]),
            "area": _pm_area(area, area_ci, digits),
            "area_pixels": _pm_area(r["area_pixels"], r["area_pixels_ci"], 0),
        })  # fmt: skip
    overall = _pm(aa.get("overall_accuracy"), aa.get("overall_accuracy_ci"))
    return rows, unit, overall


def _facts(metrics: dict) -> list[tuple[str, str]]:
    inputs = metrics.get("inputs") or {}
    grid = metrics.get("grid") or {}
    size = grid.get("pixel_size") or []
    unit = grid.get("unit") or "map units"
    facts = [
        ("Map", str(inputs.get("prediction", "—"))),
        ("Reference", f"{inputs.get('reference', '—')} ({metrics.get('reference_kind', '?')})"),
        ("Class field", str(inputs.get("class_field") or "—")),
        ("Reference pixels", fmt_count(metrics.get("reference_pixels"))),
        ("Map size", f"{grid.get('width', '?')} × {grid.get('height', '?')} pixels"),
        ("Mapped pixels", fmt_count(metrics.get("map_pixels"))),
        ("CRS", str(grid.get("crs") or "—")[:60]),
        ("Pixel size", f"{size[0]:g} × {size[1]:g} {unit}" if len(size) == 2 else "—"),
    ]
    return facts


_EXTRA_CSS = """
table.aa td.n{white-space:nowrap}
.big{font-size:1.05em}
"""

_TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TerraLearn accuracy assessment – {{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
<header>
<h1>Accuracy assessment · {{ title }}</h1>
<p class="sub">TerraLearn evaluation of a classified map against reference data. Only reference pixels where the map
has a class count{% if on_nodata %}; {{ on_nodata }} reference pixel(s) on map nodata were left out{% endif %}.</p>
"""
    + FACTS_AND_WARNINGS
    + """

<section id="accuracy">
<h2>Accuracy</h2>
<table class="big">
<tr><th>Metric</th><th class="n">Value</th></tr>
{% for label, value in headline %}<tr><td>{{ label }}</td><td class="n"><b>{{ value }}</b></td></tr>
{% endfor %}</table>
<p class="note">Scores run from 0 to 1 (higher is better), counted over the reference pixels. Overall accuracy counts
correct pixels; kappa discounts chance agreement; Dice and mean IoU average over the classes present in the reference,
so rare classes count as much as common ones.</p>
</section>

{% if area_rows %}<section id="area">
<h2>Area-adjusted accuracy and class areas</h2>
<p>Area-adjusted overall accuracy: <b>{{ area_overall }}</b> (95 % confidence interval).</p>
<div class="tablewrap"><table class="aa">
<tr><th>Class</th><th class="n">Mapped pixels</th><th class="n">Mapped area<br><small>({{ area_unit }})</small></th>
<th class="n">Reference pixels<br><small>(in the map class)</small></th><th class="n">User's accuracy<br><small>± 95 % CI</small></th>
<th class="n">Producer's accuracy<br><small>± 95 % CI</small></th>
<th class="n">Estimated area<br><small>({{ area_unit }}) ± 95 % CI</small></th>
<th class="n">Estimated area<br><small>(pixels) ± 95 % CI</small></th></tr>
{% for r in area_rows %}<tr><td><span class="sw" style="background:{{ r.hex }}"></span>{{ r.name }}</td>
<td class="n">{{ r.map_pixels }}</td><td class="n">{{ r.map_area }}</td><td class="n">{{ r.samples }}</td>
<td class="n">{{ r.users }}</td><td class="n">{{ r.producers }}</td><td class="n"><b>{{ r.area }}</b></td>
<td class="n">{{ r.area_pixels }}</td></tr>
{% endfor %}</table></div>
<p class="note">Estimates after Olofsson et al. (2014, <i>Remote Sensing of Environment</i> 148: 42–57), with the map
classes as strata: the map's area of each class is corrected by the errors the reference finds in it. The estimated
area of a class is what the reference says it covers, unlike the mapped area, which carries the map's errors. The
confidence intervals assume the reference pixels are a stratified random sample of the map classes; reference polygons
drawn by hand are clustered and not random, so read the intervals as optimistic.</p>
</section>{% endif %}

<section id="classes">
<h2>Accuracy per class</h2>
<div class="tablewrap"><table>
<tr><th>Class</th><th class="n">Value</th><th class="n">Precision<br><small>(user's accuracy)</small></th>
<th class="n">Recall<br><small>(producer's accuracy)</small></th><th class="n">F1</th><th class="n">IoU</th>
<th class="n">Support<br><small>(reference pixels)</small></th><th class="n">Mapped pixels<br><small>(whole map)</small></th></tr>
{% for r in per_class %}<tr{% if r.weak %} class="weak"{% endif %}><td><span class="sw" style="background:{{ r.hex }}"></span>
{{- r.name }}{% if r.weak %}<span class="tag weak">weak</span>{% endif %}</td><td class="n">{{ r.value }}</td>
<td class="n">{{ r.precision }}</td><td class="n">{{ r.recall }}</td><td class="n">{{ r.f1 }}</td>
<td class="n">{{ r.iou }}</td><td class="n">{{ r.support }}</td><td class="n">{{ r.mapped }}</td></tr>
{% endfor %}</table></div>
<p class="note">Precision (user's accuracy): of the reference pixels mapped as the class, the share that really are it.
Recall (producer's accuracy): of the reference pixels of the class, the share the map found. These are plain pixel
counts; the area-adjusted table above weights them by the mapped area of each class. Classes with an IoU below
{{ weak_iou }} are highlighted.</p>
<figure><img src="{{ images.confusion }}" alt="Confusion matrix">
<figcaption>Confusion matrix of the reference pixels. Rows are the reference class, columns the map class; colours are
row shares, so a dark diagonal is good and dark cells off it show which classes the map mixes up.
{% if annotated %}Numbers are pixel counts.{% else %}Pixel counts are left out with this many classes.{% endif %}
ArcGIS Pro's <i>Compute Confusion Matrix</i> table is the other way round (its rows are the classified values).
</figcaption></figure>
</section>

<section id="preview">
<h2>Map preview</h2>
{% if images.preview %}<figure><img src="{{ images.preview }}" alt="The map next to the input image, with the legend">
<figcaption>{% if image_label %}The input image ({{ image_label }}, 2–98 % stretch) and the map{% else %}The map{% endif %}
at reduced resolution, in the class colours; white is nodata.</figcaption></figure>
{% for n in preview_notes %}<p class="note">{{ n }}</p>{% endfor %}
{% else %}<p class="note">No preview was drawn.</p>{% endif %}
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
class ReportFiles:
    report: Path
    confusion_png: Path
    preview_png: Path | None


def write_evaluation_report(metrics: dict, out_dir: Path, preview: Preview | None = None) -> ReportFiles:
    """Write ``report.html``, ``confusion.png`` and (with a preview) ``preview.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    classes = metrics.get("classes") or []
    summary = {"classes": classes, "metrics": {"per_class": metrics.get("per_class") or []}}
    class_rows, names, _ = class_table(summary)
    hexes = {r["index"]: r["hex"] for r in class_rows}
    cm = np.asarray(metrics["confusion"], dtype=float)
    k = cm.shape[0]

    fig = plot_confusion(cm, names if len(names) == k else [f"class {i}" for i in range(k)])
    ax = fig.axes[0]
    ax.set_xlabel("Map class", fontsize=ax.xaxis.label.get_fontsize())
    ax.set_ylabel("Reference class", fontsize=ax.yaxis.label.get_fontsize())
    pngs = {"confusion": png_bytes(fig), "preview": None if preview is None else png_bytes(_plot_preview(preview))}
    images = write_plots(out_dir, pngs)

    per_class = per_class_rows(summary, class_rows)
    mapped = {p.get("index", i): p.get("map_pixels") for i, p in enumerate(metrics.get("per_class") or [])}
    for i, row in enumerate(per_class):
        row["mapped"] = fmt_count(mapped.get(class_rows[i]["index"] if i < len(class_rows) else i))
    area_rows, area_unit, area_overall = _area_rows(metrics, hexes)
    headline = [
        ("Overall accuracy", fmt(metrics.get("overall_accuracy"))),
        ("Cohen's kappa", fmt(metrics.get("kappa"))),
        ("Mean IoU", fmt(metrics.get("mean_iou"))),
        ("Dice (mean F1)", fmt(metrics.get("dice"))),
    ]
    if area_overall:
        headline.append(("Area-adjusted overall accuracy (± 95 % CI)", area_overall))
    headline.append(("Reference pixels", fmt_count(metrics.get("reference_pixels"))))
    inputs = metrics.get("inputs") or {}
    html = _PAGE.render(
        css=CSS + _EXTRA_CSS,
        title=Path(str(inputs.get("prediction", "map"))).name,
        on_nodata=fmt_count(metrics["reference_on_map_nodata"]) if metrics.get("reference_on_map_nodata") else "",
        facts=_facts(metrics),
        warnings=warning_items(metrics.get("warnings")),
        headline=headline,
        area_rows=area_rows,
        area_unit=area_unit,
        area_overall=area_overall,
        per_class=per_class,
        weak_iou=WEAK_IOU,
        images=images,
        annotated=k <= MAX_ANNOTATED_CLASSES,
        image_label=preview.image_label if preview is not None else "",
        preview_notes=preview.notes if preview is not None else [],
        inputs=[(str(key), fmt_value(v)) for key, v in inputs.items()],
        version=__version__,
        generated=generated(),
    )
    report = out_dir / "report.html"
    write_page(report, html)
    return ReportFiles(report, out_dir / "confusion.png", None if preview is None else out_dir / "preview.png")
