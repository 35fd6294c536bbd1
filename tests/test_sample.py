"""The built-in sample scene is seeded, realistic and learnable but not trivially separable."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize

from terralearn.sample import CLASSES, NODATA, make_sample


def load(scene):
    with rasterio.open(scene.raster) as src:
        img, transform, crs, nodata, names = src.read(), src.transform, src.crs, src.nodata, src.descriptions
    with rasterio.open(scene.truth) as src:
        truth = src.read(1)
    return img, truth, transform, crs, nodata, names, gpd.read_file(scene.labels)


def test_sample_is_seeded(tmp_path):
    a = load(make_sample(tmp_path / "a", seed=7, size=128))
    b = load(make_sample(tmp_path / "b", seed=7, size=128))
    c = load(make_sample(tmp_path / "c", seed=8, size=128))
    assert np.array_equal(a[0], b[0]) and a[6].geometry.equals(b[6].geometry)
    assert not np.array_equal(a[0], c[0])


def test_sample_looks_like_a_satellite_scene(tmp_path):
    scene = make_sample(tmp_path, size=256)
    img, truth, transform, crs, nodata, names, labels = load(scene)
    assert img.shape == (6, 256, 256) and img.dtype == np.int16
    assert crs.to_epsg() == 32633 and transform.a == 20 and transform.e == -20
    assert nodata == NODATA and list(names) == ["blue", "green", "red", "nir", "swir1", "swir2"]
    border = (img == NODATA).all(axis=0)
    assert 0.02 < border.mean() < 0.4 and border[:, 0].all()  # a swath edge on the left
    present = set(np.unique(truth[truth > 0]).tolist())
    assert present == set(CLASSES)
    assert set(labels["class_id"]) == set(CLASSES)
    assert labels.crs.to_epsg() == 32633 and labels.geometry.is_valid.all()
    assert dict(zip(labels["class_id"], labels["class_name"], strict=True))[11] == "water"


def test_labels_are_sparse_and_inside_their_class(tmp_path):
    scene = make_sample(tmp_path, size=256)
    img, truth, transform, _, _, _, labels = load(scene)
    burned = rasterize(zip(labels.geometry, labels["class_id"], strict=True), out_shape=truth.shape,
                       transform=transform)  # fmt: skip
    labelled = burned > 0
    assert 0.01 < labelled.mean() < 0.2  # sparse, as real training polygons
    assert (burned[labelled] == truth[labelled]).mean() > 0.97
    assert not (img[:, labelled] == NODATA).any()


def test_classes_overlap_spectrally(tmp_path):
    """A per-pixel nearest-centroid classifier trained on the polygons is good but far from perfect."""
    scene = make_sample(tmp_path, size=256)
    img, truth, transform, _, _, _, labels = load(scene)
    burned = rasterize(zip(labels.geometry, labels["class_id"], strict=True), out_shape=truth.shape,
                       transform=transform)  # fmt: skip
    x = img[:, burned > 0].T.astype(float)
    y = burned[burned > 0]
    codes = np.unique(y)
    centroids = np.stack([x[y == k].mean(axis=0) for k in codes])
    valid = truth > 0
    pixels = img[:, valid].T.astype(float)
    pred = codes[np.argmin(((pixels[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]
    accuracy = (pred == truth[valid]).mean()
    assert 0.6 < accuracy < 0.95, accuracy


def test_town_is_told_by_its_pattern_not_its_pixels(tmp_path):
    """Town pixels alone look like bare soil or grass; only their arrangement (streets, small lots) is distinct."""
    from scipy import ndimage

    scene = make_sample(tmp_path, size=256)
    img, truth, *_ = load(scene)
    red, nir = img[2].astype(float), img[3].astype(float)
    ndvi = (nir - red) / np.maximum(nir + red, 1)
    town = ndimage.binary_erosion(truth == 21, iterations=2)
    assert town.sum() > 200
    ndvi_of = {code: np.median(ndvi[ndimage.binary_erosion(truth == code, iterations=2)]) for code in (31, 71)}
    like_bare = np.abs(ndvi[town] - ndvi_of[31]) < 0.12
    like_grass = np.abs(ndvi[town] - ndvi_of[71]) < 0.12
    # both materials, each like a natural class (lots blur into each other)
    assert like_bare.mean() > 0.1 and like_grass.mean() > 0.1
    local_sd = ndimage.generic_filter(ndvi, np.std, size=3)
    for code in (31, 71, 82):  # homogeneous natural classes: far smoother at the scale of a few pixels
        inside = ndimage.binary_erosion(truth == code, iterations=2)
        assert np.median(local_sd[town]) > 2 * np.median(local_sd[inside]), code
