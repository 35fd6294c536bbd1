"""Training report: one self-contained HTML page (plus the same plots as PNG files) for a training run.

The page is written for a GIS analyst: what was trained, what went wrong (automatic warnings), how good the
model is on spatially held-out validation data, whether it beat a simple baseline, and where it fails (weak
classes, confusion between classes, example chips). Everything is embedded in ``report.html`` (plots as base64
data URIs, inline CSS, no JavaScript, no network), and every plot is also written next to it as a PNG. The report
of a recorded run is rebuilt from its run folder at any time (:func:`write_run_report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from terralearn import __version__
from terralearn.config import ReportConfig
from terralearn.errors import RunError
from terralearn.geo.bands import named_rgb
from terralearn.geo.numbers import finite
from terralearn.io.html import (
    CSS,
    MAX_ANNOTATED_CLASSES,
    WEAK_IOU,
    as_int,
    class_table,
    fmt,
    fmt_count,
    fmt_date,
    fmt_duration,
    fmt_lr,
    fmt_signed,
    fmt_value,
    generated,
    page,
    per_class_rows,
    plot_confusion,
    png_bytes,
    warning_items,
    write_page,
    write_plots,
)
from terralearn.io.runfiles import REPORT_PAGE, load_samples, load_summary, report_dir, run_dir
from terralearn.runs import Registry
from terralearn.tasks import DEFAULT_TASK, get_task
from terralearn.train.diagnostics import MONITOR_WORDS, TIE, compare_with_baseline
from terralearn.train.plots import plot_frequencies, plot_loss, plot_metrics, plot_samples
from terralearn.train.report_page import TEMPLATE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOTS", "summary_of", "write_run_report", "write_training_report"]

#: The plots of the report, in page order; each is written as ``<name>.png`` next to ``report.html``.
PLOTS = ("loss", "metrics", "confusion", "class_frequencies", "samples")

_METRIC_LABELS = {
    "accuracy": "Overall accuracy",
    "dice": "Dice (mean F1)",
    "mean_iou": "Mean IoU",
    "kappa": "Cohen's kappa",
}
_HISTORY_LABELS = {
    "epoch": "Epoch",
    "train_loss": "Train loss",
    "val_loss": "Val. loss",
    "accuracy": "Accuracy",
    "dice": "Dice",
    "mean_iou": "Mean IoU",
    "kappa": "Kappa",
    "lr": "Learning rate",
    "seconds": "Seconds",
}
_STATUS_KIND = {
    "finished": "ok",
    "completed": "ok",
    "running": "info",
    "stopped": "warn",
    "cancelled": "warn",
    "interrupted": "warn",
    "failed": "bad",
    "error": "bad",
}


def _headline(summary: dict) -> dict:
    metrics = summary.get("metrics") or {}
    baseline = summary.get("baseline") or None
    rows = []
    for key, label in _METRIC_LABELS.items():
        mine = finite(metrics.get(key))
        base = finite(baseline.get(key)) if baseline else None
        if mine is None and base is None:
            continue
        diff = None if mine is None or base is None else mine - base
        trend = "" if diff is None else ("tie" if abs(diff) < TIE else ("up" if diff > 0 else "down"))
        rows.append(
            {"label": label, "model": fmt(mine), "baseline": fmt(base), "diff": fmt_signed(diff), "trend": trend}
        )
    sentence, verdict = "", ""
    selection = summary.get("selection") or {}
    if selection and not baseline:  # the selection chose the forest itself: its reason is the verdict
        sentence, verdict = str(selection.get("reason") or ""), "info"
    if baseline:
        bname = str(baseline.get("name") or "the baseline")
        verdict_of = compare_with_baseline(
            {k: finite(v) for k, v in metrics.items() if k in _METRIC_LABELS},
            {k: finite(v) for k, v in baseline.items() if k in _METRIC_LABELS},
            summary.get("monitor"),
        )
        key = verdict_of["key"] if verdict_of else None
        if key is None:
            sentence = f"The baseline ({bname}) and this model share no metric, so they cannot be compared."
            verdict = "info"
        else:
            mine, base = finite(metrics[key]), finite(baseline[key])
            diff = mine - base
            word = MONITOR_WORDS[key]
            numbers = f"{word} {mine:.3f} against {base:.3f} for the {bname} ({diff:+.3f})"
            if abs(diff) < TIE:
                sentence = (
                    f"Deep learning did not clearly beat the baseline: {numbers}. "
                    "The simpler baseline is as good on this validation data."
                )
                verdict = "tie"
            elif diff > 0:
                sentence = f"Yes, deep learning beat the baseline: {numbers}."
                verdict = "up"
            else:
                sentence = (
                    f"No, deep learning did not beat the baseline: {numbers}. "
                    "The simpler baseline is better on this validation data."
                )
                verdict = "down"
            worse = [
                MONITOR_WORDS[k]
                for k in _METRIC_LABELS
                if k != key
                and finite(metrics.get(k)) is not None
                and finite(baseline.get(k)) is not None
                and (finite(metrics[k]) - finite(baseline[k])) * (1 if diff > 0 else -1) < -TIE
            ]
            if worse and abs(diff) >= TIE:
                who = "the baseline" if diff > 0 else "the deep-learning model"
                sentence += f" Note that {who} scores higher on {' and '.join(worse)}."
    return {
        "rows": rows,
        "baseline_name": str(baseline.get("name") or "Baseline") if baseline else None,
        "sentence": sentence,
        "verdict": verdict,
    }


def _selection(summary: dict) -> dict | None:
    """The leaderboard of a ``--model auto`` run: one row per candidate, the chosen one first-marked."""
    sel = summary.get("selection")
    if not isinstance(sel, dict) or not sel.get("leaderboard"):
        return None
    crit = str(sel.get("criterion") or "mean_iou")
    rows = []
    for r in sel["leaderboard"]:
        spread = finite(r.get(f"{crit}_spread"))
        rows.append({
            "label": r.get("label") or r.get("candidate"), "chosen": bool(r.get("chosen")),
            "score": fmt(r.get("score")), "spread": "—" if spread is None else f"± {spread:.3f}",
            "accuracy": fmt(r.get("accuracy")), "mean_iou": fmt(r.get("mean_iou")),
            "seconds": fmt_duration(r.get("seconds")), "steps": fmt_count(r.get("steps")) if r.get("steps") else "—",
            "status": r.get("note") or ("scored" if r.get("status") == "scored" else str(r.get("status") or "")),
        })  # fmt: skip
    return {"rows": rows, "criterion": MONITOR_WORDS.get(crit, crit), "folds": sel.get("folds"),
            "reason": sel.get("reason") or "", "refit": sel.get("refit") or "", "notes": sel.get("notes") or []}  # fmt: skip


def _history_table(history: list[dict], best_epoch: int | None) -> tuple[list[str], list[dict]]:
    keys: list[str] = []
    for h in history:
        keys += [k for k in h if k not in keys]
    order = [k for k in _HISTORY_LABELS if k in keys] + [k for k in keys if k not in _HISTORY_LABELS]
    header = [_HISTORY_LABELS.get(k, str(k).replace("_", " ")) for k in order]
    rows = []
    for i, h in enumerate(history):
        cells = []
        for k in order:
            v = h.get(k)
            if k == "epoch":
                cells.append(str(as_int(v, i + 1)))
            elif k == "lr":
                cells.append(fmt_lr(v))
            elif k == "seconds":
                cells.append(fmt(v, 1))
            elif finite(v) is not None:
                cells.append(fmt(v, 4) if "loss" in str(k) else fmt(v, 3))
            else:
                cells.append(fmt_value(v))
        rows.append({"cells": cells, "best": best_epoch is not None and as_int(h.get("epoch"), i + 1) == best_epoch})
    return header, rows


def _facts(summary: dict) -> list[tuple[str, str]]:
    arch = summary.get("architecture")
    backbone = summary.get("backbone")
    model = " / ".join(str(x) for x in (arch, backbone) if x) or "—"
    if summary.get("weights"):
        model += f" (pretrained weights: {summary['weights']})"
    run, total = as_int(summary.get("epochs_run")), as_int(summary.get("epochs_set"))
    if run is not None and total is not None:
        epochs = f"{run} of {total}" + (" (stopped early)" if run < total else "")
    else:
        epochs = str(run if run is not None else (total if total is not None else "—"))
    best = as_int(summary.get("best_epoch"))
    monitor = summary.get("monitor")
    best_text = "—" if best is None else str(best)
    if best is not None and monitor:
        best_text += (
            f" (highest {MONITOR_WORDS.get(monitor, monitor)})"
            if "loss" not in str(monitor)
            else (f" (lowest {MONITOR_WORDS.get(monitor, monitor)})")
        )
    facts = [
        ("Model", model),
        ("Task", str(summary.get("task") or "—").replace("_", " ")),
        ("Created", fmt_date(summary.get("created"))),
        ("Device", str(summary.get("device") or "—")),
        ("Training time", fmt_duration(summary.get("training_seconds"))),
        ("Epochs run", epochs),
        ("Best epoch", best_text),
    ]
    if finite(summary.get("model_size_mb")) is not None:
        facts.append(("Model size", f"{finite(summary['model_size_mb']):.1f} MB"))
    if summary.get("bands"):
        facts.append(("Bands", fmt_value(summary["bands"])))
    size = summary.get("chip_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        facts.append(("Chip size", f"{size[0]} × {size[1]} pixels"))
    px = summary.get("pixel_size")
    if isinstance(px, (list, tuple)) and len(px) == 2:
        facts.append(("Pixel size", f"{fmt_value(px[0])} × {fmt_value(px[1])} (map units)"))
    if summary.get("chip_set"):
        facts.append(("Chip set", str(summary["chip_set"])))
    return facts


def _run_log(summary: dict, baseline: dict | None) -> list[tuple[str, str]]:
    """(column, value) pairs of one row for the analyst's spreadsheet of runs."""
    m = summary.get("metrics") or {}
    created = fmt_date(summary.get("created"))
    model = " / ".join(str(x) for x in (summary.get("architecture"), summary.get("backbone")) if x)
    seconds = finite(summary.get("training_seconds"))
    cols = [
        ("Run", summary.get("run_id")),
        ("Name", summary.get("name")),
        ("Date", created.split(" ")[0] if created != "—" else ""),
        ("Status", summary.get("status")),
        ("Model", model),
        ("Epochs", summary.get("epochs_run")),
        ("Best epoch", summary.get("best_epoch")),
        ("Accuracy", fmt(m.get("accuracy"))),
        ("Dice", fmt(m.get("dice"))),
        ("Mean IoU", fmt(m.get("mean_iou"))),
        ("Kappa", fmt(m.get("kappa"))),
        ("Baseline mean IoU", fmt(baseline.get("mean_iou")) if baseline else ""),
        ("Minutes", fmt(seconds / 60, 1) if seconds is not None else ""),
    ]
    return [(k, "" if v is None or v == "—" else " ".join(str(v).split())) for k, v in cols]


