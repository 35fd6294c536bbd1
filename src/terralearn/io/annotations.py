"""Object annotations of plain images and chip sets: COCO, PASCAL VOC, YOLO and DOTA in; VOC, KITTI, COCO out.

These formats know pixels only (no CRS): they are how detection data sets arrive from the
computer-vision world and how chips leave for it (ArcGIS reads the VOC and KITTI chips it
exports itself). Boxes come back as float64 (N, 4) ``xyxy`` pixel arrays, the one box type of
``terralearn.geo.boxes``; coordinates are continuous (the right edge of a W-pixel image is x = W)
and read as written, with no 1-based shift, so a chip written here reads back unchanged.

Every reader checks what it returns: a box of zero or negative size, or one that sticks out of
the image by more than ``edge_tolerance`` pixels, is an error quoting the box, the image size
and where in the file it is; boxes within the tolerance are clipped to the image (annotators
often click a pixel past the edge: the DOTA sample P0706 reaches x = 1112 in a 1111-pixel image).
A label file that holds no object is an error unless ``allow_empty`` (YOLO writes empty files
for background images on purpose). Writers are atomic.
"""

from __future__ import annotations

import json
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terralearn.errors import ConfigError, InputFileError, LabelError
from terralearn.io.atomic import write_json_atomic, write_text_atomic

#: The formats :func:`read_annotations` takes, with how each is recognised.
FORMATS: dict[str, str] = {
    "coco": "a COCO .json file (images, annotations with xywh bbox, categories)",
    "voc": "a PASCAL VOC .xml file (one image)",
    "yolo": "a YOLO .txt file: 'class cx cy w h' per line, normalised to the image size",
    "dota": "a DOTA labelTxt .txt file: optional 'imagesource:'/'gsd:' lines, then 'x1 y1 ... x4 y4 class difficult'",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class ImageObjects:
    """The objects of one image: pixel boxes (N, 4) xyxy float64 and one label per box.

    ``difficult`` objects are ignored by evaluation (VOC ``difficult``, COCO ``iscrowd``, DOTA
    ``difficult``); ``polygons`` holds each object's outline as a (K, 2) pixel array where the
    format has one (DOTA's four corners, COCO polygons), else None; ``gsd`` is DOTA's ground
    sample distance in metres when given.
    """

    image: str
    width: int
    height: int
    boxes: np.ndarray
    labels: list[str]
    difficult: np.ndarray | None = None
    truncated: np.ndarray | None = None
    polygons: list[np.ndarray] | None = None
    gsd: float | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = [str(v) for v in self.labels]
        n = len(self.boxes)
        for name in ("difficult", "truncated"):
            flags = getattr(self, name)
            setattr(self, name, np.zeros(n, bool) if flags is None else np.asarray(flags, dtype=bool).reshape(-1))
        sizes = {len(self.labels), len(self.difficult), len(self.truncated)}
        if self.polygons is not None:
            sizes.add(len(self.polygons))
        if sizes != {n}:
            raise ValueError(f"{self.image}: {n} boxes but {len(self.labels)} labels (and flags/polygons) differ")

    def __len__(self) -> int:
        return len(self.boxes)


def _check_boxes(obj: ImageObjects, source: Path, where: list[str], edge_tolerance: float) -> ImageObjects:
    """Refuse empty or misplaced boxes (quoting them); clip those within ``edge_tolerance`` of the image."""
    b = obj.boxes
    small = np.flatnonzero((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]))
    if len(small):
        k = int(small[0])
        raise LabelError(
            f"The box ({', '.join(_num(v) for v in b[k])}) ('{obj.labels[k]}', {where[k]}) in '{source}' has zero or negative size "
            f"(x0, y0, x1, y1 must have x1 > x0 and y1 > y0); {len(small)} such box(es) in all.",
            "Fix or delete these objects in the labelling tool; a box must cover at least part of a pixel.",
        )
    t = float(edge_tolerance)
    out = np.flatnonzero((b[:, 0] < -t) | (b[:, 1] < -t) | (b[:, 2] > obj.width + t) | (b[:, 3] > obj.height + t))
    if len(out):
        k = int(out[0])
        raise LabelError(
            f"The box ({', '.join(_num(v) for v in b[k])}) ('{obj.labels[k]}', {where[k]}) in '{source}' lies outside the image "
            f"'{obj.image}' ({obj.width} x {obj.height} pixels); {len(out)} such box(es) in all.",
            f"Check that the labels belong to this image and that its size is right; boxes may stick out by "
            f"{t:g} pixel(s) at most (pass a larger edge_tolerance to clip boxes that stick out further).",
        )
    obj.boxes = np.clip(b, 0, [obj.width, obj.height, obj.width, obj.height])
    return obj


