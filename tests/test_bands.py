"""Which bands show as red, green and blue: one rule for previews, reports and first-layer weights."""

from __future__ import annotations

from terralearn.geo.bands import colour_channel, named_rgb
from terralearn.train.report import rgb_indices


def test_named_rgb_finds_a_triple_in_any_order_and_case():
    assert named_rgb(["nir", "Blue", "green", "RED"]) == [3, 2, 1]
    assert named_rgb(["B2", "B3", "B4", "B8"]) == [2, 1, 0]  # Sentinel-2 names
    assert named_rgb(["red", "nir"]) is None


def test_colour_channel_only_for_names_that_mean_one_colour():
    assert [colour_channel(n) for n in ("red", "G", " blue ", "b2", "nir")] == [0, 1, 2, None, None]


def test_preview_falls_back_to_the_first_bands():
    assert rgb_indices(["a", "b", "c", "d"]) == [0, 1, 2] and rgb_indices(["dsm"]) == [0, 0, 0]
