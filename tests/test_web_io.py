"""The web app's file layer: workspace paths, listing, kinds, uploads, summaries, quick-looks and tiles."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from terralearn.classes import hex_to_rgba
from terralearn.config import ExportConfig
from terralearn.errors import ConfigError, InputFileError, UploadError, WorkspacePathError
from terralearn.export import export
from terralearn.geo.pyramid import fit_shape, max_zoom, tile_count, tile_out_shape, tile_span, tile_window
from terralearn.io.maps import StripWriter, class_tags
from terralearn.io.package import save_package
from terralearn.web.inspect import describe
from terralearn.web.render import legend, quicklook_png, raster_pyramid, tile_png
from terralearn.web.uploads import sanitize_filename, sniff
from terralearn.web.workspace import WorkspaceFiles
from tests.data.make_data import make_grid, make_raster, make_scene, scene_polygons

MB = 2**20
CLASSES = [
    {"index": 0, "value": 11, "name": "water", "colour": "#1f77b4"},
    {"index": 1, "value": 41, "name": "forest", "colour": "#2ca02c"},
    {"index": 2, "value": 82, "name": "cropland", "colour": "#ffbb78"},
]


def write_map(path: Path, grid) -> np.ndarray:
    """A classified map as `terralearn classify` writes it: uint8 class indices, nodata 255, colours, class table."""
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    data = ((rows // 8 + cols // 8) % 3).astype(np.uint8)
    data[:, :4] = 255
    colormap = {c["index"]: hex_to_rgba(c["colour"]) for c in CLASSES}
    writer = StripWriter(path, grid, colormap=colormap, tags=class_tags(CLASSES))
    writer.write(0, data)
    writer.close()
    return data


def write_package(folder: Path) -> Path:
    card = {
        "task": "pixel_classification",
        "architecture": "unet",
        "backbone": "resnet18",
        "bands": ["b1", "b2", "b3"],
        "band_count": 3,
        "classes": CLASSES,
        "normalisation": {"mean": [0, 0, 0], "std": [1, 1, 1]},
        "chip_size": [64, 64],
        "pixel_size": [10.0, 10.0],
        "metrics": {"accuracy": 0.9, "dice": 0.8, "mean_iou": 0.7, "kappa": 0.85, "per_class": []},
    }
    return save_package(folder, {"w": np.zeros((2, 2), np.float32)}, card)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def shapefile_zip(tmp: Path, labels: Path) -> bytes:
    import geopandas as gpd

    shp = tmp / "shp" / "roads.shp"
    shp.parent.mkdir()
    gpd.read_file(labels).to_file(shp)
    return zip_bytes({f"roads/{p.name}": p.read_bytes() for p in shp.parent.iterdir()} | {"readme.txt": b"hi"})


def decode(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGBA"))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> WorkspaceFiles:
    root = tmp_path_factory.mktemp("ws")
    (root / "data").mkdir()
    raster, labels, grid = make_scene(root / "data")
    write_map(root / "map.tif", grid)
    scene_polygons(grid).to_file(root / "data" / "labels.geojson", driver="GeoJSON")
    export(ExportConfig.build(rasters=[raster], labels=labels, out=root / "chips", class_field="code",
                              tile_size_x=16, tile_size_y=16))  # fmt: skip
    write_package(root / "model")
    (root / "report.html").write_text("<html></html>")
    Image.new("RGB", (4, 4)).save(root / "plot.png")
    (root / "notes.txt").write_text("notes")
    (root / "terralearn.db").write_bytes(b"SQLite format 3\x00")
    (root / "terralearn.db-wal").write_bytes(b"")
    (root / ".hidden").write_text("secret")
    (root / ".image.tmp-abc123.tif").write_bytes(b"half")
    (root / "data" / "sub").mkdir()
    return WorkspaceFiles(root)


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret")
    return folder


@pytest.fixture
def fresh(tmp_path) -> WorkspaceFiles:
    root = tmp_path / "fresh"
    root.mkdir()
    return WorkspaceFiles(root)


# --- paths -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    ["..", "../x", "/etc/passwd", "a/../../x", "data/../..", "C:\\Windows", "C:/x", "\\\\server\\share\\x",
     "//server/share", "data\\..\\..\\x", "a\x00b", "terralearn.db", "TerraLearn.DB-wal", "./terralearn.db",
     ".hidden", "data/.hidden", ".image.tmp-abc123.tif", "missing.tif"],
)  # fmt: skip
def test_resolve_refuses_paths_that_escape_or_are_internal(ws, rel):
    with pytest.raises(WorkspacePathError) as err:
        ws.resolve(rel)
    assert repr(rel) in err.value.message or f"'{rel}'" in err.value.message  # the message quotes the value
    assert err.value.fix


def test_resolve_accepts_workspace_paths(ws):
    assert ws.resolve("") == ws.root == ws.resolve(".")
    assert ws.resolve("data/image.tif") == ws.root / "data" / "image.tif"
    assert ws.resolve("data//./image.tif") == ws.root / "data" / "image.tif"
    assert ws.relative(ws.root / "data" / "image.tif") == "data/image.tif"
    assert ws.relative(ws.root) == ""
    for outside in (Path("/etc/passwd"), ws.root / ".." / "x", Path("../x")):
        with pytest.raises(WorkspacePathError):
            ws.relative(outside)


def test_url_encoded_dots_are_just_a_name(ws):
    with pytest.raises(WorkspacePathError, match="does not exist"):
        ws.resolve("%2e%2e/%2e%2e/etc/passwd")
    path = ws.resolve("%2e%2e", must_exist=False)
    assert path == ws.root / "%2e%2e"


def test_symlinks_out_of_the_workspace_are_refused(fresh, outside):
    (fresh.root / "file_link").symlink_to(outside / "secret.txt")
    (fresh.root / "dir_link").symlink_to(outside, target_is_directory=True)
    (fresh.root / "data").mkdir()
    (fresh.root / "data" / "ok.txt").write_text("ok")
    (fresh.root / "inside_link").symlink_to(fresh.root / "data" / "ok.txt")
    (fresh.root / "terralearn.db").write_text("db")
    (fresh.root / "db_link").symlink_to(fresh.root / "terralearn.db")
    (fresh.root / "loop").symlink_to(fresh.root / "loop")
    for rel in ("file_link", "dir_link", "dir_link/secret.txt", "dir_link/new.txt", "db_link", "loop"):
        with pytest.raises(WorkspacePathError):
            fresh.resolve(rel, must_exist=False)
    assert fresh.resolve("inside_link") == fresh.root / "data" / "ok.txt"
    names = [e["name"] for e in fresh.listdir("")]
    assert names == ["data", "inside_link"]
    with pytest.raises(WorkspacePathError):
        fresh.save_upload(io.BytesIO(b"{}"), "x.geojson", subdir="dir_link", max_bytes=MB)
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]


def test_listing_hides_internals_and_sorts_folders_first(ws):
    entries = ws.listdir("")
    names = [e["name"] for e in entries]
    assert names == ["chips", "data", "model", "map.tif", "model.zip", "notes.txt", "plot.png", "report.html"]
    entry = entries[names.index("map.tif")]
    assert entry["path"] == "map.tif" and entry["kind"] == "map" and entry["size"] > 0 and not entry["is_dir"]
    assert entry["modified"].endswith("+00:00")
    sub = ws.listdir("data")
    assert [e["path"] for e in sub] == ["data/sub", "data/image.tif", "data/labels.geojson", "data/labels.gpkg"]
    with pytest.raises(WorkspacePathError, match="not a folder"):
        ws.listdir("map.tif")


def test_kinds(ws):
    expected = {
        "data": "folder", "data/image.tif": "raster", "map.tif": "map", "data/labels.gpkg": "vector",
        "data/labels.geojson": "vector", "chips": "chipset", "model": "package", "model.zip": "package",
        "report.html": "report", "plot.png": "image", "notes.txt": "other", "chips/manifest.json": "other",
    }  # fmt: skip
    assert {rel: ws.kind_of(ws.resolve(rel)) for rel in expected} == expected


def test_kinds_of_zips_and_json(fresh, scene, tmp_path):
    _raster, labels, _grid = scene
    (fresh.root / "shapes.zip").write_bytes(shapefile_zip(tmp_path, labels))
    (fresh.root / "other.zip").write_bytes(zip_bytes({"a.txt": b"a"}))
    (fresh.root / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    (fresh.root / "card.json").write_text(json.dumps({"task": "x"}))
    (fresh.root / "point.json").write_text(json.dumps({"type": "Point", "coordinates": [0, 0]}))
    kinds = {e["name"]: e["kind"] for e in fresh.listdir()}
    assert kinds == {"shapes.zip": "vector", "other.zip": "other", "broken.zip": "other", "card.json": "other",
                     "point.json": "vector"}  # fmt: skip
    zipped = describe(fresh.root / "shapes.zip")
    assert zipped["kind"] == "vector" and zipped["feature_count"] == 7 and zipped["layers"][0]["name"] == "roads"
    assert decode(quicklook_png(fresh.root / "shapes.zip", max_size=200))[..., 3].max() == 255


def test_find_skips_chip_set_insides_but_the_held_out_polygons_and_sorts_newest_first(ws):
    rasters = ws.find({"raster", "map"})
    assert [e["path"] for e in rasters if e["kind"] == "raster"] == ["data/image.tif"]  # not the chips
    later = time.time() + 100
    os.utime(ws.root / "data" / "image.tif", (later, later))
    assert ws.find({"raster", "map"})[0]["path"] == "data/image.tif"
    assert {e["path"] for e in ws.find({"chipset", "package"})} == {"chips", "model", "model.zip"}
    # of a chip set's insides only its held-out validation polygons are offered (the reference for evaluate)
    assert {e["path"] for e in ws.find({"vector"})} == {"data/labels.gpkg", "data/labels.geojson",
                                                        "chips/validation.gpkg"}  # fmt: skip
    assert len(ws.find({"vector"}, limit=1)) == 1
    with pytest.raises(ConfigError):
        ws.find({"nonsense"})


# --- uploads -----------------------------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_valid_uploads_are_accepted(fresh, scene, tmp_path):
    raster, labels, _grid = scene
    tif = fresh.save_upload(io.BytesIO(raster.read_bytes()), "My Image (1).tif", max_bytes=MB)
    assert tif == fresh.root / "uploads" / "My_Image_1.tif"
    assert tif.read_bytes() == raster.read_bytes()
    gpkg = fresh.save_upload(io.BytesIO(labels.read_bytes()), "labels.GPKG", max_bytes=MB)
    assert gpkg.name == "labels.gpkg" and fresh.kind_of(gpkg) == "vector"
    geojson = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": 1}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]})  # fmt: skip
    gj = fresh.save_upload(io.BytesIO(geojson.encode()), "points.geojson", max_bytes=MB)
    assert describe(gj)["feature_count"] == 1
    shp = fresh.save_upload(io.BytesIO(shapefile_zip(tmp_path, labels)), "roads.zip", max_bytes=MB)
    assert shp == fresh.root / "uploads" / "roads" / "roads" / "roads.shp"
    assert sorted(p.suffix for p in shp.parent.iterdir()) == [".cpg", ".dbf", ".prj", ".shp", ".shx"]
    assert describe(shp)["feature_count"] == 7
    assert leftovers(fresh.root / "uploads") == ["My_Image_1.tif", "labels.gpkg", "points.geojson", "roads"]


def test_name_collisions_get_a_suffix(fresh, scene, tmp_path):
    raster, labels, _grid = scene
    first = fresh.save_upload(io.BytesIO(raster.read_bytes()), "image.tif", max_bytes=MB, subdir="in")
    second = fresh.save_upload(io.BytesIO(raster.read_bytes()), "image.tif", max_bytes=MB, subdir="in")
    third = fresh.save_upload(io.BytesIO(raster.read_bytes()), "../../image.tif", max_bytes=MB, subdir="in")
    assert [first.name, second.name, third.name] == ["image.tif", "image-1.tif", "image-2.tif"]
    data = shapefile_zip(tmp_path, labels)
    a = fresh.save_upload(io.BytesIO(data), "roads.zip", max_bytes=MB, subdir="in")
    b = fresh.save_upload(io.BytesIO(data), "roads.zip", max_bytes=MB, subdir="in")
    assert (a.parts[-3], b.parts[-3]) == ("roads", "roads-1")


def test_oversize_upload_is_refused_without_leftovers(fresh, scene):
    raster, _labels, _grid = scene
    data = raster.read_bytes()

    class Stream:
        reads = 0

        def read(self, n):
            Stream.reads += 1
            return data[:n] if Stream.reads < 1000 else b""

    with pytest.raises(UploadError, match="larger than the limit") as err:
        fresh.save_upload(Stream(), "big.tif", max_bytes=len(data) * 3)
    assert Stream.reads == 4  # stopped as soon as the limit was passed
    assert err.value.fix
    assert leftovers(fresh.root / "uploads") == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("fake.tif", zip_bytes({"a.txt": b"a"}), "looks like a zip archive"),
        ("fake.tif", b"II*\x00" + b"\x00" * 100, "cannot be read as a raster"),
        ("fake.gpkg", b"SQLite format 3\x00" + b"\x00" * 100, "SQLite database"),
        ("fake.geojson", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "PNG image"),
        ("card.json", json.dumps({"task": "x"}).encode(), "not GeoJSON"),
        ("broken.geojson", b'{"type": "FeatureCollection", ', "not valid JSON"),
        ("fake.zip", b"II*\x00" + b"\x00" * 100, "TIFF image"),
        ("empty.tif", b"", "empty"),
        ("notes.zip", zip_bytes({"notes.txt": b"x"}), "no complete shapefile"),
        ("half.zip", zip_bytes({"a.shp": b"x", "a.dbf": b"x"}), "no complete shapefile"),
        ("package.zip", zip_bytes({"model.json": b"{}", "model.safetensors": b"x"}), "model package"),
        ("slip.zip", zip_bytes({"../../evil.shp": b"x"}), "outside its folder"),
        ("abs.zip", zip_bytes({"/etc/evil.shp": b"x"}), "outside its folder"),
        ("win.zip", zip_bytes({"..\\evil.shp": b"x"}), "outside its folder"),
        ("image.png", b"\x89PNG\r\n\x1a\n", "does not take"),
        ("script.sh", b"#!/bin/sh", "does not take"),
        ("noext", b"data", "does not take"),
    ],
)
def test_bad_uploads_are_refused_by_content(fresh, name, content, message):
    with pytest.raises(UploadError, match=message) as err:
        fresh.save_upload(io.BytesIO(content), name, max_bytes=MB)
    assert err.value.fix
    assert leftovers(fresh.root / "uploads") == []


def test_unknown_extension_message_lists_the_accepted_ones(fresh):
    with pytest.raises(UploadError) as err:
        fresh.save_upload(io.BytesIO(b"x"), "a.exe", max_bytes=MB)
    assert ".tif" in err.value.fix and ".zip" in err.value.fix and "'.exe'" in err.value.message


def test_zip_with_a_symlink_member_is_refused(fresh):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("a.shp")
        info.external_attr = (0o120777 << 16) | 0
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UploadError, match="symbolic link"):
        fresh.save_upload(io.BytesIO(buf.getvalue()), "links.zip", max_bytes=MB)
    assert leftovers(fresh.root / "uploads") == []


def test_zip_bomb_is_refused(fresh):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dbf", b"\x00" * (80 * MB))
    assert len(bomb.getvalue()) < MB
    with pytest.raises(UploadError, match="unpacks to more than"):
        fresh.save_upload(io.BytesIO(bomb.getvalue()), "bomb.zip", max_bytes=MB)
    assert leftovers(fresh.root / "uploads") == []


def test_sanitize_filename_and_sniff():
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("C:\\Users\\me\\..\\scene 1.TIF") == "scene_1.TIF"
    assert sanitize_filename("...tif") == "upload.tif"
    assert sanitize_filename(".hidden.gpkg") == "hidden.gpkg"
    assert sanitize_filename("") == "upload"
    assert sanitize_filename("é€.tif") == "upload.tif"
    assert sniff(b"II+\x00") == "a BigTIFF image" and sniff(b"MM\x00*") == "a TIFF image"
    assert sniff(b"SQLite format 3\x00" + b"\x00" * 52 + b"GPKG") == "a GeoPackage"


# --- summaries ---------------------------------------------------------------------------------------------------


def strict_json(obj) -> dict:
    return json.loads(json.dumps(obj, allow_nan=False))


def test_describe_raster(ws):
    d = strict_json(describe(ws.resolve("data/image.tif")))
    assert d["kind"] == "raster" and (d["width"], d["height"], d["bands"]) == (64, 48, 3)
    assert d["band_names"] == ["image_b1", "image_b2", "image_b3"] and d["dtype"] == "int16"
    assert d["crs"]["epsg"] == 32631 and d["crs"]["name"] == "WGS 84 / UTM zone 31N"
    assert d["pixel_size"] == [10.0, 10.0] and d["pixel_units"] == "metre"
    assert d["extent"] == [500000.0, 4649520.0, 500640.0, 4650000.0]
    west, south, east, north = d["lonlat_bounds"]
    assert 2.99 < west < east < 3.01 and 41.9 < south < north < 42.1
    assert d["nodata"] == -9999 and d["file_size"] > 0
    assert "classes" not in d


def test_describe_map_has_its_class_table(ws):
    d = strict_json(describe(ws.resolve("map.tif")))
    assert d["kind"] == "map" and d["nodata"] == 255
    assert d["classes"] == CLASSES


def test_describe_vector_lists_fields_and_distinct_values(ws):
    for rel in ("data/labels.gpkg", "data/labels.geojson"):
        d = strict_json(describe(ws.resolve(rel)))
        assert d["kind"] == "vector" and d["feature_count"] == 7 and d["geometry_type"] == "Polygon"
        assert d["crs"]["epsg"] == 32631
        fields = {f["name"]: f for f in d["fields"]}
        assert fields["code"]["distinct"] == [3, 7, 22531] and fields["code"]["type"].startswith("int")
        assert fields["name"]["distinct"] == ["forest", "water", "wheat"]
        assert d["class_field_guess"] == "code"
        assert d["bounds"][0] == pytest.approx(500020.0) and len(d["lonlat_bounds"]) == 4


def test_describe_chipset_and_package(ws):
    c = strict_json(describe(ws.resolve("chips")))
    assert c["kind"] == "chipset" and c["chips"] == c["train"] + c["val"] > 0
    assert c["tile_size"] == [16, 16] and c["band_count"] == 3 and c["split"]["method"] == "polygons"
    assert [k["value"] for k in c["classes"]] == [3, 7, 22531] and c["sources"]["labels"] == "labels.gpkg"
    for rel in ("model", "model.zip"):
        p = strict_json(describe(ws.resolve(rel)))
        assert p["kind"] == "package" and p["architecture"] == "unet" and p["backbone"] == "resnet18"
        assert p["chip_size"] == [64, 64] and p["bands"] == ["b1", "b2", "b3"] and len(p["classes"]) == 3
        assert p["metrics"] == {"accuracy": 0.9, "dice": 0.8, "mean_iou": 0.7, "kappa": 0.85}


def test_describe_unreadable_files(fresh):
    (fresh.root / "bad.tif").write_bytes(b"not a tiff")
    (fresh.root / "bad.gpkg").write_bytes(b"not a gpkg")
    for name in ("bad.tif", "bad.gpkg", "missing.tif"):
        with pytest.raises(InputFileError) as err:
            describe(fresh.root / name)
        assert name in err.value.message and err.value.fix


# --- pictures ----------------------------------------------------------------------------------------------------


def test_quicklook_of_a_raster_is_transparent_on_nodata(ws):
    img = decode(quicklook_png(ws.resolve("data/image.tif")))
    assert img.shape == (48, 64, 4)  # small rasters are not enlarged
    assert (img[:, :4, 3] == 0).all() and (img[:, 4:, 3] == 255).all()
    assert img[:, 4:, :3].min() == 0 and img[:, 4:, :3].max() == 255  # stretched to 2-98 %
    small = decode(quicklook_png(ws.resolve("data/image.tif"), max_size=32))
    assert small.shape == (24, 32, 4)
    grey = decode(quicklook_png(ws.resolve("data/image.tif"), bands=[2]))
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    for bad in ([4], [1, 2], [0, 1, 2], ["1"]):
        with pytest.raises(ConfigError, match="display bands"):
            quicklook_png(ws.resolve("data/image.tif"), bands=bad)


def test_default_bands_are_the_ones_named_red_green_blue(tmp_path):
    path = make_raster(tmp_path / "s.tif", bands=4, names=["blue", "green", "red", "nir"])
    assert raster_pyramid(path)["default_bands"] == [3, 2, 1]


def test_map_pictures_use_the_colour_table(ws, tmp_path):
    data = write_map(tmp_path / "m.tif", make_grid())
    img = decode(quicklook_png(ws.resolve("map.tif")))
    tile = decode(tile_png(ws.resolve("map.tif"), 0, 0, 0))
    assert tile.shape == (256, 256, 4) and (tile[:48, :64] == img).all() and (tile[48:, :, 3] == 0).all()
    for c in CLASSES:
        rgb = [int(c["colour"][i : i + 2], 16) for i in (1, 3, 5)]
        assert (img[data == c["index"]] == [*rgb, 255]).all()
    assert (img[data == 255, 3] == 0).all()
    assert legend(ws.resolve("map.tif")) == [
        {"index": c["index"], "name": c["name"], "value": c["value"], "colour": c["colour"]} for c in CLASSES
    ]
    assert legend(ws.resolve("data/image.tif")) == []


def test_tiles_of_a_larger_raster(tmp_path):
    path = make_raster(tmp_path / "big.tif", make_grid(width=600, height=300), bands=3, nodata_cols=0)
    pyramid = raster_pyramid(path)
    assert (pyramid["width"], pyramid["height"], pyramid["max_zoom"], pyramid["tile"]) == (600, 300, 2, 256)
    assert pyramid["epsg"] == 32631 and pyramid["bounds"][2] - pyramid["bounds"][0] == 6000
    corner = decode(tile_png(path, 2, 2, 1))  # full resolution: cols 512-599, rows 256-299
    assert (corner[:44, :88, 3] == 255).all() and (corner[44:, :, 3] == 0).all() and (corner[:, 88:, 3] == 0).all()
    whole = decode(tile_png(path, 0, 0, 0))  # 1024 raster pixels per tile: 150 x 75 output pixels
    assert (whole[:75, :150, 3] == 255).all() and (whole[75:, :, 3] == 0).all() and (whole[:, 150:, 3] == 0).all()
    for z, x, y in ((2, 3, 0), (0, 1, 0), (0, -1, 0), (5, 0, 0)):
        assert (decode(tile_png(path, z, x, y))[..., 3] == 0).all()
    # one stretch for all tiles: the full-resolution tile equals the matching part of the quick-look at full size
    full = decode(quicklook_png(path, max_size=600))
    assert (decode(tile_png(path, 2, 1, 0)) == full[:256, 256:512]).all()


def test_vector_quicklook(ws):
    img = decode(quicklook_png(ws.resolve("data/labels.gpkg"), max_size=300))
    assert max(img.shape[:2]) <= 300 and img[..., 3].max() == 255 and img[..., 3].min() == 0
    colours = {tuple(p) for p in img.reshape(-1, 4)[img.reshape(-1, 4)[:, 3] == 255][:, :3]}
    assert len(colours) > 3  # polygons coloured by class, with a legend
    with pytest.raises(InputFileError, match="no quick-look"):
        quicklook_png(ws.resolve("chips"))


# --- pyramid maths -----------------------------------------------------------------------------------------------


def test_max_zoom_examples():
    assert [max_zoom(w, 1) for w in (1, 256, 257, 512, 513, 70_000)] == [0, 0, 1, 1, 2, 9]
    assert max_zoom(10, 1000) == 2 and tile_span(0, 2) == 1024 and tile_span(2, 2) == 256
    assert fit_shape(4000, 1000, 768) == (192, 768) and fit_shape(10, 5, 768) == (5, 10)
    assert tile_window(0, 0, 0, 2, width=600, height=300).todict() == {
        "col_off": 0, "row_off": 0, "width": 600, "height": 300}  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([16, 64, 256]))
def test_tiles_partition_the_raster_at_every_zoom(width, height, tile):
    zmax = max_zoom(width, height, tile)
    assert tile << zmax >= max(width, height) and (zmax == 0 or tile << (zmax - 1) < max(width, height))
    assert tile_window(0, 0, 0, zmax, width=width, height=height, tile=tile).todict() == {
        "col_off": 0, "row_off": 0, "width": width, "height": height}  # fmt: skip
    for z in range(zmax + 1):
        nx, ny = tile_count(z, zmax, width=width, height=height, tile=tile)
        if nx * ny > 400:
            continue
        area = 0
        for x in range(nx + 1):
            for y in range(ny + 1):
                w = tile_window(z, x, y, zmax, width=width, height=height, tile=tile)
                if x == nx or y == ny:
                    assert w is None
                    continue
                span = tile_span(z, zmax, tile)
                assert (w.col_off, w.row_off) == (x * span, y * span)
                assert 0 < w.width <= span and 0 < w.height <= span
                assert w.col_off + w.width <= width and w.row_off + w.height <= height
                rows, cols = tile_out_shape(w, z, zmax, tile)
                assert 1 <= rows <= tile and 1 <= cols <= tile
                assert (rows, cols) == (tile, tile) or w.width < span or w.height < span
                area += w.width * w.height
        assert area == width * height  # disjoint windows inside the raster, summing to it: a partition