def _read_text(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Annotation file '{path}' does not exist.", "Check the path and the file name.")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"'{path}' is not a UTF-8 text file ({exc.reason} at byte {exc.start}).",
            "Give the annotation file itself, saved as UTF-8 text.",
        ) from None


def _empty(path: Path, what: str, allow_empty: bool) -> None:
    if not allow_empty:
        raise LabelError(
            f"The label file '{path}' {what}.",
            "Label at least one object in this image, or leave the image out; if it really shows no objects "
            "(a background image), pass allow_empty=True.",
        )


def _image_size(label_path: Path, image_size) -> tuple[str, int, int]:
    """(image name, width, height): from ``image_size`` or from the image beside the labels."""
    stem = label_path.stem
    if image_size is not None:
        width, height = (int(v) for v in image_size)
        if width < 1 or height < 1:
            raise ConfigError(f"image_size {tuple(image_size)} is not a size.", "Give (width, height) in pixels.")
        return stem, width, height
    folders = [label_path.parent, label_path.parent.parent / "images"]
    names = [f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES)]
    for candidate in (folder / name for folder in folders for name in names):
        if candidate.is_file():
            import rasterio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                try:
                    with rasterio.open(candidate) as src:
                        return candidate.name, src.width, src.height
                except rasterio.errors.RasterioIOError as exc:
                    raise InputFileError(f"The image '{candidate}' cannot be read ({exc}).", "Replace the image, "
                                         "or pass image_size=(width, height).") from None  # fmt: skip
    raise InputFileError(
        f"No image found for the labels '{label_path}' to take its size from "
        f"(looked for {stem} with {', '.join(IMAGE_SUFFIXES)} in {', '.join(str(f) for f in folders)}).",
        "Pass image_size=(width, height), or keep the images in an 'images' folder beside the labels folder.",
    )


def _lines(path: Path):
    """(line number, line, tokens) for each non-blank line of a text label file."""
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            yield number, line, line.split()


def _malformed(path: Path, number: int, line: str, expected: str) -> LabelError:
    return LabelError(f"Line {number} of '{path}' is malformed: {line.strip()!r}.", f"Each line must be {expected}.")


def _numbers(tokens: list[str]) -> list[float] | None:
    return [float(t) for t in tokens] if all(_NUMBER.match(t) for t in tokens) else None


def read_dota(path: Path, image_size=None, edge_tolerance: float = 2.0, allow_empty: bool = False) -> ImageObjects:
    """A DOTA labelTxt file: 8-point polygons, their envelopes, labels, difficult flags and the gsd."""
    path = Path(path)
    expected = "'x1 y1 x2 y2 x3 y3 x4 y4 class difficult' (pixel corners, a class name, 0 or 1)"
    gsd, polygons, labels, difficult, where = None, [], [], [], []
    for number, line, tokens in _lines(path):
        head = tokens[0].lower()
        if head.startswith(("imagesource:", "gsd:")):
            value = " ".join(tokens).split(":", 1)[1].strip()
            if head.startswith("gsd:") and _NUMBER.match(value):
                gsd = float(value)
            continue
        corners = _numbers(tokens[:8])
        if corners is None or len(tokens) not in (9, 10) or (len(tokens) == 10 and tokens[9] not in ("0", "1")):
            raise _malformed(path, number, line, expected)
        polygons.append(np.array(corners).reshape(4, 2))
        labels.append(tokens[8])
        difficult.append(len(tokens) == 10 and tokens[9] == "1")
        where.append(f"line {number}")
    if not labels:
        _empty(path, "holds no objects (no 'x1 y1 ... x4 y4 class difficult' lines)", allow_empty)
    name, width, height = _image_size(path, image_size)
    pts = np.array(polygons).reshape(-1, 4, 2)
    boxes = np.c_[pts.min(axis=1), pts.max(axis=1)] if len(pts) else np.zeros((0, 4))
    obj = ImageObjects(name, width, height, boxes, labels, np.array(difficult, bool), polygons=polygons, gsd=gsd)
    return _check_boxes(obj, path, where, edge_tolerance)


