"""Instance maths, pure (arrays in, arrays out; no file access): U-Net-ID targets, watershed instances, polygons.

**U-Net-ID targets** (Wagner et al. 2020, Remote Sensing 12(10):1544). From a chip's instance-ID mask (0 = no
object, each object its own ID) three binary targets are drawn:

- *object*: every pixel of an object;
- *border*: the band of ``border_width`` pixels inside each object along its outline, where it meets the
  background or another object, so that touching objects are parted by border pixels;
- *interior*: the object pixels farther than ``interior_erosion`` pixels from their object's outline (the
  eroded object): the markers that the watershed grows back into whole objects.

**Instances from predictions** (:func:`watershed_instances`): markers are the connected interiors (those of at
least ``min_marker`` pixels), the border probability is the elevation they flood, and the object mask bounds
the flood (scikit-image's marker-controlled watershed). Objects smaller than ``min_area`` pixels are dropped.
Touching objects stay apart because each grows from its own interior.

:func:`instance_polygons` turns an instance mask into one polygon per instance (rasterio's vectoriser, holes
kept), in the coordinates of a given transform.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from scipy import ndimage

__all__ = ["instance_polygons", "mask_polygons", "relabel", "unet_id_targets", "watershed_instances"]


def _distance_to_outline(instances: np.ndarray) -> np.ndarray:
    """Per object pixel, the distance in pixels to the nearest pixel outside its own object (0 outside objects)."""
    from skimage.segmentation import find_boundaries

    outline = find_boundaries(instances, mode="inner", background=0) & (instances > 0)
    # the outline pixels are at distance 1 from the outside; inner pixels farther by their distance to them
    dist = ndimage.distance_transform_edt(~outline) + 1.0
    dist[instances == 0] = 0.0
    return dist


def unet_id_targets(instances: np.ndarray, border_width: int = 2,
                    interior_erosion: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(object, border, interior) uint8 masks of a (H, W) instance-ID mask; see the module documentation."""
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"an instance mask is 2-D, not of shape {instances.shape}")
    obj = instances > 0
    dist = _distance_to_outline(instances)
    border = obj & (dist <= border_width)
    interior = obj & (dist > interior_erosion)
    return obj.astype(np.uint8), border.astype(np.uint8), interior.astype(np.uint8)


def relabel(labels: np.ndarray, min_area: int = 1) -> np.ndarray:
    """IDs 1..N in order of first appearance, objects smaller than ``min_area`` pixels removed (int32)."""
    labels = np.asarray(labels)
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = (ids != 0) & (counts >= min_area)
    new = np.zeros(len(ids), np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new[inverse].reshape(labels.shape)


def watershed_instances(object_prob: np.ndarray, border_prob: np.ndarray, interior_prob: np.ndarray,
                        threshold: float = 0.5, min_area: int = 4, min_marker: int = 2) -> np.ndarray:  # fmt: skip
    """An int32 instance-ID mask (0 = no object) from the three U-Net-ID probability maps (H, W)."""
    from skimage.segmentation import watershed

    mask = np.asarray(object_prob) >= threshold
    seeds = (np.asarray(interior_prob) >= threshold) & mask
    markers, n = ndimage.label(seeds)
    if n == 0:
        return np.zeros(mask.shape, np.int32)
    if min_marker > 1:
        markers = relabel(markers, min_marker)
    labels = watershed(np.asarray(border_prob, np.float32), markers=markers, mask=mask)
    return relabel(labels, min_area)


def instance_polygons(instances: np.ndarray, transform: Affine = Affine.identity()) -> list[tuple[object, int]]:
    """``[(polygon, instance ID)]``: each instance as one (multi)polygon in ``transform``'s coordinates."""
    import shapely
    from rasterio.features import shapes

    instances = np.asarray(instances, np.int32)
    parts: dict[int, list] = {}
    for geom, value in shapes(instances, mask=instances > 0, transform=transform, connectivity=4):
        parts.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    return [(p[0] if len(p) == 1 else shapely.union_all(p), k) for k, p in sorted(parts.items())]


def mask_polygons(masks: np.ndarray, dx: float = 0.0) -> list:
    """One (multi)polygon per binary mask of (N, H, W), shifted by ``dx`` pixels in x (None for an empty mask)."""
    import shapely

    out = []
    for mask in masks:
        parts = instance_polygons(mask.astype(np.int32))
        out.append(shapely.affinity.translate(parts[0][0], dx) if parts else None)
    return out
