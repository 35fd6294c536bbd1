"""Object annotation files: COCO, VOC, YOLO and DOTA readers; VOC, KITTI and COCO chip writers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from terralearn.errors import ConfigError, InputFileError, LabelError
from terralearn.io.annotations import (
    FORMATS,
    ImageObjects,
    detect_format,
    read_annotations,
    read_coco,
    read_dota,
    read_voc,
    read_yolo,
    write_coco,
    write_kitti,
    write_pascal_voc,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DOTA = SHARED / "dota_samples"

# a DOTA file as the devkit writes them (CRLF line ends), covering: an oriented quadrilateral, a
# difficult object, a corner one pixel past the right edge (clipped), and a class with a dash
DOTA_TEXT = (
    "imagesource:GoogleEarth\r\ngsd:0.25\r\n"
    "10 20 30 10 40 30 20 40 ship 0\r\n"
    "50 50 60 50 60 70 50 70 small-vehicle 1\r\n"
    "90 5 101 5 101 15 90 15 ship 0\r\n"
)


def write_png(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((3, height, width), np.uint8)
    with rasterio.open(path, "w", driver="PNG", width=width, height=height, count=3, dtype="uint8") as dst:
        dst.write(data)
    return path


def test_dota_polygons_envelopes_flags_and_gsd(tmp_path):
    labels = tmp_path / "labelTxt" / "P1.txt"
    labels.parent.mkdir()
    labels.write_bytes(DOTA_TEXT.encode())
    write_png(tmp_path / "images" / "P1.png", 100, 80)  # the size comes from the image in ../images
    obj = read_dota(labels)
    assert (obj.image, obj.width, obj.height, obj.gsd) == ("P1.png", 100, 80, 0.25)
    assert obj.labels == ["ship", "small-vehicle", "ship"]
    assert obj.boxes.tolist() == [[10, 10, 40, 40], [50, 50, 60, 70], [90, 5, 100, 15]]  # the last one clipped
    assert obj.difficult.tolist() == [False, True, False]
    assert obj.polygons[0].tolist() == [[10, 20], [30, 10], [40, 30], [20, 40]]
    assert obj.polygons[2][1].tolist() == [101, 5]  # the outline is kept as drawn
    [same] = read_annotations(labels, image_size=(100, 80))
    assert same.image == "P1" and same.boxes.tolist() == obj.boxes.tolist()


def test_dota_refuses_malformed_lines_far_outside_boxes_and_missing_images(tmp_path):
    bad = tmp_path / "a.txt"
    bad.write_text("gsd:0.3\n10 20 30 10 40 30 20 ship 0\n")
    with pytest.raises(LabelError, match=r"Line 2 of .*a\.txt' is malformed: '10 20 30 10 40 30 20 ship 0'"):
        read_dota(bad, image_size=(64, 64))
    bad.write_text("10 20 30 10 40 30 20 40 ship maybe\n")
    with pytest.raises(LabelError, match="Line 1"):
        read_dota(bad, image_size=(64, 64))
    far = tmp_path / "b.txt"
    far.write_text("10 10 90 10 90 20 10 20 ship 0\n")
    with pytest.raises(LabelError, match=r"\(10, 10, 90, 20\) \('ship', line 1\).*64 x 64 pixels") as info:
        read_dota(far, image_size=(64, 64))
    assert "edge_tolerance" in info.value.fix
    assert read_dota(far, image_size=(64, 64), edge_tolerance=30).boxes.tolist() == [[10, 10, 64, 20]]
    with pytest.raises(InputFileError, match="No image found") as info:
        read_dota(far)
    assert "image_size=(width, height)" in info.value.fix
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(InputFileError, match=r"The image '.*b\.png' cannot be read"):
        read_dota(far)


def test_empty_label_files_are_refused_unless_allowed(tmp_path):
    empty = tmp_path / "bg.txt"
    empty.write_text("\n")
    assert detect_format(empty) == "yolo"
    with pytest.raises(LabelError, match="is empty") as info:
        read_annotations(empty, image_size=(32, 32))
    assert "allow_empty=True" in info.value.fix
    [obj] = read_annotations(empty, image_size=(32, 32), allow_empty=True)
    assert len(obj) == 0 and obj.boxes.shape == (0, 4)
    header_only = tmp_path / "h.txt"
    header_only.write_text("imagesource:GoogleEarth\ngsd:0.5\n")
    with pytest.raises(LabelError, match="holds no objects"):
        read_annotations(header_only, image_size=(32, 32))
    assert read_dota(header_only, image_size=(32, 32), allow_empty=True).gsd == 0.5


def test_yolo_boxes_in_pixels_with_class_names(tmp_path):
    path = tmp_path / "labels" / "img.txt"
    path.parent.mkdir()
    path.write_text("0 0.5 0.5 0.25 0.5\n2 0.1 0.2 0.2 0.2\n")
    write_png(tmp_path / "images" / "img.png", 200, 100)
    obj = read_yolo(path, class_names=["car", "truck", "boat"])
    assert (obj.width, obj.height) == (200, 100)
    np.testing.assert_allclose(obj.boxes, [[75, 25, 125, 75], [0, 10, 40, 30]])
    assert obj.labels == ["car", "boat"]
    assert read_yolo(path, image_size=(200, 100)).labels == ["0", "2"]  # no names: the index as text
    with pytest.raises(LabelError, match=r"Line 2 .* class 2, but only 2 class names"):
        read_yolo(path, class_names=["car", "truck"], image_size=(200, 100))
    path.write_text("0 0.5 0.5 0.25 0.5\n1 0.5 0.5 wide 0.5\n")
    with pytest.raises(LabelError, match=r"Line 2 of .* is malformed: '1 0.5 0.5 wide 0.5'"):
        read_yolo(path, image_size=(200, 100))
    path.write_text("0 0.5 0.5 0 0.5\n")
    with pytest.raises(LabelError, match=r"\(100, 25, 100, 75\).*zero or negative size"):
        read_yolo(path, image_size=(200, 100))


def test_voc_written_then_read_back(tmp_path):
    path = tmp_path / "labels" / "000001.xml"
    boxes = [[0, 0, 10.5, 20], [100.25, 30, 128, 63.125]]
    write_pascal_voc(path, "000001.tif", 128, 64, 4, boxes, ["ship", "harbor"], truncated=[False, True],
                     difficult=[True, False])  # fmt: skip
    text = path.read_text()
    assert "<xmax>10.5</xmax>" in text and "<depth>4</depth>" in text and "<pose>Unspecified</pose>" in text
    obj = read_voc(path)
    assert (obj.image, obj.width, obj.height) == ("000001.tif", 128, 64)
    assert obj.boxes.tolist() == boxes and obj.labels == ["ship", "harbor"]
    assert obj.truncated.tolist() == [False, True] and obj.difficult.tolist() == [True, False]
    assert detect_format(path) == "voc"
    assert [p.name for p in path.parent.iterdir()] == ["000001.xml"]  # no temporary file left behind


def test_voc_refuses_entities_bad_xml_and_missing_fields(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>\n'
        "<annotation><filename>&lol2;</filename></annotation>\n"
    )
    with pytest.raises(InputFileError, match="DOCTYPE or ENTITY"):
        read_voc(bomb)
    broken = tmp_path / "broken.xml"
    broken.write_text("<annotation><size><width>3</width></annotation>")
    with pytest.raises(InputFileError, match="not well-formed XML"):
        read_voc(broken)
    other = tmp_path / "other.xml"
    other.write_text("<svg></svg>")
    with pytest.raises(InputFileError, match="root is <svg>"):
        read_voc(other)
    nobox = tmp_path / "nobox.xml"
    nobox.write_text(
        '<?xml version="1.0" encoding="utf-8"?><annotation><size><width>32</width><height>32</height></size>'
        "<object><name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>"
    )
    with pytest.raises(LabelError, match=r"Object 1 in .* no number in <xmax> \(found 'x'\)"):
        read_voc(nobox)
    write_pascal_voc(tmp_path / "none.xml", "c.png", 32, 32, 3, [], [])
    with pytest.raises(LabelError, match="holds no <object>"):
        read_voc(tmp_path / "none.xml")
    assert len(read_voc(tmp_path / "none.xml", allow_empty=True)) == 0


def test_kitti_lines_like_esri_kitti_rectangles(tmp_path):
    path = tmp_path / "000007.txt"
    write_kitti(path, [[1, 2, 30.5, 40.25], [5, 6, 7, 8]], ["ship", "car"], truncated=[True, False])
    lines = path.read_text().splitlines()
    assert lines[0] == "ship 1.00 0 0.00 1.00 2.00 30.50 40.25 0.00 0.00 0.00 0.00 0.00 0.00 0.00"
    assert all(len(line.split()) == 15 for line in lines) and lines[1].startswith("car 0.00 0 ")
    write_kitti(tmp_path / "empty.txt", [], [])
    assert (tmp_path / "empty.txt").read_text() == ""
    with pytest.raises(LabelError, match="'small car' cannot be written to KITTI"):
        write_kitti(path, [[1, 2, 3, 4]], ["small car"])
    assert path.read_text().splitlines() == lines  # a refused write leaves the old file as it was


def test_coco_chip_set_round_trip_and_evaluates_as_coco(tmp_path):
    chips = [
        ImageObjects("0001.tif", 64, 64, [[0, 0, 10, 10], [20, 22, 40, 60]], ["ship", "harbor"]),
        ImageObjects("0002.tif", 64, 64, np.zeros((0, 4)), []),
        ImageObjects("0003.tif", 64, 64, [[5, 5, 9, 12.5]], ["ship"],
                     polygons=[np.array([[5, 5], [9, 5], [9, 12.5], [5, 12.5]])]),
    ]  # fmt: skip
    classes = {7: "ship", 22531: "harbor"}  # class values are arbitrary integers
    path = tmp_path / "annotations.json"
    write_coco(path, chips, classes)
    data = json.loads(path.read_text())
    assert [c["id"] for c in data["categories"]] == [7, 22531]
    assert data["annotations"][1] == {"id": 2, "image_id": 1, "category_id": 22531, "bbox": [20, 22, 20, 38],
                                      "area": 760.0, "iscrowd": 0, "truncated": 0}  # fmt: skip
    back = read_coco(path)
    assert [o.image for o in back] == ["0001.tif", "0002.tif", "0003.tif"]
    for a, b in zip(chips, back, strict=True):
        assert b.boxes.tolist() == a.boxes.tolist() and b.labels == a.labels
    assert back[2].polygons[0].tolist() == chips[2].polygons[0].tolist()
    assert detect_format(path) == "coco" and len(read_annotations(path)) == 3

    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(str(path))
    dets = [{**a, "score": 0.9} for a in data["annotations"]]
    ev = COCOeval_faster(gt, gt.loadRes(dets), iouType="bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[1] == pytest.approx(1.0)  # AP@0.5 of the ground truth against itself

    with pytest.raises(LabelError, match=r"class 'boat'.*does not list"):
        write_coco(tmp_path / "x.json", [ImageObjects("a", 8, 8, [[0, 0, 1, 1]], ["boat"])], classes)


def test_coco_reader_refuses_what_it_cannot_use(tmp_path):
    path = tmp_path / "c.json"
    base = {"images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
            "categories": [{"id": 3, "name": "car"}]}  # fmt: skip
    cases = [
        ({**base, "annotations": [{"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3]}]}, "9 .* no valid bbox"),
        ({**base, "annotations": [{"id": 9, "image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4]}]}, "image 2"),
        ({**base, "annotations": [{"id": 9, "image_id": 1, "category_id": 3, "bbox": [45, 2, 30, 4]}]},
         r"\(45, 2, 75, 6\) \('car', annotation 9\).*'a.png' \(50 x 40 pixels\)"),
        ({**base, "annotations": []}, "holds no annotations"),
    ]  # fmt: skip
    for data, message in cases:
        path.write_text(json.dumps(data))
        with pytest.raises(LabelError, match=message):
            read_coco(path)
    [obj] = read_coco(path, allow_empty=True)
    assert obj.image == "a.png" and len(obj) == 0
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="not valid JSON"):
        read_coco(path)
    path.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputFileError, match="not COCO"):
        read_coco(path)
    crowd = {**base, "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": 1}]}
    path.write_text(json.dumps(crowd))
    assert read_coco(path)[0].difficult.tolist() == [True]  # crowd regions are ignored like VOC's difficult


def test_format_detection_and_its_refusals(tmp_path):
    assert set(FORMATS) == {"coco", "voc", "yolo", "dota"}
    dota = tmp_path / "d.txt"
    dota.write_text("1 2 3 2 3 4 1 4 plane 0\n")
    yolo = tmp_path / "y.txt"
    yolo.write_text("3 0.5 0.5 0.1 0.1\n")
    assert (detect_format(dota), detect_format(yolo)) == ("dota", "yolo")
    odd = tmp_path / "odd.txt"
    odd.write_text("hello world\n")
    with pytest.raises(InputFileError, match="Cannot tell the annotation format") as info:
        read_annotations(odd)
    assert "format: one of ['coco', 'voc', 'yolo', 'dota']" in info.value.fix
    with pytest.raises(InputFileError, match="Cannot tell"):
        detect_format(tmp_path / "labels.csv")
    with pytest.raises(ConfigError, match="Unknown annotation format 'kitti'"):
        read_annotations(yolo, format="kitti")
    with pytest.raises(InputFileError, match="does not exist"):
        read_annotations(tmp_path / "missing.json")


@pytest.mark.shared
def test_real_dota_sample_p0706_ships():
    if not DOTA.is_dir():
        pytest.skip("../shared/data/dota_samples is absent (real datasets are only on the developers' machines)")
    [obj] = read_annotations(DOTA / "labelTxt" / "P0706.txt")
    assert (obj.image, obj.width, obj.height) == ("P0706.png", 1111, 1182)  # size read from ../images/P0706.png
    assert obj.gsd == pytest.approx(0.255589285596)
    assert len(obj) == 536 and obj.labels.count("ship") == 531 and obj.labels.count("harbor") == 5
    assert obj.difficult.sum() > 0 and len(obj.polygons) == 536
    pts = np.stack(obj.polygons)
    envelopes = np.c_[pts.min(axis=1), pts.max(axis=1)]
    np.testing.assert_array_equal(obj.boxes, np.clip(envelopes, 0, [1111, 1182, 1111, 1182]))
    assert (obj.boxes[:, 2] > obj.boxes[:, 0]).all() and (obj.boxes[:, 3] > obj.boxes[:, 1]).all()
    [vehicles] = read_annotations(DOTA / "labelTxt" / "P1888.txt")
    assert len(vehicles) == 64 and set(vehicles.labels) == {"large-vehicle", "small-vehicle"}
