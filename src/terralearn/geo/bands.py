"""Which bands show as red, green and blue (pure): one answer for previews, reports and first-layer weights."""

from __future__ import annotations

from collections.abc import Sequence

#: Band-name triples read as (red, green, blue), first match wins. "b4, b3, b2" is Sentinel-2 / Landsat 8-9.
RGB_TRIPLES = (("red", "green", "blue"), ("r", "g", "b"), ("b4", "b3", "b2"))
#: Names that stand for one colour whatever the sensor (not "b2": blue on Sentinel-2, green on Landsat 7).
_COLOUR_OF = {name: channel for triple in RGB_TRIPLES[:2] for channel, name in enumerate(triple)}


def named_rgb(band_names: Sequence[str]) -> list[int] | None:
    """0-based indices of the bands named red, green, blue (or a triple of ``RGB_TRIPLES``); None if absent."""
    names = [str(n).strip().lower() for n in band_names]
    for triple in RGB_TRIPLES:
        if all(t in names for t in triple):
            return [names.index(t) for t in triple]
    return None


def colour_channel(band_name: str) -> int | None:
    """0 / 1 / 2 when a band's name says red / green / blue, else None."""
    return _COLOUR_OF.get(str(band_name).strip().lower())
