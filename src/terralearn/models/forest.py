"""Per-pixel random-forest baseline, stored without pickle and predicted in pure numpy.

Why: a model package may come from anyone, and unpickling a file runs whatever code it names. So a
fitted ``sklearn.ensemble.RandomForestClassifier`` is never pickled. Its trees are flattened into plain
numpy arrays (:class:`ForestArrays`) that go into a safetensors file (raw tensors plus a string-to-string
JSON header; loading it never unpickles), and prediction is a vectorised numpy walk over those arrays,
so loading and applying a model needs neither pickle nor scikit-learn (which is only used to train).

Layout: the trees are concatenated; node indices are local to their tree, as in sklearn's ``tree_``::

    tree_offsets        int64   (n_trees + 1,)  tree t owns nodes tree_offsets[t] : tree_offsets[t + 1]
    children_left       int32   (n_nodes,)      local index of the left child; -1 at leaves
    children_right      int32   (n_nodes,)      local index of the right child; -1 at leaves
    feature             int32   (n_nodes,)      split feature; -2 at leaves
    threshold           float64 (n_nodes,)      go left when x[feature] <= threshold (float64: exact parity)
    missing_go_to_left  uint8   (n_nodes,)      where a NaN goes at this split (sklearn's rule); 0 at leaves
    value               float32 (n_nodes, n_classes)  class probabilities of the node (rows sum to 1)
    classes             int64   (n_fitted,)     class indices present when training (others have probability 0)
    n_features, n_classes  int64 scalars

In a safetensors file each array is stored under ``forest.<name>`` (scalars as 1-element arrays).
:func:`from_tensors` checks every shape, dtype and index before the arrays are used: each node other than a
root is the child of exactly one node of its own tree, and children come after their parent (as sklearn's
depth-first builder makes them), so every path through a tree ends at a leaf however the file was edited.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: Prefix of the safetensors keys of a forest.
PREFIX = "forest."
#: Format version written to the safetensors metadata by :func:`terralearn.io.forest_file.save_forest`.
FORMAT_VERSION = "1"
#: Rows predicted at a time: bounds the temporary memory of :func:`predict_proba` (a few MB per chunk).
CHUNK_ROWS = 65_536

_LEAF = -1
_UNDEFINED_FEATURE = -2
_NODE_ARRAYS = ("children_left", "children_right", "feature", "threshold", "missing_go_to_left")
_ARRAY_KEYS = (*_NODE_ARRAYS, "value", "tree_offsets", "classes")
_SCALAR_KEYS = ("n_features", "n_classes")
_CLASS_WEIGHTS = (None, "balanced", "balanced_subsample")


@dataclass(frozen=True)
class _Compiled:
    """Arrays shaped for the numpy walk (built once per forest, never stored).

    A node ``i`` is addressed as ``2 * i`` so that the next node is one lookup: ``next2[2 * i + go_left]``.
    Leaves point to themselves, so a row that reaches a leaf early stays there for the remaining steps.
    """

    next2: np.ndarray  # intp (2 * n_nodes,): [2i] = 2 * global right child, [2i + 1] = 2 * global left child
    feature2: np.ndarray  # intp (2 * n_nodes,): split feature of node i at 2i and 2i + 1 (0 at leaves)
    threshold2: np.ndarray  # float32 (2 * n_nodes,): largest float32 <= the float64 threshold (same decisions)
    missing_left2: np.ndarray  # bool (2 * n_nodes,): where a NaN goes
    roots2: np.ndarray  # intp (n_trees,): 2 * global index of each root
    depths: np.ndarray  # intp (n_trees,): number of splits on the longest path of each tree


@dataclass(eq=False)
class ForestArrays:
    """The trees of a fitted random forest as flat numpy arrays (see the module docstring for the layout)."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_go_to_left: np.ndarray
    value: np.ndarray
    tree_offsets: np.ndarray
    classes: np.ndarray
    n_features: int
    n_classes: int
    _compiled: _Compiled | None = field(default=None, init=False, repr=False)

    @property
    def n_trees(self) -> int:
        return len(self.tree_offsets) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.children_left)

    def compiled(self) -> _Compiled:
        """The prediction arrays, built on first use and cached (the forest must not be mutated afterwards)."""
        if self._compiled is None:
            self._compiled = _compile(self)
        return self._compiled


# ----------------------------------------------------------------------------------------------- training


