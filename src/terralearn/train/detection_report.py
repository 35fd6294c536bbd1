"""The training report of a detection run: loss terms and mAP per epoch, AP per class, validation chips with the
true boxes beside the predicted ones. Written from the run folder (summary + samples), like the pixel report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from terralearn import __version__
from terralearn.io.html import (
    CSS,
    FACTS_AND_WARNINGS,
    class_colours,
    fmt,
    fmt_duration,
    generated,
    new_figure,
    page,
    png_bytes,
    warning_items,
    write_page,
    write_plots,
)
from terralearn.train.plots import _plot_epochs
from terralearn.train.report import rgb_indices, stretch

REPORT_PAGE = "report.html"
PLOTS = ("loss", "map", "samples")
_LOSS_COLOURS = ("#1f77b4", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")

TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>TerraLearn run {{ run_id }} – {{ name }}</title><style>{{ css }}</style></head>
<body><main><header>
<h1>Run {{ run_id }} · {{ name }} <span class="badge">{{ status }}</span></h1>
<p class="sub">TerraLearn object-detection training report. The mAP figures are measured on the <b>validation
chips of held-out spatial blocks</b>: no object in them was seen in training.</p>
"""
    + FACTS_AND_WARNINGS
    + """
<section id="accuracy"><h2>Accuracy on validation chips</h2>
<table><tr><th>Metric</th><th class="n">This model</th></tr>
<tr><td>{{ kind }} mAP at IoU 0.5 (AP50)</td><td class="n"><b>{{ map50 }}</b></td></tr>
<tr><td>{{ kind }} mAP at IoU 0.50:0.95 (COCO's thresholds)</td><td class="n">{{ map }}</td></tr></table>
{% if refit %}<p id="refit">{{ refit }}</p>{% endif %}
<h3>Per class</h3>
<table><tr><th>Class</th><th class="n">Training objects</th><th class="n">Validation objects</th>
<th class="n">AP50</th><th class="n">AP 0.50:0.95</th></tr>
{% for r in per_class %}<tr><td>{{ r.name }}</td><td class="n">{{ r.train }}</td><td class="n">{{ r.val }}</td>
<td class="n">{{ r.ap50 }}</td><td class="n">{{ r.ap }}</td></tr>{% endfor %}</table></section>
{% for key, title in plots %}{% if images[key] %}<section><h2>{{ title }}</h2>
<img src="{{ images[key] }}" alt="{{ title }}"></section>{% endif %}{% endfor %}
<footer>TerraLearn {{ version }} · {{ generated }}</footer></main></body></html>
"""
)
_PAGE = page(TEMPLATE)


def detection_summary(run: dict, card: dict, history: list[dict]) -> dict:
    """Everything the detection report shows about a run, as plain JSON."""
    td = card["training_data"]
    return {
        "run_id": run["id"], "name": run["name"], "status": run["status"], "task": card.get("task", "detection"),
        "architecture": card["architecture"], "preset": card.get("preset"), "weights": card["weights"],
        "device": run["device"], "chip_set": td["chip_set"], "bands": card["bands"], "chip_size": card["chip_size"],
        "pixel_size": card["pixel_size"], "epochs_set": run["epochs_set"], "epochs_run": run["epochs_run"],
        "best_epoch": run["best_epoch"], "training_seconds": run["training_seconds"],
        "anchor_sizes": card.get("anchor_sizes"), "classes": card["classes"], "history": history,
        "metrics": card["metrics"], "train_objects": td["train_objects"], "val_objects": td["val_objects"],
        "train_chips": td["train_chips"], "val_chips": td["val_chips"], "warnings": card.get("warnings", []),
        "refit": (card.get("refit") or {}).get("note") or card.get("refit_note"),
    }  # fmt: skip


def plot_detection_losses(history: list[dict], best_epoch: int | None) -> Figure | None:
    keys = [k for k in (history[0] if history else {}) if k.startswith("train_")]
    lines = tuple((k, "total" if k == "train_loss" else k.removeprefix("train_").replace("_", " "), c)
                  for k, c in zip(keys, _LOSS_COLOURS, strict=False))  # fmt: skip
    return _plot_epochs(history, lines, best_epoch, "train_loss", "Training loss", (0, None), (2.0, 1.2))