def read_yolo(
    path: Path, class_names=None, image_size=None, edge_tolerance: float = 2.0, allow_empty: bool = False
) -> ImageObjects:
    """A YOLO txt file: class indices to ``class_names`` (or the index as text), boxes to pixels."""
    path = Path(path)
    expected = "'class cx cy w h': an integer class, then the box centre and size divided by the image size"
    rows, where, labels = [], [], []
    for number, line, tokens in _lines(path):
        values = _numbers(tokens[1:])
        if len(tokens) != 5 or not tokens[0].isdigit() or values is None:
            raise _malformed(path, number, line, expected)
        rows.append(values)
        index = int(tokens[0])
        if class_names is not None and index >= len(class_names):
            raise LabelError(
                f"Line {number} of '{path}' has class {index}, but only {len(class_names)} class names were given "
                f"({list(class_names)}).",
                "Give the full class list of the data set (its data.yaml 'names'), in index order.",
            )
        labels.append(str(index) if class_names is None else str(class_names[index]))
        where.append(f"line {number}")
    if not rows:
        _empty(path, "is empty", allow_empty)
    name, width, height = _image_size(path, image_size)
    r = np.array(rows, dtype=np.float64).reshape(-1, 4) * [width, height, width, height]
    boxes = np.c_[r[:, :2] - r[:, 2:] / 2, r[:, :2] + r[:, 2:] / 2]
    return _check_boxes(ImageObjects(name, width, height, boxes, labels), path, where, edge_tolerance)


def _parse_xml(path: Path) -> ET.Element:
    text = _read_text(path)
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise InputFileError(
            f"'{path}' declares a DOCTYPE or ENTITY; TerraLearn refuses those (they can expand without limit).",
            "Remove the <!DOCTYPE ...> and <!ENTITY ...> declarations; PASCAL VOC files never need them.",
        )
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputFileError(f"'{path}' is not well-formed XML ({exc}).", "Export the annotation again.") from None