def train_forest(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    n_trees: int = 100,
    max_depth: int | None = 20,
    min_samples_leaf: int = 2,
    class_weight: str | None = None,
    max_samples: int | None = 200_000,
    seed: int = 0,
    n_jobs: int = -1,
) -> ForestArrays:
    """Fit a random forest on pixels ``x`` (n_samples, n_features) with class indices ``y`` in 0..n_classes-1.

    When there are more than ``max_samples`` rows, a random subset of that many (drawn with ``seed``) is used.
    ``class_weight`` may be None, ``"balanced"`` or ``"balanced_subsample"`` (sklearn's meanings). The result
    depends only on the inputs and ``seed`` (not on ``n_jobs``). NaN features are allowed (sklearn's rules).
    """
    from sklearn.ensemble import RandomForestClassifier  # only training needs scikit-learn

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must be a non-empty 2-D array (n_samples, n_features), got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    _check_n_classes(n_classes)
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y must lie in 0..{n_classes - 1} (n_classes={n_classes}), got {y.min()}..{y.max()}")
    if n_trees < 1:
        raise ValueError(f"n_trees must be at least 1, got {n_trees}")
    if max_depth is not None and max_depth < 1:
        raise ValueError(f"max_depth must be at least 1 or None, got {max_depth}")
    if min_samples_leaf < 1:
        raise ValueError(f"min_samples_leaf must be at least 1, got {min_samples_leaf}")
    if class_weight not in _CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be one of {_CLASS_WEIGHTS}, got {class_weight!r}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be at least 1 or None, got {max_samples}")

    rng = np.random.default_rng(seed)
    if max_samples is not None and x.shape[0] > max_samples:
        rows = np.sort(rng.choice(x.shape[0], size=max_samples, replace=False))
        x, y = x[rows], y[rows]
    model = RandomForestClassifier(
        n_estimators=n_trees,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        class_weight=class_weight,
        n_jobs=n_jobs,
        random_state=int(rng.integers(0, 2**31 - 1)),
    )
    model.fit(x, y)
    return forest_from_sklearn(model, n_classes)


def forest_from_sklearn(model, n_classes: int) -> ForestArrays:
    """Flatten a fitted ``RandomForestClassifier`` (single output, integer classes in 0..n_classes-1)."""
    _check_n_classes(n_classes)
    if getattr(model, "n_outputs_", 1) != 1:
        raise ValueError(f"only single-output forests are supported, got n_outputs_={model.n_outputs_}")
    classes = np.asarray(model.classes_)
    if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0 or classes.max() >= n_classes:
        raise ValueError(f"the forest's classes must be integers in 0..{n_classes - 1}, got {classes.tolist()}")
    classes = classes.astype(np.int64)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*_NODE_ARRAYS, "value")}
    sizes = []
    for est in model.estimators_:
        t = est.tree_
        leaf = t.children_left == _LEAF
        parts["children_left"].append(t.children_left.astype(np.int32))
        parts["children_right"].append(t.children_right.astype(np.int32))
        parts["feature"].append(np.where(leaf, _UNDEFINED_FEATURE, t.feature).astype(np.int32))
        parts["threshold"].append(t.threshold.astype(np.float64))
        parts["missing_go_to_left"].append(np.where(leaf, 0, t.missing_go_to_left).astype(np.uint8))
        raw = np.asarray(t.value, dtype=np.float64)[:, 0, :]  # (n_nodes, n_fitted): fractions (>=1.4) or counts
        total = raw.sum(axis=1, keepdims=True)
        value = np.zeros((t.node_count, n_classes), dtype=np.float32)
        value[:, classes] = raw / np.where(total > 0, total, 1.0)  # sklearn's rule: all-zero rows stay zero
        parts["value"].append(value)
        sizes.append(t.node_count)
    forest = ForestArrays(
        **{k: np.concatenate(v) for k, v in parts.items()},
        tree_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        classes=classes,
        n_features=int(model.n_features_in_),
        n_classes=int(n_classes),
    )
    _validate(forest)
    return forest


def _check_n_classes(n_classes: int) -> None:
    if not 1 <= n_classes <= 256:
        raise ValueError(f"n_classes must be in 1..256 (predictions are uint8), got {n_classes}")


# ----------------------------------------------------------------------------------------------- prediction


