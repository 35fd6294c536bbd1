"""No two classes of a chip set, a model or a map share a colour."""

from __future__ import annotations

import itertools

import geopandas as gpd
import pytest

from terralearn.classes import (
    DISTINCT_COLOUR,
    NAMED_COLOURS,
    SAME_COLOUR,
    assign_colours,
    build_classes,
    colour_distance,
    distinct_colours,
)
from terralearn.config import ExportConfig
from terralearn.export import export
from terralearn.io.vector import write_vector
from tests.data.make_data import make_grid, make_raster, pixel_box


def min_distance(colours: list[str]) -> float:
    return min(colour_distance(a, b) for a, b in itertools.combinations(colours, 2))


def test_the_two_wetlands_get_different_colours():
    colours = assign_colours(["Sand", "Emergent Wetland", "Forested Wetland"])
    assert colours[0] == NAMED_COLOURS["sand"] and colours[1] == NAMED_COLOURS["wetland"]
    assert len(set(colours)) == 3
    assert min_distance(colours) >= DISTINCT_COLOUR


def test_well_known_colours_are_kept_where_they_do_not_clash():
    colours = assign_colours(["background", "water", "Forest", "urban", "cropland"])
    assert colours == [NAMED_COLOURS[k] for k in ("background", "water", "forest", "urban", "cropland")]


def test_same_or_indistinguishable_well_known_colours_are_reassigned():
    # river and lake share water's blue; snow and cloud are near-identical whites
    colours = assign_colours(["water", "river", "lake", "cloud", "snow"])
    assert colours[0] == NAMED_COLOURS["water"] and colours[3] == NAMED_COLOURS["cloud"]
    assert len(set(colours)) == 5 and min_distance(colours) >= SAME_COLOUR


def test_palette_colours_keep_clear_of_well_known_ones():
    # the first palette colour (#1f77b4) is indistinguishable from water's blue: it is skipped
    colours = assign_colours(["class a", "water"])
    assert colours[1] == NAMED_COLOURS["water"]
    assert colour_distance(colours[0], colours[1]) >= DISTINCT_COLOUR


def test_forty_classes_are_all_clearly_different():
    colours = assign_colours([f"class {i}" for i in range(40)])
    assert len(set(colours)) == 40
    assert min_distance(colours) >= 15  # past the palette, generated colours stay well apart
    assert assign_colours([f"class {i}" for i in range(40)]) == colours  # deterministic


@pytest.mark.parametrize("n", [40, 255])
def test_many_classes_with_clashing_names_never_share_a_colour(n):
    names = ["wetland", "Emergent Wetland", "Forested Wetland", "water", "river", *[f"c{i}" for i in range(n - 5)]]
    classes = build_classes(list(range(n)), dict(enumerate(names)))
    colours = [c.colour for c in classes]
    assert len(set(colours)) == n
    assert all(len(c) == 7 and c.startswith("#") for c in colours)


def test_build_classes_with_background_keeps_black_and_distinct():
    classes = build_classes(["sand", "wetland a", "wetland b"], background=True)
    assert classes[0].name == "background" and classes[0].colour == "#000000"
    assert len({c.colour for c in classes}) == 4


def test_distinct_colours_repairs_an_old_class_table():
    old = [
        {"index": 0, "name": "Emergent Wetland", "colour": "#80cdc1"},
        {"index": 1, "name": "Forested Wetland", "colour": "#80cdc1"},
        {"index": 2, "name": "water", "colour": "#1F78B4"},
        {"index": 3, "name": "odd", "colour": "red; background:url(x)"},
    ]
    fixed = distinct_colours(old)
    assert fixed[0]["colour"] == "#80cdc1" and fixed[2]["colour"] == "#1f78b4"  # first of each colour keeps it
    assert len({c["colour"] for c in fixed}) == 4 and fixed[3]["colour"].startswith("#")
    assert [c["name"] for c in fixed] == [c["name"] for c in old]


def test_chip_set_of_the_wetland_case_has_distinct_colours(tmp_path):
    grid = make_grid()
    raster = make_raster(tmp_path / "r.tif", grid, nodata_cols=0)
    boxes = [(2, 2, 10, 10), (20, 2, 28, 10), (2, 20, 10, 28), (20, 20, 28, 28), (40, 2, 48, 10), (40, 20, 48, 28)]
    names = ["Sand", "Sand", "Emergent Wetland", "Emergent Wetland", "Forested Wetland", "Forested Wetland"]
    labels = tmp_path / "l.gpkg"
    write_vector(gpd.GeoDataFrame({"code": [1, 1, 2, 2, 3, 3], "name": names},
                                  geometry=[pixel_box(grid, *b) for b in boxes], crs=grid.crs), labels)  # fmt: skip
    result = export(ExportConfig.build(rasters=[raster], labels=labels, out=tmp_path / "out", class_field="code",
                                       class_name_field="name", tile_size_x=16, tile_size_y=16))  # fmt: skip
    colours = [c["colour"] for c in result.manifest["classes"]]
    assert len(set(colours)) == 3 and min_distance(colours) >= DISTINCT_COLOUR
