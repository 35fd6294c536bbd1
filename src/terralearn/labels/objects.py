"""Object labels for detection: boxes in the raster's pixel coordinates with a class each, and their split.

Two sources:
- a vector layer (polygons, boxes, or points and lines buffered by ``buffer_radius``) with a class field, in any
  CRS: reprojected onto the raster's, each feature's envelope becomes a box;
- an annotation file for an image without georeferencing (COCO JSON, PASCAL VOC XML, YOLO txt, DOTA labelTxt),
  whose boxes are already pixel boxes.

The split holds whole objects out: square blocks of the raster are drawn for validation (seeded), an object
belongs to the block of its centre, a chip to the block of its centre, and a chip that shows any part of an
object of the other split is not written, so no object is ever seen in both training and validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terralearn.classes import ClassInfo, build_classes, normalise_values
from terralearn.errors import LabelError
from terralearn.geo.boxes import map_to_pixel, polygons_to_boxes
from terralearn.geo.grid import Grid
from terralearn.io.annotations import FORMATS as ANNOTATION_FORMATS
from terralearn.io.annotations import detect_format, is_annotation_file, read_image_annotations


@dataclass
class Objects:
    """Labelled objects of one raster: pixel boxes (N, 4) xyxy, class indices (N,), difficult flags (N,)."""

    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray
    table: list[ClassInfo]
    source: str  # "vector" or the annotation format

    def __len__(self) -> int:
        return len(self.boxes)

    def counts(self) -> list[int]:
        return np.bincount(self.classes, minlength=len(self.table)).astype(int).tolist()


def read_objects(labels: Path, grid: Grid, class_field: str | None, class_value: str | None,
                 buffer_radius: float, image_names: tuple[str, ...] = ()) -> Objects:  # fmt: skip
    """The objects of ``labels`` on ``grid`` (see the module documentation)."""
    if is_annotation_file(labels):
        return _from_annotations(Path(labels), grid, image_names)
    return _from_vector(Path(labels), grid, class_field, class_value, buffer_radius)


def _from_annotations(path: Path, grid: Grid, image_names: tuple[str, ...]) -> Objects:
    record = read_image_annotations(path, (grid.width, grid.height), image_names)
    names = normalise_values(record.labels)
    table = build_classes(names)
    index = {c.value: c.index for c in table}
    classes = np.array([index[v] for v in names], dtype=np.int64)
    return Objects(record.boxes, classes, record.difficult, table, source=_format_of(path))


def _format_of(path: Path) -> str:
    return detect_format(path)


def _from_vector(path: Path, grid: Grid, class_field: str | None, class_value: str | None,
                 buffer_radius: float) -> Objects:  # fmt: skip
    from terralearn.io.vector import read_vector

    return objects_of_layer(read_vector(path), path, grid, class_field, class_value, buffer_radius)[0]


def objects_of_layer(gdf, path: Path, grid: Grid, class_field: str | None, class_value: str | None,
                     buffer_radius: float):  # fmt: skip
    """``(Objects, geometries)`` of a vector layer read from ``path``: the objects with a geometry, classed, and
    their geometries in the grid's CRS (points and lines buffered by ``buffer_radius``)."""
    if len(gdf) == 0:
        raise LabelError(f"The label file '{path}' holds no feature.", "Give a layer with at least one object.")
    if class_field is None and class_value is None:
        raise LabelError("Object labels need a class.", "Give --class-field (or --class-value for one class).")
    if class_field is not None and class_field not in gdf.columns:
        fields = [c for c in gdf.columns if c != gdf.geometry.name]
        raise LabelError(f"The class field {class_field!r} is not in '{path}'; its fields are {fields}.",
                         "Give one of these with --class-field.")  # fmt: skip
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.crs is not None and grid.crs is not None and gdf.crs != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    geoms = gdf.geometry
    thin = geoms.geom_type.isin(["Point", "MultiPoint", "LineString", "MultiLineString"])
    if thin.any():
        if buffer_radius <= 0:
            raise LabelError(
                f"The labels hold {int(thin.sum())} point or line feature(s), which have no extent to box.",
                "Give --buffer-radius (in the raster's CRS units, e.g. half an object's width).",
            )
        geoms = geoms.where(~thin, geoms.buffer(buffer_radius))
    values = normalise_values(gdf[class_field].tolist() if class_field else [class_value] * len(gdf))
    table = build_classes(values)
    index = {c.value: c.index for c in table}
    polygons = np.asarray(geoms.values, dtype=object)
    boxes = map_to_pixel(polygons_to_boxes(polygons), grid.transform)
    classes = np.array([index[v] for v in values], dtype=np.int64)
    return Objects(boxes, classes, np.zeros(len(boxes), bool), table, source="vector"), polygons


def held_out(objects: Objects, block: int, val_blocks: set) -> np.ndarray:
    """Per object: True where it is held out for validation (its centre lies in a validation block)."""
    return np.array([_block_of(x, y, block) in val_blocks for x, y in _centres(objects.boxes)], dtype=bool)


def validation_blocks(grid: Grid, block: int, val_fraction: float, seed: int, objects: Objects) -> set:
    """The blocks held out: a seeded draw among the blocks that hold objects, adding a block only while the held
    objects stay within 1.5x ``val_fraction`` of all (one dense block must not take the whole validation), and at
    least the emptiest block when none fits; never every block."""
    occupied: dict[tuple[int, int], int] = {}
    for x, y in _centres(objects.boxes):
        key = _block_of(x, y, block)
        occupied[key] = occupied.get(key, 0) + 1
    keys = sorted(occupied)
    if val_fraction <= 0 or len(keys) < 2:
        return set()
    target = val_fraction * len(objects)
    chosen, held = set(), 0
    for i in np.random.default_rng(seed).permutation(len(keys)):
        n = occupied[keys[i]]
        if held >= target or len(chosen) == len(keys) - 1:
            break
        if held + n <= 1.5 * target:
            chosen.add(keys[i])
            held += n
    return chosen or {min(keys, key=lambda k: (occupied[k], k))}


def chip_split(row: int, col: int, height: int, width: int, block: int, val_blocks: set) -> bool:
    """Whether the chip at (row, col) is a validation chip (the block of its centre is held out)."""
    return _block_of(col + width / 2, row + height / 2, block) in val_blocks


def _centres(boxes: np.ndarray) -> np.ndarray:
    return np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])


def _block_of(x: float, y: float, block: int) -> tuple[int, int]:
    return int(y // block), int(x // block)


__all__ = ["ANNOTATION_FORMATS", "Objects", "chip_split", "held_out", "is_annotation_file", "read_objects",
           "validation_blocks"]  # fmt: skip