def predict_proba(forest: ForestArrays, x: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Class probabilities (n, n_classes) float32: the mean over trees of the leaf each row reaches.

    ``x`` is (n, n_features), cast to float32 as sklearn does. Agrees with sklearn's ``predict_proba`` to
    float32 rounding; rows are processed ``chunk_rows`` at a time so memory stays bounded for whole rasters.
    A NaN feature follows sklearn's ``missing_go_to_left`` of the split.
    """
    x = _check_x(forest, x, chunk_rows)
    comp = forest.compiled()
    value = np.ascontiguousarray(forest.value, dtype=np.float32)
    out = np.empty((x.shape[0], forest.n_classes), dtype=np.float32)
    for start in range(0, x.shape[0], chunk_rows):
        xc = np.ascontiguousarray(x[start : start + chunk_rows], dtype=np.float32)
        has_nan = np.isnan(xc).any(axis=1)
        if not has_nan.any():
            out[start : start + len(xc)] = _proba_chunk(comp, value, xc, nan=False)
            continue
        block = out[start : start + len(xc)]
        nan_rows, ok_rows = np.flatnonzero(has_nan), np.flatnonzero(~has_nan)
        block[nan_rows] = _proba_chunk(comp, value, xc[nan_rows], nan=True)  # the slower walk, only where needed
        if len(ok_rows):
            block[ok_rows] = _proba_chunk(comp, value, xc[ok_rows], nan=False)
    return out


def predict(forest: ForestArrays, x: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Most probable class index of each row, (n,) uint8: the argmax of :func:`predict_proba`.

    Equals sklearn's ``predict`` except where two classes tie exactly in exact arithmetic: sklearn then picks
    by float64 rounding noise and this by float32 rounding (3 rows in 1,000,000 with 100 depth-20 trees).
    """
    x = _check_x(forest, x, chunk_rows)
    out = np.empty(x.shape[0], dtype=np.uint8)
    for start in range(0, x.shape[0], chunk_rows):
        proba = predict_proba(forest, x[start : start + chunk_rows], chunk_rows)
        out[start : start + len(proba)] = proba.argmax(axis=1)
    return out


def _check_x(forest: ForestArrays, x: np.ndarray, chunk_rows: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != forest.n_features:
        raise ValueError(f"x must have shape (n, {forest.n_features}), got {x.shape}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    return x


def _proba_chunk(comp: _Compiled, value: np.ndarray, xc: np.ndarray, nan: bool) -> np.ndarray:
    """Mean over trees of the leaf values reached by the rows of ``xc`` (C-contiguous float32)."""
    n, n_features = xc.shape
    flat = xc.reshape(-1)
    row_base = np.arange(n, dtype=np.intp) * n_features
    acc = np.zeros((n, value.shape[1]), dtype=np.float32)
    # Preallocated buffers; mode="wrap" skips numpy's bounds-error path (indices are validated, and "wrap"
    # could never read outside the arrays anyway).
    node, index = np.empty(n, dtype=np.intp), np.empty(n, dtype=np.intp)
    xv, thr = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.float32)
    # go_left is written as bool into the low byte of each intp of step (whose other bytes stay 0), so
    # ``node += step`` needs no bool-to-int cast (the slowest part of a step otherwise).
    step = np.zeros(n, dtype=np.intp)
    low = 0 if sys.byteorder == "little" else step.itemsize - 1
    go_left = step.view(np.bool_)[low :: step.itemsize]
    nan_left = np.empty(n, dtype=bool)
    leaf_value = np.empty_like(acc)
    for root2, depth in zip(comp.roots2.tolist(), comp.depths.tolist(), strict=True):
        node.fill(root2)
        for _ in range(depth):
            np.take(comp.feature2, node, out=index, mode="wrap")
            index += row_base
            np.take(flat, index, out=xv, mode="wrap")
            np.take(comp.threshold2, node, out=thr, mode="wrap")
            np.less_equal(xv, thr, out=go_left)
            if nan:
                np.isnan(xv, out=nan_left)
                nan_left &= np.take(comp.missing_left2, node, mode="wrap")
                go_left |= nan_left
            node += step
            np.take(comp.next2, node, out=node, mode="wrap")
        node >>= 1
        np.take(value, node, axis=0, out=leaf_value, mode="wrap")
        acc += leaf_value
    acc /= len(comp.roots2)
    return acc


def _compile(forest: ForestArrays) -> _Compiled:
    offsets = forest.tree_offsets.astype(np.intp)
    n_nodes = forest.n_nodes
    base = np.repeat(offsets[:-1], np.diff(offsets))  # global index of each node's root
    idx = np.arange(n_nodes, dtype=np.intp)
    leaf = forest.children_left == _LEAF
    left = np.where(leaf, idx, forest.children_left + base)
    right = np.where(leaf, idx, forest.children_right + base)
    next2 = np.empty(2 * n_nodes, dtype=np.intp)
    next2[0::2] = 2 * right
    next2[1::2] = 2 * left
    # x (float32) <= t (float64)  <=>  x <= the largest float32 not above t: compare in float32, same answers.
    threshold = np.where(leaf, 0.0, forest.threshold)
    with np.errstate(over="ignore"):
        thr32 = threshold.astype(np.float32)
    above = thr32.astype(np.float64) > threshold
    thr32[above] = np.nextafter(thr32[above], np.float32(-np.inf))
    # Depth of every node, level by level over all trees at once (each node has exactly one parent).
    depth = np.zeros(n_nodes, dtype=np.intp)
    frontier = offsets[:-1]
    level = 0
    while frontier.size:
        depth[frontier] = level
        frontier = frontier[~leaf[frontier]]
        frontier = np.concatenate([left[frontier], right[frontier]])
        level += 1
    return _Compiled(
        next2=next2,
        feature2=np.repeat(np.where(leaf, 0, forest.feature).astype(np.intp), 2),
        threshold2=np.repeat(thr32, 2),
        missing_left2=np.repeat(forest.missing_go_to_left.astype(bool) & ~leaf, 2),
        roots2=2 * offsets[:-1],
        depths=np.maximum.reduceat(depth, offsets[:-1]),
    )


# ----------------------------------------------------------------------------------------------- storage


def to_tensors(forest: ForestArrays) -> dict[str, np.ndarray]:
    """The forest as ``forest.<name>`` -> C-contiguous array, ready for ``safetensors.numpy.save_file``."""
    return {
        f"{PREFIX}children_left": np.ascontiguousarray(forest.children_left, dtype=np.int32),
        f"{PREFIX}children_right": np.ascontiguousarray(forest.children_right, dtype=np.int32),
        f"{PREFIX}feature": np.ascontiguousarray(forest.feature, dtype=np.int32),
        f"{PREFIX}threshold": np.ascontiguousarray(forest.threshold, dtype=np.float64),
        f"{PREFIX}missing_go_to_left": np.ascontiguousarray(forest.missing_go_to_left, dtype=np.uint8),
        f"{PREFIX}value": np.ascontiguousarray(forest.value, dtype=np.float32),
        f"{PREFIX}tree_offsets": np.ascontiguousarray(forest.tree_offsets, dtype=np.int64),
        f"{PREFIX}classes": np.ascontiguousarray(forest.classes, dtype=np.int64),
        f"{PREFIX}n_features": np.array([forest.n_features], dtype=np.int64),
        f"{PREFIX}n_classes": np.array([forest.n_classes], dtype=np.int64),
    }


def from_tensors(tensors: Mapping[str, np.ndarray]) -> ForestArrays:
    """Rebuild a forest from :func:`to_tensors` output, checking everything; raise ValueError naming a bad key.

    Keys without the ``forest.`` prefix are ignored (a package may store other tensors beside the forest).
    """
    known = {PREFIX + k for k in (*_ARRAY_KEYS, *_SCALAR_KEYS)}
    unknown = sorted(k for k in tensors if k.startswith(PREFIX) and k not in known)
    if unknown:
        raise ValueError(f"unexpected forest tensor(s) {unknown}: written by a newer or different format?")
    missing = sorted(k for k in known if k not in tensors)
    if missing:
        raise ValueError(f"missing forest tensor(s) {missing}")

    def scalar(name: str) -> int:
        arr = np.asarray(tensors[PREFIX + name])
        if arr.size != 1 or arr.ndim > 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"'{PREFIX}{name}' must be one integer, got dtype {arr.dtype} shape {arr.shape}")
        return int(arr.reshape(-1)[0])

    def integers(name: str, ndim: int = 1) -> np.ndarray:
        arr = np.asarray(tensors[PREFIX + name])
        if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"'{PREFIX}{name}' must be a {ndim}-D integer array, got {arr.dtype} {arr.shape}")
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"'{PREFIX}{name}' holds values too large for an index")
        return arr.astype(np.int64)

    def floats(name: str, ndim: int) -> np.ndarray:
        arr = np.asarray(tensors[PREFIX + name])
        if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"'{PREFIX}{name}' must be a {ndim}-D float array, got {arr.dtype} {arr.shape}")
        return arr

    n_features, n_classes = scalar("n_features"), scalar("n_classes")
    if n_features < 1:
        raise ValueError(f"'{PREFIX}n_features' must be at least 1, got {n_features}")
    if not 1 <= n_classes <= 256:
        raise ValueError(f"'{PREFIX}n_classes' must be in 1..256, got {n_classes}")
    raw = {
        "children_left": integers("children_left"),
        "children_right": integers("children_right"),
        "feature": integers("feature"),
        "threshold": floats("threshold", 1),
        "missing_go_to_left": integers("missing_go_to_left"),
        "value": floats("value", 2),
        "tree_offsets": integers("tree_offsets"),
        "classes": integers("classes"),
    }
    _validate_raw(raw, n_features, n_classes)
    return ForestArrays(
        children_left=raw["children_left"].astype(np.int32),
        children_right=raw["children_right"].astype(np.int32),
        feature=raw["feature"].astype(np.int32),
        threshold=raw["threshold"].astype(np.float64),
        missing_go_to_left=raw["missing_go_to_left"].astype(np.uint8),
        value=raw["value"].astype(np.float32),
        tree_offsets=raw["tree_offsets"].astype(np.int64),
        classes=raw["classes"].astype(np.int64),
        n_features=n_features,
        n_classes=n_classes,
    )


