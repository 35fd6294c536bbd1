"""Class tables: original label values mapped to contiguous indices, with names and colours."""

from __future__ import annotations

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

_FALLBACK = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
]  # fmt: skip


@dataclass(frozen=True)
class ClassInfo:
    index: int
    value: int | str
    name: str
    colour: str

    def as_dict(self) -> dict:
        return asdict(self)


def colour_for(name: str, i: int) -> str:
    for word in str(name).lower().replace("_", " ").replace("-", " ").split():
        if word in NAMED_COLOURS:
            return NAMED_COLOURS[word]
    return _FALLBACK[i % len(_FALLBACK)]


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
    classes follow from 1. At most 255 classes (index 255 marks unlabelled pixels).
    """
    distinct = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    names = names or {}
    classes: list[ClassInfo] = []
    if background:
        if any(isinstance(v, str) for v in distinct):
            background_value = "background"
        if background_value in distinct:
            background_value = "background" if isinstance(background_value, str) else min(-1, min(distinct) - 1)
        classes.append(ClassInfo(0, background_value, "background", NAMED_COLOURS["background"]))
    for v in distinct:
        i = len(classes)
        name = str(names.get(v, v))
        classes.append(ClassInfo(i, v, name, colour_for(name, i)))
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
