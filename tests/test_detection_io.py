"""Detections GeoPackage writer/reader and the reference-object reader (io/detections.py).

Tiny layers in EPSG:32633 built in tmp_path; each test names the case it covers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from rasterio.crs import CRS

from terralearn.errors import ConfigError, InputFileError, LabelError
from terralearn.io.detections import (
    LAYER,
    DetectionWriter,
    read_detections,
    read_reference_objects,
    write_detections,
)

UTM = "EPSG:32633"
X0, Y0 = 500_000.0, 5_000_000.0
CLASSES = [
    {"index": 0, "value": 3, "name": "car", "colour": "#ff0000"},
    {"index": 1, "value": 7, "name": "truck", "colour": "#0000ff"},
]


def _boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, (n, 2)) + np.array([X0, Y0])
    wh = rng.uniform(2, 8, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_write_read_round_trip_with_metadata(tmp_path):
    boxes = _boxes(5)
    values = np.array([3, 7, 3, 3, 7])
    scores = np.linspace(0.9, 0.1, 5)
    path = write_detections(tmp_path / "det.gpkg", boxes, values, None, scores, UTM, CLASSES,
                            metadata={"tile_size": 256, "overlap": 32})  # fmt: skip
    info = pyogrio.read_info(path)
    assert info["layer_name"] == LAYER and info["geometry_type"] == "Polygon"
    assert list(info["fields"]) == ["class_value", "class_name", "score"]
    layer = read_detections(path)
    np.testing.assert_allclose(layer.boxes, boxes)
    assert layer.class_values.tolist() == [3, 7, 3, 3, 7]
    assert layer.class_names.tolist() == ["car", "truck", "car", "car", "truck"]  # names from the class table
    np.testing.assert_allclose(layer.scores, scores)
    assert layer.crs == CRS.from_user_input(UTM)
    assert [c["name"] for c in layer.classes] == ["car", "truck"]
    assert layer.metadata["tile_size"] == 256 and layer.metadata["overlap"] == 32


def test_qml_is_categorized_by_class_name_outline_only(tmp_path):
    path = write_detections(tmp_path / "det.gpkg", _boxes(2), [3, 7], None, [0.5, 0.6], UTM, CLASSES)
    qml = path.with_suffix(".qml")
    root = ET.fromstring(qml.read_text().split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_name"
    assert [c.get("value") for c in renderer.iter("category")] == ["car", "truck"]
    opts = [
        {o.get("name"): o.get("value") for o in sym.iter("Option") if o.get("name")} for sym in renderer.iter("symbol")
    ]
    assert [o["outline_color"] for o in opts] == ["255,0,0,255", "0,0,255,255"]
    assert all(o["style"] == "no" for o in opts)  # outline only: no fill


def test_writer_streams_batches_and_appears_only_on_close(tmp_path):
    final = tmp_path / "out" / "det.gpkg"
    writer = DetectionWriter(final, UTM, CLASSES, flush_rows=10)
    all_boxes = []
    for seed in range(4):
        b = _boxes(7, seed)
        writer.add(b, np.full(7, 7), np.full(7, 0.5))
        all_boxes.append(b)
    assert writer.count >= 20  # batches went to disk before close (flush every 10 rows)
    assert not final.exists()  # ... but only into the temporary file
    writer.close()
    layer = read_detections(final)
    np.testing.assert_allclose(layer.boxes, np.concatenate(all_boxes))
    assert set(layer.class_names.tolist()) == {"truck"}
    assert sorted(p.name for p in final.parent.iterdir()) == ["det.gpkg", "det.qml"]  # no temporary left


def test_exception_mid_write_leaves_nothing_under_the_final_name(tmp_path):
    final = tmp_path / "det.gpkg"
    with pytest.raises(RuntimeError, match="boom"), DetectionWriter(final, UTM, CLASSES, flush_rows=5) as w:
        w.add(_boxes(12), np.full(12, 3), np.full(12, 0.9))  # flushed to the temporary file
        raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []  # temporary GeoPackage removed too


def test_exception_keeps_an_older_file_intact(tmp_path):
    final = write_detections(tmp_path / "det.gpkg", _boxes(3), [3, 3, 3], None, [0.1, 0.2, 0.3], UTM, CLASSES)
    with pytest.raises(ValueError, match="not in the class table"), DetectionWriter(final, UTM, CLASSES) as w:
        w.add(_boxes(2), [3, 99], [0.5, 0.5])  # class 99 is unknown
    assert len(read_detections(final)) == 3


def test_empty_writer_gives_an_empty_layer(tmp_path):
    with DetectionWriter(tmp_path / "none.gpkg", UTM, CLASSES) as w:
        w.add(np.zeros((0, 4)), [], [])
    layer = read_detections(tmp_path / "none.gpkg")
    assert len(layer) == 0 and layer.boxes.shape == (0, 4) and [c["name"] for c in layer.classes] == ["car", "truck"]


def test_read_detections_errors(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_detections(tmp_path / "missing.gpkg")
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"not a geopackage at all")
    with pytest.raises(InputFileError, match="could not be read"):
        read_detections(junk)
    other = tmp_path / "other.gpkg"
    gpd.GeoDataFrame({"kind": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=UTM).to_file(other, engine="pyogrio")
    with pytest.raises(LabelError, match=r"no field 'class_value', 'score'.*fields are: kind"):
        read_detections(other)


def test_read_detections_leaves_out_features_without_geometry_or_score(tmp_path):
    path = tmp_path / "foreign.gpkg"  # written by another tool: no class table, a null geometry and a null score
    gpd.GeoDataFrame({"class_value": [1, 2, 3, 4], "score": [0.1, 0.2, 0.3, None]},
                     geometry=[shapely.box(0, 0, 1, 1), None, shapely.box(2, 2, 3, 3), shapely.box(5, 5, 6, 6)],
                     crs=UTM).to_file(path, engine="pyogrio")  # fmt: skip
    layer = read_detections(path)
    np.testing.assert_allclose(layer.boxes, [[0, 0, 1, 1], [2, 2, 3, 3]])
    assert layer.class_values.tolist() == [1, 3] and layer.scores.tolist() == [0.1, 0.3] and layer.dropped == 2
    assert [c["value"] for c in layer.classes] == [1, 3]  # the class table is made from the values found


# --------------------------------------------------------------------------------------------- references


def _write(path, geoms, crs=UTM, **cols):
    gpd.GeoDataFrame(cols, geometry=list(geoms), crs=crs).to_file(path, engine="pyogrio")
    return path


def test_reference_polygons_become_envelopes(tmp_path):
    # an L-shaped polygon (envelope larger than the polygon) and a plain box
    l_shape = shapely.Polygon(
        [(X0, Y0), (X0 + 10, Y0), (X0 + 10, Y0 + 2), (X0 + 2, Y0 + 2), (X0 + 2, Y0 + 8), (X0, Y0 + 8)]
    )
    path = _write(tmp_path / "ref.gpkg", [l_shape, shapely.box(X0 + 20, Y0, X0 + 25, Y0 + 5)], kind=["car", "truck"])
    refs = read_reference_objects(path, "kind", UTM)
    np.testing.assert_allclose(refs.boxes, [[X0, Y0, X0 + 10, Y0 + 8], [X0 + 20, Y0, X0 + 25, Y0 + 5]])
    assert refs.values.tolist() == ["car", "truck"] and refs.dropped == 0


def test_reference_is_reprojected_to_the_target_crs(tmp_path):
    lon_lat = shapely.box(15.0, 45.0, 15.001, 45.001)  # near the central meridian of UTM 33
    path = _write(tmp_path / "ref.gpkg", [lon_lat], crs="EPSG:4326", kind=[1])
    refs = read_reference_objects(path, "kind", UTM)
    x0, y0, x1, y1 = refs.boxes[0]
    assert 499_000 < x0 < 501_000 and 4_980_000 < y0 < 4_990_000  # metres, not degrees
    assert 70 < x1 - x0 < 85 and 105 < y1 - y0 < 115  # 0.001° is ~79 m east-west, ~111 m north-south at 45°N


def test_points_are_buffered_by_the_radius(tmp_path):
    path = _write(tmp_path / "pts.gpkg", [shapely.Point(X0, Y0), shapely.Point(X0 + 50, Y0 + 50)], kind=[3, 7])
    refs = read_reference_objects(path, "kind", UTM, point_radius=2.5)
    np.testing.assert_allclose(refs.boxes, [[X0 - 2.5, Y0 - 2.5, X0 + 2.5, Y0 + 2.5],
                                            [X0 + 47.5, Y0 + 47.5, X0 + 52.5, Y0 + 52.5]])  # fmt: skip
    assert refs.points == 2
    with pytest.raises(ConfigError, match="2 point\\(s\\) but point_radius = None"):
        read_reference_objects(path, "kind", UTM)


def test_missing_class_field_quotes_the_fields_present(tmp_path):
    path = _write(tmp_path / "ref.gpkg", [shapely.box(0, 0, 1, 1)], kind=["car"], source=["survey"])
    with pytest.raises(LabelError, match="no field 'label'; its fields are: kind, source"):
        read_reference_objects(path, "label", UTM)


def test_reference_empty_unreadable_lines_and_dropped(tmp_path):
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"kind": []}, geometry=[], crs=UTM).to_file(empty, engine="pyogrio")
    with pytest.raises(LabelError, match="has no features"):
        read_reference_objects(empty, "kind", UTM)
    junk = tmp_path / "junk.geojson"
    junk.write_text("{ this is not json")
    with pytest.raises(InputFileError, match="could not be read"):
        read_reference_objects(junk, "kind", UTM)
    lines = _write(tmp_path / "lines.gpkg", [shapely.LineString([(0, 0), (5, 5)])], kind=["road"])
    with pytest.raises(LabelError, match="1 line feature"):
        read_reference_objects(lines, "kind", UTM)
    mixed = _write(tmp_path / "mixed.gpkg", [shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)], kind=["car", None])
    refs = read_reference_objects(mixed, "kind", UTM)
    assert refs.dropped == 1 and len(refs.boxes) == 1  # the object without a class is left out, and counted
