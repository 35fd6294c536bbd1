"""Spatially grouped CV folds (geo/folds.py) and chip clusters of scene mosaics (scene_data.py): pure maths."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from terralearn.geo.folds import UNLABELLED, cut_group, label_groups, make_fold_map
from terralearn.train.scenes import chip_clusters


def _labels(seed: int, n_classes: int = 3, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.full((size, size), UNLABELLED, dtype=np.uint8)
    for _ in range(int(rng.integers(1, 8))):
        r, c = rng.integers(0, size - 8, 2)
        h, w = rng.integers(2, 8, 2)
        lab[r : r + h, c : c + w] = rng.integers(0, n_classes)
    return lab


def test_groups_are_connected_patches_of_one_class():
    lab = np.full((10, 10), UNLABELLED, dtype=np.uint8)
    lab[0:3, 0:3] = 0
    lab[0:3, 3:5] = 1  # touches class 0: still another group
    lab[6:9, 6:9] = 0
    groups, next_id = label_groups(lab, 2)
    assert next_id == 4
    assert len(np.unique(groups[lab == 0])) == 2 and len(np.unique(groups[lab == 1])) == 1
    assert (groups[lab == UNLABELLED] == 0).all()


def test_cut_group_splits_along_the_longer_axis_into_equal_parts():
    rows, cols = np.nonzero(np.ones((4, 30), dtype=bool))
    part = cut_group(rows, cols, 3)
    assert np.bincount(part).tolist() == [40, 40, 40]
    # parts are bands across the long (column) axis
    for p in range(3):
        assert np.ptp(cols[part == p]) < 11


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_every_class_is_in_every_fold_and_groups_stay_whole(seed, k):
    lab = _labels(seed)
    folds, summary = make_fold_map([lab], 3, k)
    fold = folds[0]
    assert ((fold >= 0) == (lab != UNLABELLED)).all()
    for c in np.unique(lab[lab != UNLABELLED]):
        in_class = fold[lab == c]
        # a class present with enough pixels appears in every fold (cut when it has fewer groups than folds)
        if (lab == c).sum() >= k:
            assert set(np.unique(in_class)) == set(range(k))
    groups, _ = label_groups(lab, 3)
    for g in np.unique(groups[groups > 0]):
        if not any(s["cut"] for s in summary.values()):
            assert len(np.unique(fold[groups == g])) == 1  # whole groups, never split across folds


def test_single_polygon_class_is_cut_never_dropped():
    lab = np.full((20, 40), UNLABELLED, dtype=np.uint8)
    lab[5:15, 2:38] = 1
    lab[0:2, 0:2] = 0
    lab[18:20, 0:2] = 0
    lab[0:2, 38:40] = 0
    folds, summary = make_fold_map([lab], 2, 3)
    assert summary[1] == {"groups": 1, "cut": 1}
    counts = np.bincount(folds[0][lab == 1], minlength=3)
    assert counts.min() > 0.3 * counts.sum() / 3


def test_chip_clusters_join_touching_chips_only():
    rows = np.array([0, 0, 16, 200, 216])
    cols = np.array([0, 16, 16, 200, 200])
    clusters = chip_clusters(rows, cols, 32, 32)
    assert clusters[0] == clusters[1] == clusters[2]
    assert clusters[3] == clusters[4] != clusters[0]


def test_scene_mosaics_put_every_labelled_pixel_back_once(scene, tmp_path):
    import rasterio

    from terralearn.config import ExportConfig
    from terralearn.export import export
    from terralearn.train.scenes import load_scene_data

    raster, labels, _ = scene
    out = tmp_path / "chips"
    export(ExportConfig.build(rasters=[raster], labels=labels, class_field="code", tile_size_x=16,
                              tile_size_y=16, stride_x=8, stride_y=8, out=out))  # fmt: skip
    data = load_scene_data(out)
    with rasterio.open(raster) as src:
        full = src.read()
    total = 0
    for m in data.mosaics:
        lab = m.labels != UNLABELLED
        total += int(lab.sum())
        # the mosaic image is the normalised raster at the mosaic's place
        window = full[:, m.row : m.row + lab.shape[0], m.col : m.col + lab.shape[1]].astype(np.float32)
        expect = (window - data.mean[:, None, None]) / data.std[:, None, None]
        np.testing.assert_allclose(m.image[:, lab], expect[:, lab], rtol=1e-4, atol=1e-4)
    manifest_total = sum(c["pixels"]["train"] + c["pixels"]["val"] for c in data.classes)
    assert total == manifest_total == data.labelled
