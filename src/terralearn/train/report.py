"""Training report: one self-contained HTML page (plus the same plots as PNG files) for a training run.

The page is written for a GIS analyst: what was trained, what went wrong (automatic warnings), how good the
model is on spatially held-out validation data, whether it beat a simple baseline, and where it fails (weak
classes, confusion between classes, example chips). Everything is embedded in ``report.html`` (plots as base64
data URIs, inline CSS, no JavaScript, no network), and every plot is also written next to it as a PNG.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from terralearn import __version__
from terralearn.classes import colour_for
from terralearn.config import UNLABELLED
from terralearn.geo.numbers import finite
from terralearn.train.diagnostics import METRIC_WORDS, TIE, compare_with_baseline

__all__ = ["class_colours", "colourise", "write_training_report"]

#: The plots of the report, in page order; each is written as ``<name>.png`` next to ``report.html``.
PLOTS = ("loss", "metrics", "confusion", "class_frequencies", "samples")

#: Classes with a validation IoU below this are highlighted as weak.
WEAK_IOU = 0.5
#: Above this many classes the confusion matrix cells are not annotated with pixel counts.
MAX_ANNOTATED_CLASSES = 12
#: At most this many validation samples are drawn.
MAX_SAMPLES = 8
#: Differences smaller than this count as a tie when comparing with the baseline.

_DPI = 110
_UNLABELLED_RGB = (200, 200, 200)
_HEX6 = re.compile(r"^#?([0-9a-fA-F]{6})$")

_METRIC_LABELS = {
    "accuracy": "Overall accuracy",
    "dice": "Dice (mean F1)",
    "mean_iou": "Mean IoU",
    "kappa": "Cohen's kappa",
}
_MONITOR_WORDS = {
    **METRIC_WORDS,
    "val_loss": "validation loss",
    "train_loss": "training loss",
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


# --------------------------------------------------------------------------------------------- colour helpers


def _parse_colour(colour: object) -> tuple[int, int, int] | None:
    if not isinstance(colour, str) or not colour.strip():
        return None
    text = colour.strip()
    m = _HEX6.match(text)
    if m:
        h = m.group(1)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    try:  # '#rgb', named colours ('teal'), ...
        r, g, b = to_rgb(text)
    except ValueError:
        return None
    return round(r * 255), round(g * 255), round(b * 255)


def _ordered_classes(classes: Sequence[dict] | None) -> list[dict]:
    """The class dicts sorted by their index (list position where an index is missing)."""
    items = list(enumerate(classes or []))
    items.sort(key=lambda t: (_int(t[1].get("index"), t[0]), t[0]))
    return [c for _, c in items]


def class_colours(classes: list[dict]) -> np.ndarray:
    """K x 3 uint8 RGB colours of the classes, in class-index order, from their ``'#rrggbb'`` colours.

    A missing or unreadable colour falls back to TerraLearn's default colour for the class name.
    """
    ordered = _ordered_classes(classes)
    out = np.zeros((len(ordered), 3), dtype=np.uint8)
    for i, c in enumerate(ordered):
        rgb = _parse_colour(c.get("colour"))
        if rgb is None:
            rgb = _parse_colour(colour_for(str(c.get("name", i)), i))
        out[i] = rgb
    return out


def colourise(
    indices: np.ndarray, colours: np.ndarray, unlabelled_rgb: tuple[int, int, int] = _UNLABELLED_RGB
) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 RGB using a K x 3 colour table.

    Index 255 (unlabelled) - and any other index outside 0..K-1 - gets ``unlabelled_rgb``.
    """
    idx = np.asarray(indices)
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    lut = np.empty((256, 3), dtype=np.uint8)
    lut[:] = np.asarray(unlabelled_rgb, dtype=np.uint8)
    k = min(len(colours), UNLABELLED)
    lut[:k] = colours[:k]
    if idx.dtype != np.uint8:
        idx = np.where((idx >= 0) & (idx < 256), idx, UNLABELLED).astype(np.uint8)
    return lut[idx]


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


# --------------------------------------------------------------------------------------------- small formatters


