"""Spatially grouped cross-validation folds: pure maths on label arrays, no file access.

A *group* is a connected patch of labelled pixels of one class (a drawn polygon, or a patch
of a classified raster). Folds hold out whole groups, so a model is always scored on
polygons it never saw. A class with fewer groups than folds has its largest groups cut
into parts along their longer axis, so that every fold holds some of it and no class is
ever dropped from training or from validation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

UNLABELLED = 255


def label_groups(labels: np.ndarray, n_classes: int, start: int = 1) -> tuple[np.ndarray, int]:
    """Group ids (int32, 0 = unlabelled) of the connected patches (8-connected) of each class; next free id."""
    groups = np.zeros(labels.shape, dtype=np.int32)
    next_id = start
    structure = np.ones((3, 3), dtype=bool)
    for c in range(n_classes):
        comp, n = ndimage.label(labels == c, structure=structure)
        if n:
            groups[comp > 0] = comp[comp > 0] + (next_id - 1)
            next_id += n
    return groups, next_id


def cut_group(rows: np.ndarray, cols: np.ndarray, parts: int) -> np.ndarray:
    """Part index (0..parts-1) of each pixel of one group, cut across its longer axis into equal pixel counts."""
    if parts <= 1 or len(rows) < parts:
        return np.zeros(len(rows), dtype=np.int64)
    pts = np.column_stack([rows, cols]).astype(np.float64)
    pts -= pts.mean(axis=0)
    if len(pts) > 1 and np.ptp(pts, axis=0).max() > 0:
        _, _, vt = np.linalg.svd(pts, full_matrices=False)
        along = pts @ vt[0]
    else:
        along = np.arange(len(pts), dtype=np.float64)
    order = np.argsort(along, kind="stable")
    part = np.empty(len(rows), dtype=np.int64)
    part[order] = np.arange(len(rows)) * parts // len(rows)
    return part


def assign_folds(group_class: np.ndarray, group_pixels: np.ndarray, k: int) -> np.ndarray:
    """Fold (0..k-1) of each group: per class, largest groups first, each to the fold with fewest of its pixels.

    ``group_class`` and ``group_pixels`` are indexed by group id (entry 0 unused). Folds of each class
    then hold about a k-th of its pixels each, as far as the group sizes allow.
    """
    folds = np.full(len(group_class), -1, dtype=np.int64)
    for c in np.unique(group_class[1:]):
        if c < 0:
            continue
        ids = np.nonzero(group_class == c)[0]
        ids = ids[ids > 0]
        load = np.zeros(k)
        for g in ids[np.argsort(-group_pixels[ids], kind="stable")]:
            f = int(np.argmin(load))
            folds[g] = f
            load[f] += group_pixels[g]
    return folds


def make_fold_map(labels: list[np.ndarray], n_classes: int, k: int) -> tuple[list[np.ndarray], dict]:
    """Fold index per labelled pixel (-1 elsewhere) for a list of label mosaics, and a summary per class.

    A class with fewer than ``k`` groups has its largest groups cut into parts (see ``cut_group``) until
    it has ``k`` units, so each fold holds some of every class.
    """
    groups, next_id = [], 1
    for lab in labels:
        g, next_id = label_groups(lab, n_classes, next_id)
        groups.append(g)
    group_class = np.full(next_id, -1, dtype=np.int64)
    group_pixels = np.zeros(next_id, dtype=np.int64)
    for lab, g in zip(labels, groups, strict=True):
        m = g > 0
        group_class[g[m]] = lab[m]
        group_pixels += np.bincount(g[m], minlength=next_id)
    summary = {}
    for c in range(n_classes):
        ids = np.nonzero(group_class == c)[0]
        summary[c] = {"groups": len(ids), "cut": 0}
        missing = k - len(ids)
        if missing <= 0 or len(ids) == 0:
            continue
        # cut the largest group into enough parts, each part a new group id
        big = int(ids[np.argmax(group_pixels[ids])])
        where = [(i, np.nonzero(g == big)) for i, g in enumerate(groups)]
        rows = np.concatenate([w[0] for _, w in where])
        cols = np.concatenate([w[1] for _, w in where])
        parts = cut_group(rows, cols, missing + 1)
        offset = 0
        new_ids = np.array([big, *range(next_id, next_id + missing)], dtype=np.int32)
        for i, w in where:
            n = len(w[0])
            groups[i][w] = new_ids[parts[offset : offset + n]]
            offset += n
        group_class = np.concatenate([group_class, np.full(missing, c)])
        counts = np.bincount(parts, minlength=missing + 1)
        group_pixels = np.concatenate([group_pixels, counts[1:]])
        group_pixels[big] = counts[0]
        next_id += missing
        summary[c]["cut"] = 1
    folds = assign_folds(group_class, group_pixels, k)
    fold_maps = [np.where(g > 0, folds[g], -1) for g in groups]
    return fold_maps, summary