def summary_of(run: dict, card: dict, history: list[dict]) -> dict:
    """Everything the report shows about a run, as plain JSON."""
    counts = card["training_data"]["class_pixels"]
    val_support = {c["index"]: c["support"] for c in card["metrics"].get("per_class", [])}
    return {
        "run_id": run["id"], "name": run["name"], "created": run["created"], "status": run["status"],
        "task": card["task"], "architecture": card["architecture"], "backbone": card["backbone"],
        "weights": card["weights"], "device": run["device"], "chip_set": card["training_data"]["chip_set"],
        "bands": card["bands"], "chip_size": card["chip_size"], "pixel_size": card["pixel_size"],
        "epochs_set": run["epochs_set"], "epochs_run": run["epochs_run"], "best_epoch": run["best_epoch"],
        "monitor": card["training"]["monitor"], "training_seconds": run["training_seconds"],
        "model_size_mb": run["model_size_mb"],
        "classes": [{**c, "train_pixels": int(counts[c["index"]]), "val_pixels": int(val_support.get(c["index"], 0))}
                    for c in card["classes"]],
        "history": history, "metrics": card["metrics"],
        "baseline": {"name": "random forest (per pixel)", **card["baseline"]} if card.get("baseline") else None,
        "warnings": card.get("warnings", []),
        "selection": card.get("selection"),
        "settings": {k: card["training"][k] for k in ("loss", "batch_size", "learning_rate", "augment",
                     "class_balancing", "oversample", "mixup", "freeze_backbone", "patience", "seed")
                     if k in card["training"]},
    }  # fmt: skip


