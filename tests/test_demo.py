"""The demo's class-by-class comparison of the shipped network with the forest."""

from __future__ import annotations

from terralearn.demo import compare_maps


def row(name, iou, support=10):
    return {"name": name, "iou": iou, "support": support}


def test_compare_maps_orders_by_gain_and_skips_absent_classes():
    chosen = {"per_class": [row("water", 0.90), row("developed", 0.75), row("barren", 0.5, 0), row("forest", 0.8)]}
    forest = {"per_class": [row("water", 0.98), row("developed", 0.40), row("barren", 0.6, 0), row("forest", 0.8)]}
    rows = compare_maps(chosen, forest)
    assert [r["name"] for r in rows] == ["developed", "forest", "water"]
    assert abs(rows[0]["gain"] - 0.35) < 1e-9 and rows[1]["gain"] == 0 and rows[2]["gain"] < 0
    assert rows[0]["forest_iou"] == 0.40 and rows[0]["iou"] == 0.75
