"""The random-forest baseline: numpy prediction equals sklearn's, storage is pickle-free and validated."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from sklearn.ensemble import RandomForestClassifier

from terralearn.io.forest_file import load_forest, load_forest_metadata, save_forest
from terralearn.models.forest import (
    ForestArrays,
    forest_from_sklearn,
    from_tensors,
    predict,
    predict_proba,
    to_tensors,
    train_forest,
)

N_FEATURES = 5
N_CLASSES = 4


def gaussian_classes(n: int, seed: int, weights=None, n_classes: int = N_CLASSES, spread: float = 1.2):
    """Overlapping Gaussian classes: (x float32 (n, N_FEATURES), y int64 (n,)); class means fixed by n_classes."""
    means = np.random.default_rng(100 + n_classes).normal(scale=spread, size=(n_classes, N_FEATURES))
    rng = np.random.default_rng(seed)
    y = rng.choice(n_classes, size=n, p=weights)
    x = (means[y] + rng.normal(size=(n, N_FEATURES))).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def fitted():
    """(sklearn model, ForestArrays of it, test x)."""
    x, y = gaussian_classes(3000, seed=0)
    model = RandomForestClassifier(n_estimators=25, max_depth=12, min_samples_leaf=2, random_state=0, n_jobs=1)
    model.fit(x, y)
    x_test, _ = gaussian_classes(4000, seed=1)
    return model, forest_from_sklearn(model, N_CLASSES), x_test


def assert_same_forest(a: ForestArrays, b: ForestArrays) -> None:
    ta, tb = to_tensors(a), to_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and np.array_equal(ta[key], tb[key]), key


def test_predict_proba_matches_sklearn(fitted):
    model, forest, x = fitted
    ours, theirs = predict_proba(forest, x), model.predict_proba(x)
    assert ours.dtype == np.float32 and ours.shape == (len(x), N_CLASSES)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.array_equal(ours.argmax(axis=1), theirs.argmax(axis=1))
    labels = predict(forest, x)
    assert labels.dtype == np.uint8 and np.array_equal(labels, model.predict(x))
    # Chunking changes nothing; float64 input is cast to float32 like sklearn does.
    assert np.array_equal(predict_proba(forest, x, chunk_rows=7), ours)
    assert np.array_equal(predict_proba(forest, x.astype(np.float64)), ours)


def test_values_on_and_next_to_thresholds_split_like_sklearn(fitted):
    """The float64 thresholds are compared in float32 internally: values right at a threshold must still agree."""
    model, forest, _ = fitted
    internal = np.flatnonzero(forest.children_left >= 0)[:300]
    x = np.repeat(gaussian_classes(len(internal), seed=4)[0], 3, axis=0)
    for i, node in enumerate(internal):
        t = np.float32(forest.threshold[node])
        near = [t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf))]
        x[3 * i : 3 * i + 3, forest.feature[node]] = near
    assert np.abs(predict_proba(forest, x) - model.predict_proba(x)).max() < 1e-5
    assert np.array_equal(predict(forest, x), model.predict(x))


def test_missing_values_follow_sklearn():
    x, y = gaussian_classes(2000, seed=5)
    x[np.random.default_rng(6).random(x.shape) < 0.05] = np.nan
    model = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0, n_jobs=1).fit(x, y)
    forest = forest_from_sklearn(model, N_CLASSES)
    x_test, _ = gaussian_classes(1000, seed=7)
    x_test[np.random.default_rng(8).random(x_test.shape) < 0.1] = np.nan
    assert np.abs(predict_proba(forest, x_test) - model.predict_proba(x_test)).max() < 1e-5
    assert np.array_equal(predict(forest, x_test), model.predict(x_test))


def test_train_forest_layout():
    x, y = gaussian_classes(1500, seed=9)
    forest = train_forest(x, y, N_CLASSES, n_trees=8, max_depth=6, n_jobs=1)
    assert forest.n_trees == 8 and forest.n_features == N_FEATURES and forest.n_classes == N_CLASSES
    assert forest.tree_offsets.dtype == np.int64 and forest.tree_offsets[-1] == forest.n_nodes
    assert forest.children_left.dtype == forest.children_right.dtype == forest.feature.dtype == np.int32
    assert forest.threshold.dtype == np.float64 and forest.value.dtype == np.float32
    assert forest.value.shape == (forest.n_nodes, N_CLASSES)
    assert np.allclose(forest.value.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(forest.classes, np.arange(N_CLASSES))
    assert forest.compiled().depths.max() <= 6
    assert (predict(forest, x) == y).mean() > 0.6  # learnable, not trivially separable


def test_absent_class_gets_zero_probability():
    x, y = gaussian_classes(2000, seed=10)
    keep = y != 2
    forest = train_forest(x[keep], y[keep], n_classes=6, n_trees=10, n_jobs=1)
    assert np.array_equal(forest.classes, [0, 1, 3])
    proba = predict_proba(forest, x)
    assert proba.shape == (len(x), 6)
    assert np.all(proba[:, [2, 4, 5]] == 0)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert set(np.unique(predict(forest, x))) <= {0, 1, 3}


def test_single_class_forest_is_all_leaves():
    x, _ = gaussian_classes(200, seed=15)
    forest = train_forest(x, np.full(200, 1), n_classes=3, n_trees=3, n_jobs=1)
    assert forest.n_nodes == 3 and np.array_equal(forest.classes, [1])
    assert np.array_equal(predict_proba(forest, x[:5]), np.tile(np.float32([0, 1, 0]), (5, 1)))
    assert np.array_equal(from_tensors(to_tensors(forest)).value, forest.value)


def test_save_load_round_trip(fitted, tmp_path):
    _, forest, x = fitted
    path = tmp_path / "forest.safetensors"
    save_forest(path, forest, metadata={"band_names": '["red", "nir"]'})
    loaded = load_forest(path)
    assert_same_forest(forest, loaded)
    assert np.array_equal(predict_proba(loaded, x), predict_proba(forest, x))
    meta = load_forest_metadata(path)
    assert meta["band_names"] == '["red", "nir"]' and meta["format"] == "terralearn.forest"
    # A plain safetensors file: every key is a forest tensor, and other keys beside them are ignored.
    tensors = load_file(path)
    assert tensors.keys() == to_tensors(forest).keys() and all(k.startswith("forest.") for k in tensors)
    save_file({**tensors, "other.weight": np.zeros(3, np.float32)}, tmp_path / "pkg.safetensors")
    assert_same_forest(forest, from_tensors(load_file(tmp_path / "pkg.safetensors")))


def test_save_rejects_non_string_metadata(fitted, tmp_path):
    with pytest.raises(ValueError, match="metadata"):
        save_forest(tmp_path / "f.safetensors", fitted[1], metadata={"n": 3})


def _tamper(tensors: dict[str, np.ndarray], case: str) -> str:
    """Break ``tensors`` in place as ``case`` says; return the key the error must name."""
    left, right = tensors["forest.children_left"], tensors["forest.children_right"]
    inner = np.flatnonzero(left[: tensors["forest.tree_offsets"][1]] >= 0)  # split nodes of the first tree
    internal = int(inner[1])  # not the root
    if case == "child out of range":
        left[internal] = 10**6
        return "forest.children_left"
    if case == "child loops back to root":
        right[internal] = 0
        return "forest.children_right"
    if case == "two parents":
        left[internal] = right[0]  # the root's right child, which comes after this node
        return "forest.children_left"
    if case == "leaf with one child":
        leaf = int(np.flatnonzero(left < 0)[0])
        right[leaf] = leaf + 1
        return "forest.children_right"
    if case == "short threshold":
        tensors["forest.threshold"] = tensors["forest.threshold"][:-1]
        return "forest.threshold"
    if case == "feature out of range":
        tensors["forest.feature"][internal] = N_FEATURES
        return "forest.feature"
    if case == "offsets do not cover nodes":
        tensors["forest.tree_offsets"][-1] -= 1
        return "forest.tree_offsets"
    if case == "value wrong width":
        tensors["forest.value"] = tensors["forest.value"][:, :-1]
        return "forest.value"
    if case == "value not a probability":
        tensors["forest.value"][0, 0] = np.nan
        return "forest.value"
    if case == "class out of range":
        tensors["forest.classes"][-1] = N_CLASSES
        return "forest.classes"
    if case == "float children":
        tensors["forest.children_left"] = left.astype(np.float32)
        return "forest.children_left"
    if case == "scalar not one value":
        tensors["forest.n_features"] = np.array([5, 6], dtype=np.int64)
        return "forest.n_features"
    if case == "missing key":
        del tensors["forest.feature"]
        return "forest.feature"
    if case == "unknown key":
        tensors["forest.extra"] = np.zeros(1)
        return "forest.extra"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "child out of range",
        "child loops back to root",
        "two parents",
        "leaf with one child",
        "short threshold",
        "feature out of range",
        "offsets do not cover nodes",
        "value wrong width",
        "value not a probability",
        "class out of range",
        "float children",
        "scalar not one value",
        "missing key",
        "unknown key",
    ],
)
def test_from_tensors_rejects_tampered_tensors(fitted, case, tmp_path):
    tensors = {k: v.copy() for k, v in to_tensors(fitted[1]).items()}
    key = _tamper(tensors, case)
    with pytest.raises(ValueError, match=key):
        from_tensors(tensors)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, path)
    with pytest.raises(ValueError, match=key):
        load_forest(path)


def test_balanced_class_weight_raises_rare_class_recall():
    weights = [0.47, 0.47, 0.06]
    x, y = gaussian_classes(6000, seed=11, weights=weights, n_classes=3, spread=0.8)
    x_test, y_test = gaussian_classes(6000, seed=12, weights=weights, n_classes=3, spread=0.8)
    kwargs = dict(n_trees=15, max_depth=6, min_samples_leaf=20, n_jobs=1)
    plain = train_forest(x, y, 3, **kwargs)
    balanced = train_forest(x, y, 3, class_weight="balanced", **kwargs)
    rare = y_test == 2

    def recall(forest):
        return (predict(forest, x_test[rare]) == 2).mean()

    assert recall(balanced) > recall(plain) + 0.1
    with pytest.raises(ValueError, match="class_weight"):
        train_forest(x, y, 3, class_weight="weird", **kwargs)


def test_max_samples_subsampling_is_seeded():
    x, y = gaussian_classes(5000, seed=13)
    kwargs = dict(n_trees=4, max_depth=8, max_samples=800)
    a = train_forest(x, y, N_CLASSES, seed=3, n_jobs=1, **kwargs)
    b = train_forest(x, y, N_CLASSES, seed=3, n_jobs=2, **kwargs)
    c = train_forest(x, y, N_CLASSES, seed=4, n_jobs=1, **kwargs)
    assert_same_forest(a, b)
    assert a.n_nodes != c.n_nodes or not np.array_equal(a.threshold, c.threshold)
    # With 800 rows and min_samples_leaf=2 no tree can have more than 800 leaves.
    leaves_per_tree = np.add.reduceat((a.children_left < 0).astype(int), a.tree_offsets[:-1])
    assert leaves_per_tree.max() <= 800 // 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_classes=4, y_shift=4), "y must lie"),
        (dict(n_classes=0), "n_classes"),
        (dict(n_classes=300), "n_classes"),
        (dict(n_classes=4, n_trees=0), "n_trees"),
    ],
)
def test_train_forest_rejects_bad_arguments(kwargs, match):
    x, y = gaussian_classes(100, seed=14)
    y = y + kwargs.pop("y_shift", 0)
    with pytest.raises(ValueError, match=match):
        train_forest(x, y, **kwargs)


def test_predict_rejects_wrong_feature_count(fitted):
    _, forest, x = fitted
    with pytest.raises(ValueError, match="shape"):
        predict_proba(forest, x[:, :-1])
    with pytest.raises(ValueError, match="shape"):
        predict(forest, x[0])