def _validate(forest: ForestArrays) -> None:
    raw = {k: getattr(forest, k) for k in _ARRAY_KEYS}
    _validate_raw(raw, forest.n_features, forest.n_classes)


def _validate_raw(a: Mapping[str, np.ndarray], n_features: int, n_classes: int) -> None:
    """Check shapes and index ranges so that the walk in :func:`predict_proba` is safe and terminates."""

    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"'{PREFIX}{name}' is invalid: {why}")

    offsets = np.asarray(a["tree_offsets"]).astype(np.int64)
    n_nodes = len(a["children_left"])
    if offsets.ndim != 1 or len(offsets) < 2:
        raise bad("tree_offsets", f"needs n_trees + 1 >= 2 entries, got shape {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != n_nodes or np.any(np.diff(offsets) < 1):
        raise bad("tree_offsets", f"must rise strictly from 0 to n_nodes={n_nodes}")
    if n_nodes >= 2**31:
        raise bad("children_left", f"too many nodes ({n_nodes})")
    for name in _NODE_ARRAYS:
        if np.shape(a[name]) != (n_nodes,):
            raise bad(name, f"expected shape ({n_nodes},) like children_left, got {np.shape(a[name])}")
    if np.shape(a["value"]) != (n_nodes, n_classes):
        raise bad("value", f"expected shape ({n_nodes}, {n_classes}), got {np.shape(a['value'])}")

    left = np.asarray(a["children_left"]).astype(np.int64)
    right = np.asarray(a["children_right"]).astype(np.int64)
    sizes = np.diff(offsets)
    base = np.repeat(offsets[:-1], sizes)
    local = np.arange(n_nodes, dtype=np.int64) - base
    size = np.repeat(sizes, sizes)
    leaf = left == _LEAF
    if np.any((right == _LEAF) != leaf):
        raise bad("children_right", "must be -1 exactly where children_left is -1 (leaves)")
    for name, child in (("children_left", left), ("children_right", right)):
        c, lo, hi = child[~leaf], local[~leaf], size[~leaf]
        if np.any(c <= lo) or np.any(c >= hi):
            raise bad(name, "a child index is out of its tree's range or not after its parent")
    refs = np.bincount(np.concatenate([left[~leaf] + base[~leaf], right[~leaf] + base[~leaf]]), minlength=n_nodes)
    expected = np.ones(n_nodes, dtype=np.int64)
    expected[offsets[:-1]] = 0
    if not np.array_equal(refs, expected):
        raise bad("children_left", "every node but a root must be the child of exactly one node")
    feature = np.asarray(a["feature"])
    if np.any(feature[~leaf] < 0) or np.any(feature[~leaf] >= n_features):
        raise bad("feature", f"a split feature is outside 0..{n_features - 1}")
    threshold = np.asarray(a["threshold"])
    if np.any(np.isnan(threshold[~leaf])):
        raise bad("threshold", "a split threshold is NaN")
    missing = np.asarray(a["missing_go_to_left"])
    if np.any((missing != 0) & (missing != 1)):
        raise bad("missing_go_to_left", "values must be 0 or 1")
    value = np.asarray(a["value"])
    if not np.all(np.isfinite(value)) or np.any(value < 0) or np.any(value > 1):
        raise bad("value", "probabilities must be finite and within 0..1")
    classes = np.asarray(a["classes"])
    if classes.ndim != 1 or len(classes) < 1 or len(classes) > n_classes:
        raise bad("classes", f"needs 1..{n_classes} entries, got shape {classes.shape}")
    if classes[0] < 0 or classes[-1] >= n_classes or np.any(np.diff(classes) < 1):
        raise bad("classes", f"must rise strictly within 0..{n_classes - 1}")
