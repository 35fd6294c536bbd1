"""Class tables: original label values mapped to contiguous indices, with names and colours."""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from terralearn.config import UNLABELLED
from terralearn.errors import LabelError

#: Colours for common land-cover and object names (matched on a word of the name).
NAMED_COLOURS = {
    "water": "#1f78b4",
    "river": "#1f78b4",
    "lake": "#1f78b4",
    "sea": "#08519c",
    "forest": "#1b7837",
    "tree": "#33a02c",
    "trees": "#33a02c",
    "wood": "#1b7837",
    "herbaceous": "#b2df8a",
    "grass": "#b2df8a",
    "grassland": "#b2df8a",
    "shrub": "#a6d96a",
    "crop": "#ffd92f",
    "crops": "#ffd92f",
    "cropland": "#ffd92f",
    "field": "#ffd92f",
    "fields": "#ffd92f",
    "agriculture": "#ffd92f",
    "barren": "#d8b365",
    "bare": "#d8b365",
    "sand": "#f6e8c3",
    "urban": "#e31a1c",
    "built": "#e31a1c",
    "building": "#e31a1c",
    "buildings": "#e31a1c",
    "road": "#636363",
    "roads": "#636363",
    "snow": "#f7f7f7",
    "ice": "#deebf7",
    "cloud": "#ffffff",
    "wetland": "#80cdc1",
    "background": "#000000",
}

#: Clearly different colours for classes without a well-known colour (or whose one is taken):
#: the Tableau 10, then Kelly's colours of maximum contrast. Near-duplicates of colours
#: already in use are skipped; more are generated when these run out.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#f3c300", "#875692", "#a1caf1", "#be0032", "#c2b280", "#008856",
    "#e68fac", "#0067a5", "#f99379", "#604e97", "#f6a600", "#b3446c", "#dcd300", "#882d17",
    "#8db600", "#654522", "#e25822", "#2b3d26",
]  # fmt: skip
#: The palette of :func:`colour_for` (one class on its own, by position).
_FALLBACK = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
]  # fmt: skip

#: Two colours closer than this (CIE76 delta E) count as the same colour.
SAME_COLOUR = 6.0
#: A colour picked from the palette keeps at least this distance from those in use, while it can.
DISTINCT_COLOUR = 20.0


@dataclass(frozen=True)
class ClassInfo:
    index: int
    value: int | str
    name: str
    colour: str

    def as_dict(self) -> dict:
        return asdict(self)


def _named_colour(name: str) -> str | None:
    for word in str(name).lower().replace("_", " ").replace("-", " ").split():
        if word in NAMED_COLOURS:
            return NAMED_COLOURS[word]
    return None


def colour_for(name: str, i: int) -> str:
    """The colour of one class on its own: its well-known colour, else palette colour ``i``.

    Colours of a whole class table come from :func:`assign_colours`, which also keeps them
    apart; this is for a single class looked up by name.
    """
    return _named_colour(name) or _FALLBACK[i % len(_FALLBACK)]


def _lab(colours) -> np.ndarray:
    """CIE L*a*b* (D65) of '#rrggbb' colours: shape (3,) for one colour, (n, 3) for a list."""
    one = isinstance(colours, str)
    hexes = [colours] if one else list(colours)
    rgb = np.array([[int(c.lstrip("#")[k : k + 2], 16) for k in (0, 2, 4)] for c in hexes], dtype=float) / 255
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = rgb @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)
    return lab[0] if one else lab


