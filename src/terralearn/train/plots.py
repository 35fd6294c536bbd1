"""The plots of the training report: loss and scores per epoch, pixels per class, validation chips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from terralearn.config import UNLABELLED
from terralearn.geo.numbers import finite
from terralearn.io.html import UNLABELLED_RGB, as_int, colourise, compact, font_size, new_figure, short, style_axes
from terralearn.train.diagnostics import MONITOR_WORDS

#: At most this many validation samples are drawn.
MAX_SAMPLES = 8


def _series(history: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if (v := finite(h.get(key))) is None else v for h in history], dtype=float)


def _epochs(history: list[dict]) -> np.ndarray:
    return np.array([as_int(h.get("epoch"), i + 1) for i, h in enumerate(history)], dtype=float)


def _mark_best(ax, best_epoch: int | None, monitor: str | None) -> None:
    if best_epoch is None:
        return
    what = f" (best {MONITOR_WORDS.get(monitor or '', monitor)})" if monitor else ""
    ax.axvline(best_epoch, color="#555555", linestyle="--", linewidth=1.1, label=f"Best epoch: {best_epoch}{what}")


def _plot_epochs(history: list[dict], lines: tuple, best_epoch: int | None, monitor: str | None, ylabel: str,
                 ylim: tuple[float, float | None], widths: tuple[float, float]) -> Figure | None:  # fmt: skip
    """Curves of ``lines`` ((key, label, colour), ...) over the epochs; the monitored one drawn ``widths[0]``
    wide, the others ``widths[1]``. None when no curve has a value."""
    x = _epochs(history)
    series = [(k, lbl, col, _series(history, k)) for k, lbl, col in lines]
    series = [s for s in series if np.isfinite(s[3]).any()]
    if not series:
        return None
    fig = new_figure(7.6, 3.5)
    ax = fig.add_subplot()
    marker = "o" if len(x) <= 40 else None
    for key, lbl, col, y in series:
        width = widths[0] if key == monitor else widths[1]
        ax.plot(x, y, color=col, marker=marker, markersize=3.5, linewidth=width, label=lbl)
    _mark_best(ax, best_epoch, monitor)
    style_axes(ax, 9)
    ax.set_xlabel("Epoch", fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(*ylim)
    fig.legend(loc="outside lower center", ncols=len(lines) + 1, frameon=False, fontsize=9)
    return fig


def plot_loss(history: list[dict], best_epoch: int | None, monitor: str | None) -> Figure | None:
    lines = (("train_loss", "Training loss", "#1f77b4"), ("val_loss", "Validation loss", "#d95f02"))
    return _plot_epochs(history, lines, best_epoch, monitor, "Loss", (0, None), (1.8, 1.8))


def plot_metrics(history: list[dict], best_epoch: int | None, monitor: str | None) -> Figure | None:
    lines = (
        ("accuracy", "Overall accuracy", "#1b9e77"),
        ("dice", "Dice", "#7570b3"),
        ("mean_iou", "Mean IoU", "#e7298a"),
    )
    return _plot_epochs(history, lines, best_epoch, monitor, "Validation score (0–1)", (0, 1), (2.4, 1.6))


def plot_frequencies(names: list[str], colours: np.ndarray, train: list, val: list) -> Figure | None:
    k = len(names)
    tr = np.array([finite(v) or 0.0 for v in train], dtype=float)
    va = np.array([finite(v) or 0.0 for v in val], dtype=float)
    has_train, has_val = any(finite(v) is not None for v in train), any(finite(v) is not None for v in val)
    if not (has_train or has_val) or k == 0:
        return None
    fs = font_size(k)
    fig = new_figure(7.6, float(np.clip(0.42 * k + 1.4, 2.6, 10.0)))
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
    ax.set_yticks(y, labels=[short(n) for n in names], fontsize=fs)
    ax.margins(y=0.02)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax * 1.16)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(v)))
    ax.set_xlabel("Pixels (percentages are shares of each split's labelled pixels)", fontsize=9)
    style_axes(ax, fs)
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


def plot_samples(samples: list[dict], names: list[str], colours: np.ndarray) -> Figure | None:
    samples = [s for s in samples if s.get("image_rgb") is not None or s.get("label") is not None][:MAX_SAMPLES]
    if not samples:
        return None
    k = len(names)
    n = len(samples)
    cell = 2.3
    legend_rows = math.ceil((k + 1) / 4)
    fig = new_figure(3 * cell + 0.6, n * cell + 0.5 + 0.22 * legend_rows)
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
        chip = short(Path(str(s.get("chip", f"sample {r + 1}"))).name, 20)
        note = ""
        if label is not None and pred is not None and label.shape == pred.shape:
            valid = label != UNLABELLED
            if valid.any():
                note = f"\n{100.0 * float(np.mean(pred[valid] == label[valid])):.0f}% of labelled pixels correct"
        axes[r, 0].set_ylabel(chip + note, fontsize=8)
    handles = [Patch(facecolor=colours[i] / 255.0, edgecolor="#444444", label=short(names[i])) for i in range(k)]
    handles.append(Patch(facecolor=np.array(UNLABELLED_RGB) / 255.0, edgecolor="#444444", label="unlabelled"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(4, len(handles)),
        frameon=False,
        fontsize=8 if k > 10 else 9,
    )
    return fig
