"""The report kit shared by the training and evaluation reports: CSS, number formats, class colours, plots, pages.

A page is self-contained: plots are embedded as base64 data URIs (inline CSS, no JavaScript, no network), and each
plot is also written next to the page as a PNG. Every file is written atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from terralearn.classes import colour_for
from terralearn.config import UNLABELLED
from terralearn.geo.numbers import finite
from terralearn.io.atomic import atomic_file, write_text_atomic

#: Classes with an IoU below this are highlighted as weak.
WEAK_IOU = 0.5
#: Above this many classes the confusion matrix cells are not annotated with pixel counts.
MAX_ANNOTATED_CLASSES = 12
#: Resolution of the plots.
DPI = 110
#: Colour of unlabelled pixels (index 255) in class maps.
UNLABELLED_RGB = (200, 200, 200)
_HEX6 = re.compile(r"^#?([0-9a-fA-F]{6})$")


# --------------------------------------------------------------------------------------------- class colours


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
    items.sort(key=lambda t: (as_int(t[1].get("index"), t[0]), t[0]))
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
    indices: np.ndarray, colours: np.ndarray, unlabelled_rgb: tuple[int, int, int] = UNLABELLED_RGB
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


# --------------------------------------------------------------------------------------------- number formats


def as_int(x: object, default: int | None = None) -> int | None:
    """An int, or ``default`` where ``x`` is not one."""
    try:
        return int(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def fmt(x: object, digits: int = 3) -> str:
    """A number with ``digits`` decimals; '—' when missing or not finite."""
    v = finite(x)
    return "—" if v is None else f"{v:.{digits}f}"


def fmt_signed(x: float | None, digits: int = 3) -> str:
    """A difference with its sign (+0.012)."""
    return "—" if x is None else f"{x:+.{digits}f}"


def fmt_count(x: object) -> str:
    """A count with thousands separators (12,345)."""
    v = finite(x)
    return "—" if v is None else f"{round(v):,}"


def compact(n: float) -> str:
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


def fmt_lr(x: object) -> str:
    """A learning rate (3.0e-04, 0.05)."""
    v = finite(x)
    if v is None:
        return "—"
    return f"{v:.1e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e3) else f"{v:g}"


def fmt_duration(seconds: object) -> str:
    """Seconds as '42 s', '3 min 05 s' or '1 h 02 min'."""
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


def fmt_date(value: object) -> str:
    """An ISO time stamp as 'YYYY-MM-DD HH:MM' with its UTC offset."""
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


def fmt_value(v: object) -> str:
    """A settings value as short plain text."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v)


def short(name: str, n: int = 22) -> str:
    """A name cut to ``n`` characters with an ellipsis."""
    name = str(name)
    return name if len(name) <= n else name[: n - 1] + "…"


def font_size(k: int) -> float:
    """Base font size for plots with k classes (smaller when there are many)."""
    if k <= 6:
        return 10.0
    if k <= 10:
        return 9.0
    if k <= 14:
        return 8.0
    return 7.0


# --------------------------------------------------------------------------------------------- figures


def new_figure(width: float, height: float) -> Figure:
    """A white figure (inches) with a constrained layout, drawn without pyplot."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")


def style_axes(ax, fontsize: float) -> None:
    """The report's axes style: no top/right spines, a light grid behind the data."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=fontsize)
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def plot_confusion(confusion: np.ndarray, names: list[str]) -> Figure:
    """The confusion matrix as row shares (reference rows, predicted columns), annotated with counts."""
    k = confusion.shape[0]
    fs = font_size(k)
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    side = float(np.clip(0.36 * k + 2.6, 4.2, 7.2))  # at most ~940 px wide: shown 1:1 on the page
    fig = new_figure(side + 1.3, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if k <= MAX_ANNOTATED_CLASSES:
        for i in range(k):
            for j in range(k):
                count = confusion[i, j]
                colour = "white" if norm[i, j] > 0.55 else "#222222"
                weight = "bold" if i == j else "normal"
                ax.text(
                    j, i, compact(count), ha="center", va="center", color=colour, fontsize=fs - 0.5, fontweight=weight
                )
    labels = [short(n, 18 if k > 12 else 22) for n in names]
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


# --------------------------------------------------------------------------------------------- class tables


def class_table(summary: dict) -> tuple[list[dict], list[str], np.ndarray]:
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
                "index": as_int(c.get("index"), i),
                "value": "—" if c.get("value") is None else str(c.get("value")),
                "name": name,
                "hex": _hex(colours[i]),
                "train_pixels": c.get("train_pixels"),
                "val_pixels": c.get("val_pixels"),
            }
        )
    return rows, [r["name"] for r in rows], colours


def per_class_rows(summary: dict, class_rows: list[dict]) -> list[dict]:
    """Rows of the per-class table: precision, recall, F1, IoU, support, and whether the class is weak."""
    per_class = (summary.get("metrics") or {}).get("per_class") or []
    if not per_class:  # still list the classes (name, value, colour) so the page has a legend
        per_class = [{"index": r["index"], "name": r["name"]} for r in class_rows]
    by_index = {r["index"]: r for r in class_rows}
    out = []
    for i, p in enumerate(per_class):
        idx = as_int(p.get("index"), i)
        c = by_index.get(idx, {})
        iou = finite(p.get("iou"))
        name = p.get("name") or c.get("name") or f"class {idx}"
        out.append(
            {
                "name": str(name),
                "hex": c.get("hex", "#cccccc"),
                "value": c.get("value", "—"),
                "precision": fmt(p.get("precision")),
                "recall": fmt(p.get("recall")),
                "f1": fmt(p.get("f1")),
                "iou": fmt(iou),
                "support": fmt_count(p.get("support")),
                "weak": iou is not None and iou < WEAK_IOU,
            }
        )
    return out


# --------------------------------------------------------------------------------------------- pages

CSS = """
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

#: The end of both reports' header (the facts list), then the warnings section.
FACTS_AND_WARNINGS = (
    """<dl class="facts">
{% for k, v in facts %}<dt>{{ k }}</dt><dd>{{ v }}</dd>
{% endfor %}</dl>
</header>

"""
    + WARNINGS_SECTION
)


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def page(template: str) -> jinja2.Template:
    """A page template (autoescaped; an undefined name is an error)."""
    return _ENV.from_string(template)


def generated() -> str:
    """The time stamp of the page footer."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def warning_items(warnings) -> list[dict]:
    """Warnings (dicts, or plain messages) as the warnings section shows them."""
    out = []
    for w in warnings or []:
        w = w if isinstance(w, dict) else {"message": str(w)}
        out.append({"code": w.get("code") or "", "message": w.get("message") or "", "fix": w.get("fix") or ""})
    return out


def _data_uri(png: bytes) -> str:
    """A PNG as a data URI for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def write_plots(out_dir: Path, pngs: dict[str, bytes | None]) -> dict[str, str | None]:
    """Write each plot as ``<name>.png`` in ``out_dir`` and return its data URI.

    A plot that is None was not drawn: an old PNG of that name is removed, so it cannot be mistaken for this one.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, str | None] = {}
    for name, png in pngs.items():
        path = out_dir / f"{name}.png"
        if png is None:
            path.unlink(missing_ok=True)
            images[name] = None
            continue
        with atomic_file(path) as tmp:
            tmp.write_bytes(png)
        images[name] = _data_uri(png)
    return images


def write_page(path: Path, html: str) -> None:
    """Write the page (UTF-8) atomically."""
    write_text_atomic(path, html)
