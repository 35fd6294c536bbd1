"""Training data from a chip set: normalised arrays, class table, weights for imbalance.

Chips are read once into memory (chip sets of pixel classification fit easily: 10,000
chips of 8 x 64 x 64 float32 are 1.3 GB), normalised with the per-band statistics of the
manifest, nodata set to 0 (the band mean after normalisation) and unlabelled pixels kept
at 255. Augmentation then runs on batches, so the data path never starves the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from terralearn.config import UNLABELLED
from terralearn.errors import ChipSetError, ConfigError
from terralearn.io.chips import ChipSet, open_chipset, read_chips


@dataclass
class ChipSetData:
    """What every view of a chip set for training shares: the chip set, class table, bands, normalisation."""

    chipset: ChipSet
    classes: list[dict]
    band_names: list[str]
    mean: np.ndarray
    std: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass
class TrainingData(ChipSetData):
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_ids: list[int]
    val_ids: list[int]
    ignored: list[int] = field(default_factory=list)

    @property
    def class_pixels(self) -> np.ndarray:
        """Labelled training pixels per class (ignored classes excluded)."""
        y = self.y_train[self.y_train != UNLABELLED]
        return np.bincount(y.ravel(), minlength=self.n_classes)[: self.n_classes]

    def chip_weights(self) -> np.ndarray:
        """Sampling weight of each training chip: chips holding rare classes are drawn more often.

        A chip's weight is the largest inverse frequency (relative to the commonest class) of the
        classes it contains, so a chip with the rarest class is drawn about as often, in
        expectation, as one with the commonest class times their frequency ratio (capped at 50).
        """
        counts = self.class_pixels.astype(np.float64)
        inv = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0.0)
        inv = np.minimum(inv, 50.0)
        weights = np.ones(len(self.y_train))
        for i, y in enumerate(self.y_train):
            present = np.unique(y[y != UNLABELLED])
            if len(present):
                weights[i] = inv[present].max()
        return weights


def normalise(images: np.ndarray, mean: np.ndarray, std: np.ndarray, nodata) -> np.ndarray:
    """(x - mean) / std per band as float32; nodata (value or NaN, in any band) becomes 0 in every band."""
    x = images.astype(np.float32)
    invalid = np.isnan(x).any(axis=1)
    if nodata is not None:
        invalid |= (images == nodata).any(axis=1)
    x -= mean[None, :, None, None]
    x /= std[None, :, None, None]
    if invalid.any():
        x = np.where(invalid[:, None], 0.0, x).astype(np.float32)
    return x


def band_statistics(manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    stats = manifest["statistics"]
    mean = np.array([s["mean"] if s["mean"] is not None else 0.0 for s in stats], dtype=np.float32)
    std = np.array([s["std"] if s["std"] else 1.0 for s in stats], dtype=np.float32)
    std[std <= 0] = 1.0
    return mean, std


def resolve_ignored(classes: list[dict], ignore: list[str]) -> list[int]:
    out = []
    for item in ignore:
        match = [c["index"] for c in classes if str(c["value"]) == str(item) or c["name"] == str(item)]
        if not match:
            raise ConfigError(
                f"--ignore-class {item!r} matches no class of the chip set.",
                "Use a class value or name from: " + ", ".join(f"{c['value']} ({c['name']})" for c in classes),
            )
        out += match
    return sorted(set(out))


def open_pixel_chipset(chips: Path) -> ChipSet:
    """The chip set at ``chips``, refused unless it is for pixel classification."""
    chipset = open_chipset(chips)
    m = chipset.manifest
    if m.get("task") != "pixel_classification":
        raise ChipSetError(
            f"The chip set '{chips}' is for {m.get('task')!r}, not pixel classification.",
            "Export Classified Tiles for pixel classification.",
        )
    return chipset


def load_training_data(chips: Path, ignore: list[str] | None = None) -> TrainingData:
    chipset = open_pixel_chipset(chips)
    m = chipset.manifest
    train_ids, val_ids = chipset.indices("train"), chipset.indices("val")
    if not train_ids:
        raise ChipSetError(f"The chip set '{chips}' has no training chips.", "Export with more labels.")
    mean, std = band_statistics(m)
    nodata = None if m.get("nodata_is_nan") else m.get("nodata")
    xt, yt = read_chips(chipset, train_ids)
    xv, yv = read_chips(chipset, val_ids)
    ignored = resolve_ignored(m["classes"], ignore or [])
    for y in (yt, yv):
        if ignored:
            y[np.isin(y, ignored)] = UNLABELLED
    return TrainingData(
        chipset, m["classes"], m["band_names"], mean, std, normalise(xt, mean, std, nodata), yt,
        normalise(xv, mean, std, nodata), yv, train_ids, val_ids, ignored,
    )  # fmt: skip