def _int(x: object, default: int | None = None) -> int | None:
    try:
        return int(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _fmt(x: object, digits: int = 3) -> str:
    v = finite(x)
    return "—" if v is None else f"{v:.{digits}f}"


def _fmt_signed(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def _fmt_count(x: object) -> str:
    v = finite(x)
    return "—" if v is None else f"{round(v):,}"


def _compact(n: float) -> str:
    """12 -> '12', 12345 -> '12.3k', 2_400_000 -> '2.4M' (for plot annotations)."""
    a = abs(n)
    if a < 1000:
        return f"{n:.0f}"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            v = n / div
            text = f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
            return text.removesuffix(".0") + suffix
    return f"{n:.0f}"  # pragma: no cover


def _fmt_lr(x: object) -> str:
    v = finite(x)
    if v is None:
        return "—"
    return f"{v:.1e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e3) else f"{v:g}"


def _fmt_duration(seconds: object) -> str:
    s = finite(seconds)
    if s is None:
        return "—"
    s = round(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {sec:02d} s"
    return f"{sec} s"


def _fmt_date(value: object) -> str:
    if not value:
        return "—"
    try:
        dt = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    text = dt.strftime("%Y-%m-%d %H:%M")
    off = dt.utcoffset()
    if off is None:
        return text
    if off == _dt.timedelta(0):
        return text + " UTC"
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{text} UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _fmt_value(v: object) -> str:
    """A settings value as short plain text."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v)


def _short(name: str, n: int = 22) -> str:
    name = str(name)
    return name if len(name) <= n else name[: n - 1] + "…"


def _font(k: int) -> float:
    """Base font size for plots with k classes (smaller when there are many)."""
    if k <= 6:
        return 10.0
    if k <= 10:
        return 9.0
    if k <= 14:
        return 8.0
    return 7.0


# --------------------------------------------------------------------------------------------- atomic writes


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, then ``os.replace`` it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # re-created below with the usual permissions (mkstemp's are owner-only)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, facecolor="white")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- plots


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained", facecolor="white")


def _style_axes(ax, fontsize: float) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=fontsize)
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)


def _series(history: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if (v := finite(h.get(key))) is None else v for h in history], dtype=float)


def _epochs(history: list[dict]) -> np.ndarray:
    return np.array([_int(h.get("epoch"), i + 1) for i, h in enumerate(history)], dtype=float)


def _mark_best(ax, best_epoch: int | None, monitor: str | None) -> None:
    if best_epoch is None:
        return
    what = f" (best {_MONITOR_WORDS.get(monitor or '', monitor)})" if monitor else ""
    ax.axvline(best_epoch, color="#555555", linestyle="--", linewidth=1.1, label=f"Best epoch: {best_epoch}{what}")


def _plot_loss(history: list[dict], best_epoch: int | None, monitor: str | None) -> Figure | None:
    x = _epochs(history)
    lines = (("train_loss", "Training loss", "#1f77b4"), ("val_loss", "Validation loss", "#d95f02"))
    series = [(lbl, col, _series(history, k)) for k, lbl, col in lines]
    series = [s for s in series if np.isfinite(s[2]).any()]
    if not series:
        return None
    fig = _new_figure(7.6, 3.5)
    ax = fig.add_subplot()
    marker = "o" if len(x) <= 40 else None
    for lbl, col, y in series:
        ax.plot(x, y, color=col, marker=marker, markersize=3.5, linewidth=1.8, label=lbl)
    _mark_best(ax, best_epoch, monitor)
    _style_axes(ax, 9)
    ax.set_xlabel("Epoch", fontsize=10)
    ax.set_ylabel("Loss", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    fig.legend(loc="outside lower center", ncols=3, frameon=False, fontsize=9)
    return fig


def _plot_metrics(history: list[dict], best_epoch: int | None, monitor: str | None) -> Figure | None:
    x = _epochs(history)
    lines = (
        ("accuracy", "Overall accuracy", "#1b9e77"),
        ("dice", "Dice", "#7570b3"),
        ("mean_iou", "Mean IoU", "#e7298a"),
    )
    series = [(k, lbl, col, _series(history, k)) for k, lbl, col in lines]
    series = [s for s in series if np.isfinite(s[3]).any()]
    if not series:
        return None
    fig = _new_figure(7.6, 3.5)
    ax = fig.add_subplot()
    marker = "o" if len(x) <= 40 else None
    for key, lbl, col, y in series:
        width = 2.4 if key == monitor else 1.6
        ax.plot(x, y, color=col, marker=marker, markersize=3.5, linewidth=width, label=lbl)
    _mark_best(ax, best_epoch, monitor)
    _style_axes(ax, 9)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Epoch", fontsize=10)
    ax.set_ylabel("Validation score (0–1)", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(loc="outside lower center", ncols=4, frameon=False, fontsize=9)
    return fig


def _plot_confusion(confusion: np.ndarray, names: list[str]) -> Figure:
    k = confusion.shape[0]
    fs = _font(k)
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    side = float(np.clip(0.36 * k + 2.6, 4.2, 7.2))  # at most ~940 px wide: shown 1:1 on the page
    fig = _new_figure(side + 1.3, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if k <= MAX_ANNOTATED_CLASSES:
        for i in range(k):
            for j in range(k):
                count = confusion[i, j]
                colour = "white" if norm[i, j] > 0.55 else "#222222"
                weight = "bold" if i == j else "normal"
                ax.text(
                    j, i, _compact(count), ha="center", va="center", color=colour, fontsize=fs - 0.5, fontweight=weight
                )
    labels = [_short(n, 18 if k > 12 else 22) for n in names]
    ax.set_xticks(range(k), labels=labels, fontsize=fs)
    ax.set_yticks(range(k), labels=labels, fontsize=fs)
    if k > 3 or max((len(n) for n in labels), default=0) > 8:
        ax.tick_params(axis="x", labelrotation=45)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")
    ax.set_xlabel("Predicted class", fontsize=fs + 1.5, labelpad=6)
    ax.set_ylabel("Reference class (validation labels)", fontsize=fs + 1.5, labelpad=6)
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=2)
    cbar = fig.colorbar(im, ax=ax, shrink=0.75, pad=0.02)
    cbar.set_label("Share of the reference class's pixels", fontsize=fs)
    cbar.ax.tick_params(labelsize=fs - 1)
    cbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    return fig


def _plot_frequencies(names: list[str], colours: np.ndarray, train: list, val: list) -> Figure | None:
    k = len(names)
    tr = np.array([finite(v) or 0.0 for v in train], dtype=float)
    va = np.array([finite(v) or 0.0 for v in val], dtype=float)
    has_train, has_val = any(finite(v) is not None for v in train), any(finite(v) is not None for v in val)
    if not (has_train or has_val) or k == 0:
        return None
    fs = _font(k)
    fig = _new_figure(7.6, float(np.clip(0.42 * k + 1.4, 2.6, 10.0)))
    ax = fig.add_subplot()
    y = np.arange(k)
    bars = []
    if has_train and has_val:
        h = 0.4
        bars.append((tr, y - h / 2, h, None, 1.0, "Training pixels"))
        bars.append((va, y + h / 2, h, "////", 0.55, "Validation pixels"))
    elif has_train:
        bars.append((tr, y, 0.7, None, 1.0, "Training pixels"))
    else:
        bars.append((va, y, 0.7, "////", 0.55, "Validation pixels"))
    facecolours = colours.astype(float) / 255.0
    xmax = max(float(np.max(vals)) for vals, *_ in bars) or 1.0
    handles = []
    for vals, pos, h, hatch, alpha, label in bars:
        total = vals.sum()
        ax.barh(pos, vals, height=h, color=facecolours, alpha=alpha, hatch=hatch, edgecolor="#444444", linewidth=0.6)
        for v, p in zip(vals, pos, strict=True):
            pct = 100.0 * v / total if total > 0 else 0.0
            text = f"{pct:.1f}%" if pct >= 0.1 or v == 0 else "<0.1%"
            ax.text(v + xmax * 0.01, p, text, va="center", ha="left", fontsize=max(7.0, fs - 1), color="#333333")
        handles.append(Patch(facecolor="#bbbbbb", alpha=alpha, hatch=hatch, edgecolor="#444444", label=label))
    ax.set_yticks(y, labels=[_short(n) for n in names], fontsize=fs)
    ax.margins(y=0.02)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax * 1.16)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    ax.set_xlabel("Pixels (percentages are shares of each split's labelled pixels)", fontsize=9)
    _style_axes(ax, fs)
    ax.grid(axis="y", visible=False)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=9)
    return fig


def _as_rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim == 3 and a.shape[-1] > 3:
        a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.nan_to_num(a.astype(float))
        top = float(a.max(initial=0.0))
        if top <= 1.0:  # reflectance 0-1
            a = a * 255.0
        elif top > 255.0:  # e.g. uint16 digital numbers: a 2-98 % stretch
            lo, hi = np.percentile(a, [2, 98])
            a = (a - lo) / max(hi - lo, 1e-9) * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    return a


def _plot_samples(samples: list[dict], names: list[str], colours: np.ndarray) -> Figure | None:
    samples = [s for s in samples if s.get("image_rgb") is not None or s.get("label") is not None][:MAX_SAMPLES]
    if not samples:
        return None
    k = len(names)
    n = len(samples)
    cell = 2.3
    legend_rows = math.ceil((k + 1) / 4)
    fig = _new_figure(3 * cell + 0.6, n * cell + 0.5 + 0.22 * legend_rows)
    axes = fig.subplots(n, 3, squeeze=False)
    titles = ("Image (RGB)", "Reference label", "Prediction")
    for r, s in enumerate(samples):
        label = None if s.get("label") is None else np.asarray(s["label"])
        pred = None if s.get("prediction") is None else np.asarray(s["prediction"])
        panels = (
            None if s.get("image_rgb") is None else _as_rgb(s["image_rgb"]),
            None if label is None else colourise(label, colours),
            None if pred is None else colourise(pred, colours),
        )
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_color("#999999")
            if panel is None:
                ax.text(
                    0.5,
                    0.5,
                    "not available",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="#777777",
                    transform=ax.transAxes,
                )
            else:
                ax.imshow(panel, interpolation="nearest")
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
        chip = _short(Path(str(s.get("chip", f"sample {r + 1}"))).name, 20)
        note = ""
        if label is not None and pred is not None and label.shape == pred.shape:
            valid = label != UNLABELLED
            if valid.any():
                note = f"\n{100.0 * float(np.mean(pred[valid] == label[valid])):.0f}% of labelled pixels correct"
        axes[r, 0].set_ylabel(chip + note, fontsize=8)
    handles = [Patch(facecolor=colours[i] / 255.0, edgecolor="#444444", label=_short(names[i])) for i in range(k)]
    handles.append(Patch(facecolor=np.array(_UNLABELLED_RGB) / 255.0, edgecolor="#444444", label="unlabelled"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(4, len(handles)),
        frameon=False,
        fontsize=8 if k > 10 else 9,
    )
    return fig


# --------------------------------------------------------------------------------------------- page content


def _class_table(summary: dict) -> tuple[list[dict], list[str], np.ndarray]:
    """Class rows (index, value, name, hex colour, pixels), names and the K x 3 colour table."""
    classes = _ordered_classes(summary.get("classes"))
    per_class = (summary.get("metrics") or {}).get("per_class") or []
    if not classes and per_class:  # no class table, fall back on the per-class metrics
        classes = _ordered_classes(
            [{"index": p.get("index", i), "name": p.get("name")} for i, p in enumerate(per_class)]
        )
    confusion = (summary.get("metrics") or {}).get("confusion")
    if not classes and confusion:
        classes = [{"index": i, "name": f"class {i}"} for i in range(len(confusion))]
    colours = class_colours(classes)
    rows = []
    for i, c in enumerate(classes):
        name = c.get("name")
        name = str(name) if name not in (None, "") else f"class {c.get('index', i)}"
        rows.append(
            {
                "index": _int(c.get("index"), i),
                "value": "—" if c.get("value") is None else str(c.get("value")),
                "name": name,
                "hex": _hex(colours[i]),
                "train_pixels": c.get("train_pixels"),
                "val_pixels": c.get("val_pixels"),
            }
        )
    return rows, [r["name"] for r in rows], colours


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
            {"label": label, "model": _fmt(mine), "baseline": _fmt(base), "diff": _fmt_signed(diff), "trend": trend}
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
            word = _MONITOR_WORDS[key]
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
                _MONITOR_WORDS[k]
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
            "score": _fmt(r.get("score")), "spread": "—" if spread is None else f"± {spread:.3f}",
            "accuracy": _fmt(r.get("accuracy")), "mean_iou": _fmt(r.get("mean_iou")),
            "seconds": _fmt_duration(r.get("seconds")), "steps": _fmt_count(r.get("steps")) if r.get("steps") else "—",
            "status": r.get("note") or ("scored" if r.get("status") == "scored" else str(r.get("status") or "")),
        })  # fmt: skip
    return {"rows": rows, "criterion": _MONITOR_WORDS.get(crit, crit), "folds": sel.get("folds"),
            "reason": sel.get("reason") or "", "refit": sel.get("refit") or "", "notes": sel.get("notes") or []}  # fmt: skip


def _per_class_rows(summary: dict, class_rows: list[dict]) -> list[dict]:
    per_class = (summary.get("metrics") or {}).get("per_class") or []
    if not per_class:  # still list the classes (name, value, colour) so the page has a legend
        per_class = [{"index": r["index"], "name": r["name"]} for r in class_rows]
    by_index = {r["index"]: r for r in class_rows}
    out = []
    for i, p in enumerate(per_class):
        idx = _int(p.get("index"), i)
        c = by_index.get(idx, {})
        iou = finite(p.get("iou"))
        name = p.get("name") or c.get("name") or f"class {idx}"
        out.append(
            {
                "name": str(name),
                "hex": c.get("hex", "#cccccc"),
                "value": c.get("value", "—"),
                "precision": _fmt(p.get("precision")),
                "recall": _fmt(p.get("recall")),
                "f1": _fmt(p.get("f1")),
                "iou": _fmt(iou),
                "support": _fmt_count(p.get("support")),
                "weak": iou is not None and iou < WEAK_IOU,
            }
        )
    return out


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
                cells.append(str(_int(v, i + 1)))
            elif k == "lr":
                cells.append(_fmt_lr(v))
            elif k == "seconds":
                cells.append(_fmt(v, 1))
            elif finite(v) is not None:
                cells.append(_fmt(v, 4) if "loss" in str(k) else _fmt(v, 3))
            else:
                cells.append(_fmt_value(v))
        rows.append({"cells": cells, "best": best_epoch is not None and _int(h.get("epoch"), i + 1) == best_epoch})
    return header, rows


def _facts(summary: dict) -> list[tuple[str, str]]:
    arch = summary.get("architecture")
    backbone = summary.get("backbone")
    model = " / ".join(str(x) for x in (arch, backbone) if x) or "—"
    if summary.get("weights"):
        model += f" (pretrained weights: {summary['weights']})"
    run, total = _int(summary.get("epochs_run")), _int(summary.get("epochs_set"))
    if run is not None and total is not None:
        epochs = f"{run} of {total}" + (" (stopped early)" if run < total else "")
    else:
        epochs = str(run if run is not None else (total if total is not None else "—"))
    best = _int(summary.get("best_epoch"))
    monitor = summary.get("monitor")
    best_text = "—" if best is None else str(best)
    if best is not None and monitor:
        best_text += (
            f" (highest {_MONITOR_WORDS.get(monitor, monitor)})"
            if "loss" not in str(monitor)
            else (f" (lowest {_MONITOR_WORDS.get(monitor, monitor)})")
        )
    facts = [
        ("Model", model),
        ("Task", str(summary.get("task") or "—").replace("_", " ")),
        ("Created", _fmt_date(summary.get("created"))),
        ("Device", str(summary.get("device") or "—")),
        ("Training time", _fmt_duration(summary.get("training_seconds"))),
        ("Epochs run", epochs),
        ("Best epoch", best_text),
    ]
    if finite(summary.get("model_size_mb")) is not None:
        facts.append(("Model size", f"{finite(summary['model_size_mb']):.1f} MB"))
    if summary.get("bands"):
        facts.append(("Bands", _fmt_value(summary["bands"])))
    size = summary.get("chip_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        facts.append(("Chip size", f"{size[0]} × {size[1]} pixels"))
    px = summary.get("pixel_size")
    if isinstance(px, (list, tuple)) and len(px) == 2:
        facts.append(("Pixel size", f"{_fmt_value(px[0])} × {_fmt_value(px[1])} (map units)"))
    if summary.get("chip_set"):
        facts.append(("Chip set", str(summary["chip_set"])))
    return facts


def _run_log(summary: dict, baseline: dict | None) -> list[tuple[str, str]]:
    """(column, value) pairs of one row for the analyst's spreadsheet of runs."""
    m = summary.get("metrics") or {}
    created = _fmt_date(summary.get("created"))
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
        ("Accuracy", _fmt(m.get("accuracy"))),
        ("Dice", _fmt(m.get("dice"))),
        ("Mean IoU", _fmt(m.get("mean_iou"))),
        ("Kappa", _fmt(m.get("kappa"))),
        ("Baseline mean IoU", _fmt(baseline.get("mean_iou")) if baseline else ""),
        ("Minutes", _fmt(seconds / 60, 1) if seconds is not None else ""),
    ]
    return [(k, "" if v is None or v == "—" else " ".join(str(v).split())) for k, v in cols]


# --------------------------------------------------------------------------------------------- template

_CSS = """
*{box-sizing:border-box}
body{font-family:"Segoe UI",system-ui,-apple-system,Roboto,Helvetica,Arial,sans-serif;color:#222;background:#f4f5f7;
 margin:0;line-height:1.45;font-size:15px}
main{max-width:1000px;margin:0 auto;padding:24px 28px 40px;background:#fff;min-height:100vh}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.2em;margin:34px 0 8px;padding-bottom:4px;border-bottom:2px solid #e3e6ea}
.sub{color:#555;margin:0 0 14px}
.badge{display:inline-block;padding:2px 10px;border-radius:11px;font-size:.62em;vertical-align:middle;
 font-weight:600;text-transform:uppercase;letter-spacing:.04em;background:#e0e0e0;color:#333}
.badge.ok{background:#d8f0dd;color:#1d6b2f}.badge.info{background:#dde9f7;color:#1f4f86}
.badge.warn{background:#fdf0d2;color:#7a5200}.badge.bad{background:#f9dada;color:#8c1c1c}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:4px 16px;margin:0;font-size:.93em}
dl.facts dt{color:#666}dl.facts dd{margin:0;word-break:break-word}
.warning{border:1px solid #e8c46a;border-left:6px solid #d99a00;background:#fff8e6;padding:10px 14px;margin:10px 0;
 border-radius:4px}
.warning .msg{font-weight:600}.warning .fix{margin-top:4px}.warning .fix b{color:#7a5200}
.warning code{font-size:.8em;color:#7a5200;background:#fdeebd;padding:1px 5px;border-radius:3px;float:right}
.nowarn{color:#1d6b2f;background:#eef8f0;border:1px solid #bfe3c7;padding:8px 14px;border-radius:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.92em;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid #e3e6ea;text-align:left}
th{background:#f4f5f7;font-weight:600}
td.n,th.n{text-align:right}
tr.weak td{background:#fdecec}tr.best td{background:#eef4fb;font-weight:600}
.tag{font-size:.75em;font-weight:600;padding:1px 6px;border-radius:3px;margin-left:6px}
.tag.weak{background:#c62828;color:#fff}.tag.best{background:#1f4f86;color:#fff}
.up{color:#1d6b2f;font-weight:600}.down{color:#b71c1c;font-weight:600}.tie{color:#555}
.verdict{padding:9px 14px;border-radius:4px;margin:10px 0;font-size:1.02em}
.verdict.up{background:#eef8f0;color:#1d4f2a}.verdict.down{background:#fdecec;color:#7c1a1a}
.verdict.tie,.verdict.info,.verdict.none{background:#f4f5f7;color:#333;font-weight:400}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #555;margin-right:7px;vertical-align:-1px}
figure{margin:10px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.note{color:#555;font-size:.88em;margin-top:4px}
.tablewrap{overflow-x:auto}
table.log{font-size:.8em}table.log th,table.log td{padding:3px 8px;white-space:nowrap}
footer{margin-top:36px;color:#888;font-size:.8em}
@media print{body{background:#fff}main{padding:0}h2{break-after:avoid}figure,table,.warning{break-inside:avoid}}
"""

#: The warnings section shared by the training and evaluation reports (``no_warnings`` is the empty-state text).
WARNINGS_SECTION = """<section id="warnings">
<h2>Warnings</h2>
{% if warnings %}{% for w in warnings %}<div class="warning">
{% if w.code %}<code>{{ w.code }}</code>{% endif %}<div class="msg">{{ w.message }}</div>
{% if w.fix %}<div class="fix"><b>What to do:</b> {{ w.fix }}</div>{% endif %}
</div>
{% endfor %}{% else %}<p class="nowarn">{{ no_warnings | default("No warnings.") }}</p>
{% endif %}</section>"""

_TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TerraLearn run {{ run_id }}{% if name %} – {{ name }}{% endif %}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
<header>
<h1>Run {{ run_id }}{% if name %} · {{ name }}{% endif %}
 <span class="badge {{ status_kind }}">{{ status }}</span></h1>
{% if selection %}<p class="sub">TerraLearn training report. All accuracy figures below are
<b>cross-validated on held-out polygons</b>: every labelled pixel was predicted by a model that never saw its polygon
({{ selection.folds }} folds of whole polygons). The shipped model was then refitted on every label.</p>
{% else %}<p class="sub">TerraLearn training report. All accuracy figures below are measured on the
<b>spatially held-out validation data</b> (areas the model never trained on), not on the training chips.</p>{% endif %}
<dl class="facts">
{% for k, v in facts %}<dt>{{ k }}</dt><dd>{{ v }}</dd>
{% endfor %}</dl>
</header>

"""
    + WARNINGS_SECTION
    + """

<section id="accuracy">
<h2>Accuracy on {% if selection %}held-out polygons (cross-validated){% else %}validation data{% endif %}</h2>
{% if headline.rows %}<table>
<tr><th>Metric</th><th class="n">This model</th>{% if headline.baseline_name %}<th class="n">Baseline:
 {{ headline.baseline_name }}</th><th class="n">Difference</th>{% endif %}</tr>
{% for r in headline.rows %}<tr><td>{{ r.label }}</td><td class="n"><b>{{ r.model }}</b></td>
{% if headline.baseline_name %}<td class="n">{{ r.baseline }}</td><td class="n {{ r.trend }}">{{ r.diff }}</td>{% endif %}</tr>
{% endfor %}</table>
{% else %}<p class="note">No validation metrics were recorded for this run.</p>{% endif %}
{% if headline.sentence %}<p class="verdict {{ headline.verdict }}">{{ headline.sentence }}</p>
{% else %}<p class="note">No baseline was trained for this run, so there is nothing to compare the model against.</p>
{% endif %}<p class="note">Scores run from 0 to 1 (higher is better). Overall accuracy counts correct pixels;
Dice and mean IoU average over classes, so rare classes count as much as common ones; kappa discounts chance agreement.</p>
</section>

{% if selection %}<section id="selection">
<h2>Model selection</h2>
<p>{{ selection.reason }}</p>
<div class="tablewrap"><table>
<tr><th>Candidate</th><th class="n">CV {{ selection.criterion }}</th><th class="n">Spread over folds</th>
<th class="n">Overall accuracy</th><th class="n">Time</th><th class="n">Steps</th><th>Status</th></tr>
{% for r in selection.rows %}<tr{% if r.chosen %} class="best"{% endif %}><td>{{ r.label }}{% if r.chosen %}<span
 class="tag best">chosen</span>{% endif %}</td><td class="n">{{ r.score }}</td><td class="n">{{ r.spread }}</td>
<td class="n">{{ r.accuracy }}</td><td class="n">{{ r.seconds }}</td><td class="n">{{ r.steps }}</td>
<td>{{ r.status }}</td></tr>
{% endfor %}</table></div>
{% for n in selection.notes %}<p class="note">{{ n }}</p>
{% endfor %}<p class="note">Each candidate was trained {{ selection.folds }} times, each time without one fold of
whole polygons, and scored on that fold. The CV score pools the held-out predictions; the spread is the standard
deviation of the per-fold scores (a large spread means the estimate rests on few polygons). Time is the
cross-validation's wall time. {{ selection.refit }}</p>
</section>

{% endif %}<section id="training">
<h2>Training curves</h2>
{% if images.loss %}<figure><img src="{{ images.loss }}" alt="Training and validation loss per epoch">
<figcaption>Loss per epoch (lower is better). Validation loss rising while training loss keeps falling means the
model is over-fitting; the dashed line marks the epoch whose weights were kept.</figcaption></figure>
{% endif %}{% if images.metrics %}<figure><img src="{{ images.metrics }}" alt="Validation metrics per epoch">
<figcaption>Validation scores per epoch{% if monitor_word %}; the thick line ({{ monitor_word }}) picked the best
epoch{% endif %}.</figcaption></figure>
{% endif %}{% if not images.loss and not images.metrics %}<p class="note">No per-epoch history was recorded for this
run.</p>{% endif %}
</section>

<section id="classes">
<h2>Accuracy per class</h2>
{% if per_class %}<div class="tablewrap"><table>
<tr><th>Class</th><th class="n">Value</th><th class="n">Precision<br><small>(user's accuracy)</small></th>
<th class="n">Recall<br><small>(producer's accuracy)</small></th><th class="n">F1</th><th class="n">IoU</th>
<th class="n">Support<br><small>(validation pixels)</small></th></tr>
{% for r in per_class %}<tr{% if r.weak %} class="weak"{% endif %}><td><span class="sw" style="background:{{ r.hex }}"></span>
{{- r.name }}{% if r.weak %}<span class="tag weak">weak</span>{% endif %}</td><td class="n">{{ r.value }}</td>
<td class="n">{{ r.precision }}</td><td class="n">{{ r.recall }}</td><td class="n">{{ r.f1 }}</td>
<td class="n">{{ r.iou }}</td><td class="n">{{ r.support }}</td></tr>
{% endfor %}</table></div>
<p class="note">Precision (user's accuracy): of the pixels mapped as the class, the share that really are it.
Recall (producer's accuracy): of the reference pixels of the class, the share that were found.
{% if not class_metrics %}<b>No per-class metrics were recorded for this run.</b>
{% elif n_weak %}<b>{{ n_weak }} weak class{{ "es" if n_weak != 1 else "" }}</b> (highlighted: IoU below {{ weak_iou }}).
{% else %}No class has an IoU below {{ weak_iou }}.{% endif %}</p>
{% else %}<p class="note">No classes or per-class metrics were recorded for this run.</p>{% endif %}
{% if images.confusion %}<figure><img src="{{ images.confusion }}" alt="Confusion matrix">
<figcaption>Confusion matrix of the validation pixels. Rows are the reference (true) class, columns the predicted class;
colours are row shares, so a dark diagonal is good and dark cells off it show which classes are mixed up.
{% if annotated %}Numbers are pixel counts.{% else %}Pixel counts are left out with this many classes.{% endif %}
ArcGIS Pro's <i>Compute Confusion Matrix</i> table is the other way round (its rows are the classified values).
</figcaption></figure>{% endif %}
</section>

<section id="data">
<h2>Training data</h2>
{% if images.class_frequencies %}<figure><img src="{{ images.class_frequencies }}" alt="Pixels per class">
<figcaption>Labelled pixels per class in the training and validation chips. Classes with very few pixels are hard to
learn and their validation scores rest on little evidence.</figcaption></figure>
{% else %}<p class="note">No class pixel counts were recorded for this run.</p>{% endif %}
</section>

<section id="samples">
<h2>Validation samples</h2>
{% if images.samples %}<figure><img src="{{ images.samples }}" alt="Validation chips: image, reference label and prediction">
<figcaption>Validation chips with their reference labels and the model's predictions, in the class colours;
grey pixels are unlabelled.</figcaption></figure>
{% else %}<p class="note">No validation samples were drawn for this report.</p>{% endif %}
</section>

<section id="epochs">
<h2>Epochs</h2>
{% if history_rows %}<div class="tablewrap"><table>
<tr>{% for h in history_header %}<th class="n">{{ h }}</th>{% endfor %}</tr>
{% for r in history_rows %}<tr{% if r.best %} class="best"{% endif %}>{% for c in r.cells %}<td class="n">
{{- c }}{% if loop.first and r.best %}<span class="tag best">best</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table></div>{% else %}<p class="note">No per-epoch history was recorded for this run.</p>{% endif %}
</section>

<section id="settings">
<h2>Settings</h2>
{% if settings %}<table>
{% for k, v in settings %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}</table>{% else %}<p class="note">No settings were recorded.</p>{% endif %}
<p class="note">For your run log: select this table and paste it into a spreadsheet.</p>
<div class="tablewrap"><table class="log">
<tr>{% for k, _ in run_log %}<th>{{ k }}</th>{% endfor %}</tr>
<tr>{% for _, v in run_log %}<td>{{ v }}</td>{% endfor %}</tr>
</table></div>
</section>

<footer>Generated by TerraLearn {{ version }} on {{ generated }}.</footer>
</main>
</body>
</html>
"""
)

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_PAGE = _ENV.from_string(_TEMPLATE)


# --------------------------------------------------------------------------------------------- entry point


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
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = dict(summary or {})
    history = [h for h in (summary.get("history") or []) if isinstance(h, dict)]
    metrics = summary.get("metrics") or {}
    baseline = summary.get("baseline") if isinstance(summary.get("baseline"), dict) else None
    best_epoch = _int(summary.get("best_epoch"))
    monitor = summary.get("monitor")

    class_rows, names, colours = _class_table(summary)

    figures: dict[str, Figure | None] = dict.fromkeys(PLOTS)
    if history:
        figures["loss"] = _plot_loss(history, best_epoch, monitor)
        figures["metrics"] = _plot_metrics(history, best_epoch, monitor)
    confusion = metrics.get("confusion")
    annotated = False
    if confusion:
        cm = np.asarray(confusion, dtype=float)
        if cm.ndim == 2 and cm.shape[0] == cm.shape[1] and cm.shape[0] > 0:
            k = cm.shape[0]
            cm_names = names if len(names) == k else [f"class {i}" for i in range(k)]
            figures["confusion"] = _plot_confusion(np.nan_to_num(cm), cm_names)
            annotated = k <= MAX_ANNOTATED_CLASSES
    if class_rows:
        figures["class_frequencies"] = _plot_frequencies(
            names, colours, [r["train_pixels"] for r in class_rows], [r["val_pixels"] for r in class_rows]
        )
    if samples and names:
        figures["samples"] = _plot_samples(list(samples), names, colours)

    images: dict[str, str | None] = {}
    for key, fig in figures.items():
        path = out_dir / f"{key}.png"
        if fig is None:
            images[key] = None
            if path.exists():
                path.unlink()
            continue
        data = _png_bytes(fig)
        _write_atomic(path, data)
        images[key] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")

    per_class = _per_class_rows(summary, class_rows)
    history_header, history_rows = _history_table(history, best_epoch)
    status = str(summary.get("status") or "unknown")
    warnings = [w if isinstance(w, dict) else {"message": str(w)} for w in (summary.get("warnings") or [])]
    settings = summary.get("settings") or {}
    html = _PAGE.render(
        css=_CSS,
        no_warnings="No warnings: the automatic checks found nothing to flag for this run.",
        run_id="—" if summary.get("run_id") is None else summary["run_id"],
        name=summary.get("name") or "",
        status=status,
        status_kind=_STATUS_KIND.get(status.lower(), ""),
        facts=_facts(summary),
        warnings=[
            {"code": w.get("code") or "", "message": w.get("message") or "", "fix": w.get("fix") or ""}
            for w in warnings
        ],
        headline=_headline(summary),
        selection=_selection(summary),
        images=images,
        monitor_word=_MONITOR_WORDS.get(monitor, monitor) if monitor in ("accuracy", "dice", "mean_iou") else "",
        per_class=per_class,
        class_metrics=bool(metrics.get("per_class")),
        n_weak=sum(r["weak"] for r in per_class),
        weak_iou=WEAK_IOU,
        annotated=annotated,
        history_header=history_header,
        history_rows=history_rows,
        settings=[(str(k), _fmt_value(v)) for k, v in settings.items()] if isinstance(settings, dict) else [],
        run_log=_run_log(summary, baseline),
        version=__version__,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    html_path = out_dir / "report.html"
    _write_atomic(html_path, html.encode("utf-8"))
    return html_path