def rgb_indices(band_names: list[str]) -> list[int]:
    """Bands to show as red, green, blue: named ones if present, else the first three (or one band as grey)."""
    named = named_rgb(band_names)
    if named is not None:
        return named
    return [0, 1, 2] if len(band_names) >= 3 else [0, 0, 0]


def stretch(rgb: np.ndarray) -> np.ndarray:
    """A per-band 2-98 % linear stretch to uint8, as GIS software shows multispectral data."""
    out = np.empty(rgb.shape, dtype=np.uint8)
    for b in range(rgb.shape[-1]):
        band = np.nan_to_num(rgb[..., b].astype(np.float64))
        lo, hi = np.percentile(band, [2, 98])
        out[..., b] = np.clip((band - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    return out


def report_samples(samples: dict, band_names: list[str]) -> list[dict]:
    """The saved validation chips as the report draws them: RGB image, label and prediction."""
    if not samples:
        return []
    idx = rgb_indices(band_names)
    out = []
    for i in range(len(samples["image"])):
        out.append({
            "chip": f"chip {int(samples['chip_ids'][i])}",
            "image_rgb": stretch(np.moveaxis(samples["image"][i][idx], 0, -1)),
            "label": samples["label"][i],
            "prediction": samples["prediction"][i],
        })  # fmt: skip
    return out


_PAGE = page(TEMPLATE)


def write_training_report(summary: dict, out_dir: Path, samples: list[dict] | None = None) -> Path:
    """Write ``out_dir/report.html`` and the plots as PNGs next to it; return the HTML path.

    ``summary`` is the run summary (see the module docs of the training stage); any optional field may be
    missing. ``samples`` are validation chips: dicts with ``chip``, ``image_rgb`` (H, W, 3 uint8), ``label`` and
    ``prediction`` ((H, W) uint8 class indices, 255 = unlabelled). Each file is written under a temporary name in
    ``out_dir`` and renamed into place; the HTML is written last. A plot that cannot be drawn (no history, no
    samples, ...) is left out, and an old PNG of that name in ``out_dir`` is removed so it cannot be mistaken
    for this run's.
    """
    out_dir = Path(out_dir)
    summary = dict(summary or {})
    history = [h for h in (summary.get("history") or []) if isinstance(h, dict)]
    metrics = summary.get("metrics") or {}
    baseline = summary.get("baseline") if isinstance(summary.get("baseline"), dict) else None
    best_epoch = as_int(summary.get("best_epoch"))
    monitor = summary.get("monitor")

    class_rows, names, colours = class_table(summary)

    figures: dict[str, Figure | None] = dict.fromkeys(PLOTS)
    if history:
        figures["loss"] = plot_loss(history, best_epoch, monitor)
        figures["metrics"] = plot_metrics(history, best_epoch, monitor)
    confusion = metrics.get("confusion")
    annotated = False
    if confusion:
        cm = np.asarray(confusion, dtype=float)
        if cm.ndim == 2 and cm.shape[0] == cm.shape[1] and cm.shape[0] > 0:
            k = cm.shape[0]
            cm_names = names if len(names) == k else [f"class {i}" for i in range(k)]
            figures["confusion"] = plot_confusion(np.nan_to_num(cm), cm_names)
            annotated = k <= MAX_ANNOTATED_CLASSES
    if class_rows:
        figures["class_frequencies"] = plot_frequencies(
            names, colours, [r["train_pixels"] for r in class_rows], [r["val_pixels"] for r in class_rows]
        )
    if samples and names:
        figures["samples"] = plot_samples(list(samples), names, colours)

    images = write_plots(out_dir, {key: None if fig is None else png_bytes(fig) for key, fig in figures.items()})

    per_class = per_class_rows(summary, class_rows)
    history_header, history_rows = _history_table(history, best_epoch)
    status = str(summary.get("status") or "unknown")
    settings = summary.get("settings") or {}
    html = _PAGE.render(
        css=CSS,
        no_warnings="No warnings: the automatic checks found nothing to flag for this run.",
        run_id="—" if summary.get("run_id") is None else summary["run_id"],
        name=summary.get("name") or "",
        status=status,
        status_kind=_STATUS_KIND.get(status.lower(), ""),
        facts=_facts(summary),
        warnings=warning_items(summary.get("warnings")),
        headline=_headline(summary),
        selection=_selection(summary),
        images=images,
        monitor_word=MONITOR_WORDS.get(monitor, monitor) if monitor in ("accuracy", "dice", "mean_iou") else "",
        per_class=per_class,
        class_metrics=bool(metrics.get("per_class")),
        n_weak=sum(r["weak"] for r in per_class),
        weak_iou=WEAK_IOU,
        annotated=annotated,
        history_header=history_header,
        history_rows=history_rows,
        settings=[(str(k), fmt_value(v)) for k, v in settings.items()] if isinstance(settings, dict) else [],
        run_log=_run_log(summary, baseline),
        version=__version__,
        generated=generated(),
    )
    html_path = out_dir / REPORT_PAGE
    write_page(html_path, html)
    return html_path


def write_run_report(config: ReportConfig) -> Path:
    """Write the HTML report (and its PNGs) of run ``config.run``; by default into the run folder."""
    registry = Registry(config.workspace)
    run = registry.run(config.run)
    folder = run_dir(registry.root, config.run)
    summary = load_summary(folder)
    if summary is None:
        raise RunError(f"Run {config.run} ({run['status']}) has no results to report yet.",
                       f"Let it finish, or resume it with `terralearn train --resume {config.run}`.")  # fmt: skip
    summary["status"] = run["status"]
    out = Path(config.out) if config.out else report_dir(registry.root, config.run)
    return get_task(summary.get("task") or DEFAULT_TASK).stage("report")(summary, out, load_samples(folder))


def write_pixel_report(summary: dict, out_dir: Path, samples: dict | None = None) -> Path:
    """Pixel classification's report from the run's summary and raw samples; the stage of ``write_run_report``."""
    return write_training_report(summary, out_dir, report_samples(samples or {}, summary.get("bands", [])))