def plot_map(history: list[dict], best_epoch: int | None) -> Figure | None:
    lines = (("map50", "AP50", "#1b9e77"), ("map", "mAP 0.50:0.95", "#7570b3"))
    return _plot_epochs(history, lines, best_epoch, "map50", "Validation mAP", (0, 1), (2.0, 1.4))


def plot_box_samples(samples: dict, band_names: list[str], classes: list[dict]) -> Figure | None:
    """Each validation chip twice: the true boxes (left) and the predicted ones with scores (right)."""
    if not samples or "image" not in samples:
        return None
    n = len(samples["image"])
    colours = class_colours(classes) / 255.0
    idx = rgb_indices(band_names)
    fig = new_figure(6.4, 3.1 * n)
    for i in range(n):
        rgb = stretch(np.moveaxis(samples["image"][i][idx], 0, -1))
        for j, kind in enumerate(("true", "pred")):
            ax = fig.add_subplot(n, 2, 2 * i + j + 1)
            ax.imshow(rgb, interpolation="nearest")
            boxes, labels = samples[f"{kind}_boxes_{i}"], samples[f"{kind}_labels_{i}"]
            for box, label in zip(boxes, labels, strict=True):
                colour = colours[min(int(label) - 1, len(colours) - 1)]
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                       edgecolor=colour, linewidth=1.2))  # fmt: skip
            ax.set_title(f"{'True' if kind == 'true' else 'Predicted (score ≥ 0.3)'}: {len(boxes)}", fontsize=9)
            ax.set_axis_off()
    return fig


def write_detection_report(summary: dict, out_dir: Path, samples: dict | None = None) -> Path:
    """Write ``out_dir/report.html`` and its PNGs (atomically, the page last); return the page's path."""
    out_dir = Path(out_dir)
    history = summary.get("history") or []
    best = summary.get("best_epoch")
    figures = {
        "loss": plot_detection_losses(history, best) if history else None,
        "map": plot_map(history, best) if history else None,
        "samples": plot_box_samples(samples or {}, summary.get("bands") or [], summary.get("classes") or []),
    }
    images = write_plots(out_dir, {k: None if f is None else png_bytes(f) for k, f in figures.items()})
    metrics = summary.get("metrics") or {}
    train_counts = summary.get("train_objects") or []
    per_class = [{"name": c["name"], "train": train_counts[i] if i < len(train_counts) else "—",
                  "val": c.get("val_objects", "—"), "ap50": fmt(c.get("ap50")), "ap": fmt(c.get("ap"))}
                 for i, c in enumerate(metrics.get("per_class") or [])]  # fmt: skip
    facts = [
        ("Model", f"{summary.get('architecture')} ({summary.get('preset')} preset, weights {summary.get('weights')})"),
        ("Device", summary.get("device") or "—"), ("Chip set", summary.get("chip_set") or "—"),
        ("Bands", ", ".join(map(str, summary.get("bands") or []))),
        ("Chips", f"{summary.get('train_chips')} training, {summary.get('val_chips')} validation"),
        ("Anchors (px)", ", ".join(map(str, summary.get("anchor_sizes") or []))),
        ("Epochs", f"{summary.get('epochs_run')} of {summary.get('epochs_set')} (best {best})"),
        ("Training time", fmt_duration(summary.get("training_seconds"))),
    ]  # fmt: skip
    html = _PAGE.render(
        css=CSS, run_id=summary.get("run_id"), name=summary.get("name") or "", status=summary.get("status") or "",
        facts=facts, warnings=warning_items(summary.get("warnings")), map50=fmt(metrics.get("map50")),
        map=fmt(metrics.get("map")), per_class=per_class, images=images, refit=summary.get("refit"),
        kind="Mask" if summary.get("task") == "instances" else "Box",
        plots=[("loss", "Training losses"), ("map", "Validation mAP per epoch"),
               ("samples", "Validation chips: true and predicted boxes")],
        no_warnings="No warnings.", version=__version__, generated=generated(),
    )  # fmt: skip
    path = out_dir / REPORT_PAGE
    write_page(path, html)
    return path