def colour_distance(a: str, b: str) -> float:
    """Perceptual distance of two '#rrggbb' colours (CIE76 delta E: about 2 is just noticeable)."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def _generated_colours(n: int) -> list[str]:
    """``n`` distinct colours spread over hue, lightness and saturation (deterministic)."""
    golden = 0.618033988749895
    out: dict[str, None] = {}
    i = 0
    levels = ((0.5, 0.75), (0.35, 0.7), (0.68, 0.65), (0.25, 0.55), (0.8, 0.5), (0.45, 0.4), (0.6, 0.9), (0.3, 0.35))
    while len(out) < n:
        light, sat = levels[i % len(levels)]
        r, g, b = colorsys.hls_to_rgb((i * golden) % 1.0, light, sat)
        out["#{:02x}{:02x}{:02x}".format(*(round(255 * v) for v in (r, g, b)))] = None
        i += 1
    return list(out)


#: Candidates for classes without a (free) well-known colour, in order of preference.
_POOL = list(dict.fromkeys([*PALETTE, *_generated_colours(2048)]))
_POOL_LAB = _lab(_POOL)


def assign_colours(names: list[str], given: list[str | None] | None = None) -> list[str]:
    """One colour per class, no two alike.

    A class keeps its ``given`` colour (a table being repaired), else its well-known colour
    (``NAMED_COLOURS``, matched on a word of its name), unless an earlier class already has
    that colour or one indistinguishable from it (:data:`SAME_COLOUR`). The others take, in
    class order, the next palette colour at least :data:`DISTINCT_COLOUR` from every colour
    in use; when the palette runs out, generated colours follow, the distance relaxed only
    as far as needed. The result never holds the same colour twice.
    """
    given = list(given) if given is not None else [None] * len(names)
    out: list[str | None] = [None] * len(names)
    used: list[np.ndarray] = []
    for i, name in enumerate(names):  # given or well-known colours, first come first served
        colour = given[i] if given[i] and _valid_hex(given[i]) else _named_colour(name)
        if not colour:
            continue
        lab = _lab(colour.lower())
        if all(np.linalg.norm(lab - u) >= SAME_COLOUR for u in used):
            out[i] = colour.lower()
            used.append(lab)
    nearest = np.full(len(_POOL), np.inf)  # distance of each candidate to the nearest colour in use
    for lab in used:
        nearest = np.minimum(nearest, np.linalg.norm(_POOL_LAB - lab, axis=1))
    taken = set(out)
    for i in range(len(names)):
        if out[i] is not None:
            continue
        limit = DISTINCT_COLOUR
        while True:
            ok = np.flatnonzero(nearest >= limit)
            ok = [j for j in ok[:64] if _POOL[j] not in taken] if len(ok) else []
            if ok or limit == 0:
                break
            limit = limit * 0.8 if limit > 0.5 else 0.0
        j = ok[0] if ok else next(j for j in range(len(_POOL)) if _POOL[j] not in taken)
        out[i] = _POOL[j]
        taken.add(_POOL[j])
        nearest = np.minimum(nearest, np.linalg.norm(_POOL_LAB - _POOL_LAB[j], axis=1))
    return out  # type: ignore[return-value]


def _valid_hex(colour) -> bool:
    c = str(colour).lstrip("#")
    return (
        isinstance(colour, str)
        and colour.startswith("#")
        and len(c) == 6
        and all(ch in "0123456789abcdefABCDEF" for ch in c)
    )


def distinct_colours(classes: list[dict]) -> list[dict]:
    """A class table (dicts with 'name' and 'colour') with clashing or missing colours replaced.

    For tables written before colours were kept apart (a chip set, a model or a map): the
    first class of each colour keeps it, the others get new ones as in :func:`assign_colours`.
    """
    colours = assign_colours([str(c.get("name", i)) for i, c in enumerate(classes)],
                             [c.get("colour") for c in classes])  # fmt: skip
    return [{**c, "colour": col} for c, col in zip(classes, colours, strict=True)]


def normalise_values(values: Iterable) -> list[int | str]:
    """Turn raw class values into ints (integral numbers) or strings; refuse fractional numbers."""
    out: list[int | str] = []
    for v in values:
        if isinstance(v, (bool, np.bool_, int, np.integer)):
            out.append(int(v))
        elif isinstance(v, (float, np.floating)):
            if not float(v).is_integer():
                raise LabelError(
                    f"Class value {v!r} is not a whole number.",
                    "Class values must be integers (e.g. 22531) or text; round or recode the class field.",
                )
            out.append(int(v))
        else:
            out.append(str(v))
    if any(isinstance(v, str) for v in out) and any(isinstance(v, int) for v in out):
        out = [str(v) for v in out]
    return out


def build_classes(
    values: Iterable[int | str],
    names: Mapping | None = None,
    background: bool = False,
    background_value: int | str = 0,
) -> list[ClassInfo]:
    """Map the distinct class values, sorted, to contiguous indices 0..K-1.

    With ``background`` the unlabelled pixels form class 0 ('background') and the label
    classes follow from 1. At most 255 classes (index 255 marks unlabelled pixels). No two
    classes share a colour (:func:`assign_colours`).
    """
    distinct = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    names = names or {}
    rows: list[tuple[int | str, str]] = []
    if background:
        if any(isinstance(v, str) for v in distinct):
            background_value = "background"
        if background_value in distinct:
            background_value = "background" if isinstance(background_value, str) else min(-1, min(distinct) - 1)
        rows.append((background_value, "background"))
    rows += [(v, str(names.get(v, v))) for v in distinct]
    colours = assign_colours([name for _, name in rows])
    classes = [ClassInfo(i, v, name, colours[i]) for i, (v, name) in enumerate(rows)]
    if len(classes) > UNLABELLED:
        raise LabelError(
            f"The labels hold {len(classes)} classes; at most {UNLABELLED} are supported.",
            "Merge rare classes or recode the class field into fewer classes.",
        )
    return classes


def class_lookup(classes: list[ClassInfo]) -> dict:
    return {c.value: c.index for c in classes}


def hex_to_rgba(colour: str) -> tuple[int, int, int, int]:
    c = colour.lstrip("#")
    return (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255)