def read_voc(path: Path, edge_tolerance: float = 2.0, allow_empty: bool = False) -> ImageObjects:
    """A PASCAL VOC XML file: one image's size, boxes, names and difficult/truncated flags."""
    path = Path(path)
    root = _parse_xml(path)
    fix = "A PASCAL VOC file is <annotation> with <filename>, <size> (width, height) and <object> entries."

    def number(node: ET.Element | None, tag: str, where: str) -> float:
        text = (node.findtext(tag) if node is not None else None) or ""
        if not _NUMBER.match(text.strip()):
            raise LabelError(f"{where} in '{path}' has no number in <{tag}> (found {text.strip()!r}).", fix)
        return float(text)

    if root.tag != "annotation":
        raise InputFileError(f"'{path}' is XML but not PASCAL VOC: its root is <{root.tag}>.", fix)
    width, height = (int(number(root.find("size"), tag, "The <size>")) for tag in ("width", "height"))
    if width < 1 or height < 1:
        raise LabelError(f"The image size in '{path}' is {width} x {height} pixels.", fix)
    boxes, labels, difficult, truncated, where = [], [], [], [], []
    for k, node in enumerate(root.iter("object"), start=1):
        box = node.find("bndbox")
        if box is None or not (node.findtext("name") or "").strip():
            raise LabelError(f"Object {k} in '{path}' lacks a <name> or a <bndbox>.", fix)
        boxes.append([number(box, tag, f"Object {k}") for tag in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(node.findtext("name").strip())
        difficult.append((node.findtext("difficult") or "0").strip() == "1")
        truncated.append((node.findtext("truncated") or "0").strip() == "1")
        where.append(f"object {k}")
    if not labels:
        _empty(path, "holds no <object>", allow_empty)
    image = (root.findtext("filename") or path.stem).strip()
    obj = ImageObjects(image, width, height, np.array(boxes).reshape(-1, 4), labels, difficult, truncated)
    return _check_boxes(obj, path, where, edge_tolerance)


def read_coco(path: Path, edge_tolerance: float = 2.0, allow_empty: bool = False) -> list[ImageObjects]:
    """A COCO JSON file: one record per image (images without annotations included, with no objects)."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise LabelError(f"The label file '{path}' is empty.", "Export the COCO annotations again.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"'{path}' is not valid JSON ({exc}).", "Export the COCO annotations again.") from None
    fix = "A COCO file is an object with 'images', 'annotations' and 'categories' lists."
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise InputFileError(f"'{path}' is JSON but not COCO: it lacks 'images' or 'categories'.", fix)
    try:
        names = {c["id"]: str(c["name"]) for c in data["categories"]}
        images = {im["id"]: (str(im["file_name"]), int(im["width"]), int(im["height"])) for im in data["images"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelError(f"An image or category in '{path}' lacks the field {exc}.", fix) from None
    per_image: dict = {i: [] for i in images}
    for k, ann in enumerate(data.get("annotations") or []):
        ident = ann.get("id", k) if isinstance(ann, dict) else k
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            raise LabelError(f"Annotation {ident} in '{path}' has no valid bbox: {bbox!r}.", "bbox is [x, y, w, h].")
        if ann.get("image_id") not in images or ann.get("category_id") not in names:
            raise LabelError(
                f"Annotation {ident} in '{path}' refers to image {ann.get('image_id')!r} / category "
                f"{ann.get('category_id')!r}, which the file does not list.",
                "Keep 'images' and 'categories' complete, or drop the annotations of removed images.",
            )
        per_image[ann["image_id"]].append((ident, ann))
    if not any(per_image.values()):
        _empty(path, "holds no annotations", allow_empty)
    out = []
    for image_id, (name, width, height) in images.items():
        anns = per_image[image_id]
        b = np.array([a["bbox"] for _, a in anns], dtype=np.float64).reshape(-1, 4)
        segs = [a.get("segmentation") for _, a in anns]
        polys = None
        if anns and all(isinstance(s, list) and s and len(s[0]) >= 6 for s in segs):
            polys = [np.asarray(s[0], dtype=np.float64).reshape(-1, 2) for s in segs]
        obj = ImageObjects(name, width, height, np.c_[b[:, :2], b[:, :2] + b[:, 2:]],
                           [names[a["category_id"]] for _, a in anns],
                           [bool(a.get("iscrowd", 0)) for _, a in anns],
                           [bool(a.get("truncated", 0)) for _, a in anns], polygons=polys)  # fmt: skip
        out.append(_check_boxes(obj, path, [f"annotation {i}" for i, _ in anns], edge_tolerance))
    return out


#: Suffixes read as annotation files of an image without georeferencing (anything else is a vector layer).
ANNOTATION_SUFFIXES = (".txt", ".xml", ".json")


def is_annotation_file(path: Path) -> bool:
    """Whether ``path`` is an annotation file (COCO, VOC, YOLO, DOTA) rather than a vector layer.

    ``.json`` is COCO unless the file is GeoJSON (a ``FeatureCollection`` or ``features`` in its first 4 KB).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANNOTATION_SUFFIXES or path.name.lower().endswith(".geojson"):
        return False
    if suffix == ".json" and path.is_file():
        with path.open("rb") as f:
            head = f.read(4096)
        return b"FeatureCollection" not in head and b'"features"' not in head
    return True


def detect_format(path: Path) -> str:
    """The annotation format of ``path`` from its suffix, and for .txt from its first object line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix == ".xml":
        return "voc"
    if suffix == ".txt":
        lines = [line for line in _read_text(path).splitlines() if line.strip()]
        if not lines:
            return "yolo"  # YOLO's empty file for a background image (refused unless allow_empty)
        tokens = lines[0].split()
        if lines[0].strip().lower().startswith(("imagesource:", "gsd:")) or len(tokens) in (9, 10):
            return "dota"
        if len(tokens) == 5:
            return "yolo"
    raise InputFileError(
        f"Cannot tell the annotation format of '{path}'.",
        "Give " + "; or ".join(FORMATS.values()) + f"; or name the format: one of {list(FORMATS)}.",
    )


def read_annotations(
    path: Path, format: str | None = None, *, class_names=None, image_size=None,
    edge_tolerance: float = 2.0, allow_empty: bool = False,
) -> list[ImageObjects]:  # fmt: skip
    """Read any supported annotation file (see :data:`FORMATS`); one record per image.

    ``format`` None detects it (:func:`detect_format`). ``class_names`` applies to YOLO and
    ``image_size`` (width, height) to YOLO and DOTA, which do not store it (by default the size
    is read from the image of the same name beside the labels or in ../images).
    """
    path = Path(path)
    fmt = format or detect_format(path)
    common = {"edge_tolerance": edge_tolerance, "allow_empty": allow_empty}
    if fmt == "coco":
        return read_coco(path, **common)
    if fmt == "voc":
        return [read_voc(path, **common)]
    if fmt == "yolo":
        return [read_yolo(path, class_names, image_size, **common)]
    if fmt == "dota":
        return [read_dota(path, image_size, **common)]
    raise ConfigError(f"Unknown annotation format {fmt!r}.", f"Choose one of {list(FORMATS)}.")


def read_image_annotations(path: Path, image_size, image_names=()) -> ImageObjects:
    """The objects of one image in ``path``: the only record, or, in a COCO file of several images, the one whose
    file name (without suffix) is among ``image_names``. ``image_size`` (width, height) as for
    :func:`read_annotations`. A LabelError when no image, or more than one, matches."""
    records = read_annotations(path, image_size=image_size)
    if len(records) > 1:
        wanted = {Path(n).stem for n in image_names}
        records = [r for r in records if Path(r.image).stem in wanted]
        if len(records) != 1:
            raise LabelError(
                f"'{path}' describes several images, and none (or more than one) is named like the raster "
                f"{sorted(wanted)}.",
                "Give the raster whose file name the annotation file's image entry names, or an annotation file of "
                "that image alone.",
            )
    return records[0]


# --- writers for chips -----------------------------------------------------------------------


def _num(v) -> str:
    """A coordinate as short exact text: 12 for 12.0, else the float rounded to 4 decimals."""
    r = round(float(v), 4)
    return str(int(r)) if r.is_integer() else repr(r)


def _chip_objects(boxes, labels, *flags) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = [str(v) for v in labels]
    arrays = [np.zeros(len(b)) if f is None else np.asarray(f, dtype=np.float64).reshape(-1) for f in flags]
    if any(len(a) != len(b) for a in [labels, *arrays]):
        raise ValueError(
            f"{len(b)} boxes need as many labels and flags, got {[len(labels)] + [len(a) for a in arrays]}"
        )
    return b, labels, arrays


def write_pascal_voc(
    path: Path, image_name: str, width: int, height: int, depth: int, boxes, labels,
    truncated=None, difficult=None,
) -> None:  # fmt: skip
    """One chip's PASCAL VOC XML (what ArcGIS's 'PASCAL Visual Object Classes' export writes)."""
    b, labels, (trunc, diff) = _chip_objects(boxes, labels, truncated, difficult)
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = str(image_name)
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for box, label, t, d in zip(b, labels, trunc, diff, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = label
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(bool(t)))
        ET.SubElement(obj, "difficult").text = str(int(bool(d)))
        bnd = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bnd, tag).text = _num(value)
    ET.indent(root)
    write_text_atomic(Path(path), ET.tostring(root, encoding="unicode") + "\n")


def write_kitti(path: Path, boxes, labels, truncated=None) -> None:
    """One chip's KITTI label file: ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rot_y``.

    The 3-D fields (dimensions, location, rotation) are zeros and occlusion 0, as in ArcGIS's
    'KITTI Rectangles' export; ``truncated`` may be flags or fractions in [0, 1].
    """
    b, labels, (trunc,) = _chip_objects(boxes, labels, truncated)
    bad = [v for v in labels if not v or any(c.isspace() for c in v)]
    if bad:
        raise LabelError(
            f"The class name {bad[0]!r} cannot be written to KITTI, whose fields are separated by spaces.",
            "Rename the class without spaces (for example with underscores).",
        )
    lines = [
        f"{label} {t:.2f} 0 0.00 {x0:.2f} {y0:.2f} {x1:.2f} {y1:.2f} 0.00 0.00 0.00 0.00 0.00 0.00 0.00"
        for label, t, (x0, y0, x1, y1) in zip(labels, trunc, b, strict=True)
    ]
    write_text_atomic(Path(path), "".join(line + "\n" for line in lines))


def write_coco(path: Path, images: Iterable[ImageObjects], classes: Mapping[int, str]) -> None:
    """A whole chip set as one COCO JSON; category ids are the class values of ``classes`` {value: name}."""
    ids = {str(name): int(value) for value, name in classes.items()}
    out_images, annotations = [], []
    for image_id, obj in enumerate(images, start=1):
        out_images.append({"id": image_id, "file_name": obj.image, "width": int(obj.width), "height": int(obj.height)})
        for k, (box, label) in enumerate(zip(obj.boxes, obj.labels, strict=True)):
            if label not in ids:
                raise LabelError(
                    f"The chip '{obj.image}' has an object of class {label!r}, which the class table "
                    f"({sorted(ids)}) does not list.",
                    "Add the class to the class table, or drop its objects before writing.",
                )
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": ids[label],
                "bbox": [float(box[0]), float(box[1]), w, h],
                "area": w * h,
                "iscrowd": 0,
                "truncated": int(bool(obj.truncated[k])),
            }  # fmt: skip  (an extra key COCO readers ignore)
            if obj.polygons is not None:
                ann["segmentation"] = [np.asarray(obj.polygons[k], dtype=np.float64).reshape(-1).tolist()]
            annotations.append(ann)
    categories = [{"id": int(v), "name": str(n), "supercategory": "none"} for v, n in sorted(classes.items())]
    write_json_atomic(
        Path(path),
        {"info": {"description": "TerraLearn chip set"}, "licenses": [], "images": out_images,
         "annotations": annotations, "categories": categories},
    )  # fmt: skip
