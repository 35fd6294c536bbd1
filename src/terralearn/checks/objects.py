"""Pre-flight checks of object labels for detection, one function per pitfall, in plain words with a fix.

- objects smaller than a few pixels at this pixel size (a detector's first feature map is 4 px a cell);
- objects larger than the tile (they are never whole in a chip: a larger tile is suggested);
- classes with too few objects to learn or to score;
- duplicate labels (two boxes of one class overlapping almost completely);
- objects outside the image;
- an image in degrees (boxes and sizes in degrees mislead every size check and the areas).
"""

from __future__ import annotations

import math

import numpy as np

from terralearn.checks.findings import Finding
from terralearn.geo.boxes import pairwise_iou
from terralearn.geo.grid import Grid
from terralearn.labels.objects import Objects

#: Below this many pixels a side, an object is a few cells of a detector's finest feature map.
MIN_SIDE_PX = 4
#: Fewer objects of a class than this cannot be both learnt and scored.
MIN_OBJECTS = 10
#: Two same-class boxes overlapping by more than this are taken for one object labelled twice.
DUPLICATE_IOU = 0.9


def check_objects(objects: Objects, grid: Grid, tile: tuple[int, int]) -> list[Finding]:
    """Every finding about ``objects`` for chips of ``tile`` (width, height) pixels."""
    if len(objects) == 0:
        return [Finding("objects_present", "error", "The labels hold no object.",
                        "Give a label file with at least one object of each class.")]  # fmt: skip
    return [
        f
        for check in (_outside, _small, _large, _few, _duplicates, _degrees)
        for f in [check(objects, grid, tile)]
        if f is not None
    ]


def _outside(objects: Objects, grid: Grid, tile) -> Finding | None:
    b = objects.boxes
    out = (b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= grid.width) | (b[:, 1] >= grid.height)
    if not out.any():
        return None
    first = b[np.flatnonzero(out)[0]].round(1).tolist()
    return Finding(
        "objects_outside", "warning" if not out.all() else "error",
        f"{int(out.sum())} of {len(b)} objects lie outside the image ({grid.width} x {grid.height} px), "
        f"e.g. the box {first} (pixels).",
        "Check that the labels belong to this image and share its CRS; objects outside are not exported.",
        {"outside": int(out.sum())},
    )  # fmt: skip


def _small(objects: Objects, grid: Grid, tile) -> Finding | None:
    b = objects.boxes
    side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    small = side < MIN_SIDE_PX
    if not small.any():
        return None
    res = abs(grid.transform.a)
    return Finding(
        "objects_small", "warning",
        f"{int(small.sum())} of {len(b)} objects are narrower than {MIN_SIDE_PX} pixels at this pixel size "
        f"({res:g} per pixel; the smallest is {side.min():.1f} px).",
        "Use finer imagery, or buffer point labels more (--buffer-radius); detectors rarely find objects this "
        "small.",
        {"small": int(small.sum()), "smallest_px": float(side.min())},
    )  # fmt: skip


def _large(objects: Objects, grid: Grid, tile) -> Finding | None:
    b = objects.boxes
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    large = (w > tile[0]) | (h > tile[1])
    if not large.any():
        return None
    need = int(2 ** math.ceil(math.log2(max(float(w.max()), float(h.max())) * 1.25)))
    return Finding(
        "objects_large", "warning",
        f"{int(large.sum())} objects are larger than the {tile[0]} x {tile[1]} px tile (the largest "
        f"{w.max():.0f} x {h.max():.0f} px): no chip shows them whole.",
        f"Use --tile-size {need} or more, or coarser imagery.",
        {"large": int(large.sum()), "suggested_tile": need},
    )  # fmt: skip


def _few(objects: Objects, grid: Grid, tile) -> Finding | None:
    counts = objects.counts()
    few = [(c.name, n) for c, n in zip(objects.table, counts, strict=True) if n < MIN_OBJECTS]
    if not few:
        return None
    listed = ", ".join(f"{name} ({n})" for name, n in few)
    return Finding(
        "classes_few_objects", "warning",
        f"Classes with fewer than {MIN_OBJECTS} objects: {listed}. A detector cannot learn them, nor can "
        "validation score them.",
        "Label more objects of these classes, or merge them into a broader class.",
        {"few": dict(few)},
    )  # fmt: skip


def _duplicates(objects: Objects, grid: Grid, tile) -> Finding | None:
    pairs = 0
    for k in np.unique(objects.classes):
        b = objects.boxes[objects.classes == k]
        if len(b) < 2:
            continue
        for start in range(0, len(b), 2048):  # bounded memory: a block of rows against all
            rows, cols = np.nonzero(pairwise_iou(b[start : start + 2048], b) > DUPLICATE_IOU)
            pairs += int((rows + start < cols).sum())  # each pair once, never a box with itself
    if not pairs:
        return None
    return Finding(
        "duplicate_objects", "warning",
        f"{pairs} pair(s) of same-class objects overlap by more than {DUPLICATE_IOU:.0%} IoU: the same object "
        "labelled twice, most likely.",
        "Remove the duplicates in your GIS (Delete Duplicate Geometries); each counts as a missed detection.",
        {"pairs": pairs},
    )  # fmt: skip


def _degrees(objects: Objects, grid: Grid, tile) -> Finding | None:
    if not grid.is_geographic:
        return None
    return Finding(
        "image_in_degrees", "warning",
        f"The image's CRS ({grid.crs}) is in degrees: a pixel is not square on the ground and object sizes "
        "vary with latitude.",
        "Reproject the image to a projected CRS (gdalwarp -t_srs EPSG:<UTM zone>) before exporting.",
    )  # fmt: skip


#: Two instance polygons overlap when they share more than this fraction of the smaller one's area.
OVERLAP_SHARE = 0.05


def check_instance_polygons(polygons) -> list[Finding]:
    """Findings about instance outlines: overlapping polygons (their shared pixels go to one of them)."""
    import shapely

    polys = shapely.make_valid(np.asarray(polygons, dtype=object))
    if len(polys) < 2:
        return []
    tree = shapely.STRtree(polys)
    left, right = tree.query(polys, predicate="intersects")
    pick = left < right
    left, right = left[pick], right[pick]
    if not len(left):
        return []
    shared = shapely.area(shapely.intersection(polys[left], polys[right]))
    smaller = np.minimum(shapely.area(polys[left]), shapely.area(polys[right]))
    overlapping = shared > OVERLAP_SHARE * np.maximum(smaller, 1e-12)
    if not overlapping.any():
        return []
    n = int(overlapping.sum())
    return [Finding(
        "overlapping_instances", "warning",
        f"{n} pair(s) of instance polygons overlap by more than {OVERLAP_SHARE:.0%} of the smaller one: their "
        "shared pixels are given to one instance only in the masks.",
        "Clean the outlines in your GIS (e.g. QGIS Check Validity and Difference, or topology rules) so that "
        "objects only touch.",
        {"pairs": n},
    )]  # fmt: skip
