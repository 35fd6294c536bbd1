"""Area-adjusted accuracy and class areas with confidence intervals (pure numpy, no file access).

Follows Olofsson et al. (2014), *Good practices for estimating area and assessing accuracy of land
change*, Remote Sensing of Environment 148: 42-57, with the map classes as the strata of a stratified
random sample. The estimators (numbers are the paper's equations):

- stratum weight of map class i: ``W_i = A_i / A`` (mapped area share);
- estimated area proportions ``p_ij = W_i n_ij / n_i.`` (eq. 4; i = map class, j = reference class);
- overall accuracy ``O = sum_j p_jj`` (eq. 1), user's accuracy ``U_i = p_ii / p_i.`` (eq. 2), producer's
  accuracy ``P_j = p_jj / p_.j`` (eq. 3), with the variances of eqs. 5-7;
- area proportion of reference class k ``p_.k = sum_i W_i n_ik / n_i.`` (eq. 9), its standard error (eq. 10)
  and the area ``A_k = A p_.k`` with ``SE(A_k) = A SE(p_.k)`` (eq. 11).

Confidence intervals are ``z * SE`` (z = 1.96 for 95 %).

**Orientation.** Olofsson's tables have the map classes as rows. TerraLearn's confusion matrices have the
*reference* class as rows and the *map* (predicted) class as columns (see :mod:`terralearn.geo.metrics`), and so
does everything here: the input ``confusion[r, m]`` and the output ``proportions[r, m]``. Per-class arrays are
indexed by class: user's accuracy by map class, producer's accuracy and areas by reference class.

A map class with mapped area but no sample (``n_i. = 0``) cannot be estimated; its stratum is left out (its
weight is not distributed over the reference classes, so the estimated proportions sum to the sampled share
of the map, reported as ``sampled_fraction``) and it is listed in ``unsampled``. A standard error needs at
least two samples in each stratum that enters it; with one, it is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terralearn.geo.numbers import finite

#: Two-sided 95 % normal quantile, rounded as in Olofsson et al. (2014) and most GIS tools.
Z95 = 1.96


@dataclass(frozen=True)
class AreaAdjusted:
    """Area-adjusted estimates. ``ci`` fields are half-widths (estimate ± ci)."""

    map_pixels: np.ndarray  # (K,) mapped pixels per map class
    samples: np.ndarray  # (K,) reference samples (pixels) per map class, n_i.
    weights: np.ndarray  # (K,) W_i
    proportions: np.ndarray  # (K, K) p: rows = reference class, columns = map class
    overall_accuracy: float
    overall_se: float
    users_accuracy: np.ndarray  # (K,) per map class
    users_se: np.ndarray
    producers_accuracy: np.ndarray  # (K,) per reference class
    producers_se: np.ndarray
    area_proportion: np.ndarray  # (K,) per reference class, p_.k
    area_proportion_se: np.ndarray
    pixel_area: float  # map units² per pixel
    unsampled: tuple[int, ...]  # map classes with mapped area but no sample
    sampled_fraction: float  # share of the mapped area in sampled strata
    z: float = Z95

    @property
    def total_pixels(self) -> int:
        return int(self.map_pixels.sum())

    @property
    def overall_ci(self) -> float:
        return self.z * self.overall_se

    @property
    def users_ci(self) -> np.ndarray:
        return self.z * self.users_se

    @property
    def producers_ci(self) -> np.ndarray:
        return self.z * self.producers_se

    @property
    def area_pixels(self) -> np.ndarray:
        """Estimated area of each reference class, in pixels (eq. 11)."""
        return self.total_pixels * self.area_proportion

    @property
    def area_pixels_ci(self) -> np.ndarray:
        return self.z * self.total_pixels * self.area_proportion_se

    @property
    def area(self) -> np.ndarray:
        """Estimated area of each reference class, in map units² (pixels x pixel area)."""
        return self.area_pixels * self.pixel_area

    @property
    def area_ci(self) -> np.ndarray:
        return self.area_pixels_ci * self.pixel_area

    def as_dict(self, names: list[str] | None = None) -> dict:
        """A JSON-ready dict (NaN as None) with one row per class."""
        k = len(self.map_pixels)
        names = names or [str(i) for i in range(k)]
        per_class = [
            {
                "index": i,
                "name": names[i],
                "map_pixels": int(self.map_pixels[i]),
                "samples": int(self.samples[i]),
                "weight": finite(self.weights[i]),
                "users_accuracy": finite(self.users_accuracy[i]),
                "users_accuracy_ci": finite(self.users_ci[i]),
                "producers_accuracy": finite(self.producers_accuracy[i]),
                "producers_accuracy_ci": finite(self.producers_ci[i]),
                "area_proportion": finite(self.area_proportion[i]),
                "area_proportion_ci": finite(self.z * self.area_proportion_se[i]),
                "area_pixels": finite(self.area_pixels[i]),
                "area_pixels_ci": finite(self.area_pixels_ci[i]),
                "area": finite(self.area[i]),
                "area_ci": finite(self.area_ci[i]),
            }
            for i in range(k)
        ]
        return {
            "method": "Olofsson et al. (2014): stratified estimators, map classes as strata",
            "confidence": 0.95 if abs(self.z - Z95) < 1e-9 else None,
            "z": self.z,
            "overall_accuracy": finite(self.overall_accuracy),
            "overall_accuracy_se": finite(self.overall_se),
            "overall_accuracy_ci": finite(self.overall_ci),
            "pixel_area": self.pixel_area,
            "total_pixels": self.total_pixels,
            "sampled_fraction": finite(self.sampled_fraction),
            "unsampled_map_classes": [names[i] for i in self.unsampled],
            "proportions": [[finite(v) for v in row] for row in self.proportions],
            "proportions_axes": "rows = reference class, columns = map class",
            "per_class": per_class,
        }


def area_adjusted_accuracy(
    confusion: np.ndarray, map_pixels: np.ndarray, pixel_area: float = 1.0, z: float = Z95
) -> AreaAdjusted:
    """Olofsson et al. (2014) estimates from a K x K sample confusion matrix and the mapped pixels per class.

    ``confusion[r, m]``: reference samples of class r mapped as class m (rows = reference, columns = map, as
    in :func:`terralearn.geo.metrics.confusion_matrix`). ``map_pixels[m]``: pixels mapped as class m over the
    whole map. ``pixel_area``: area of one pixel in map units² (areas in pixels are always given too).
    """
    cm = np.asarray(confusion, dtype=np.float64)
    mapped = np.asarray(map_pixels, dtype=np.float64).ravel()
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != mapped.size:
        raise ValueError(f"confusion must be K x K and map_pixels of length K; got {cm.shape} and {mapped.size}")
    if (cm < 0).any() or (mapped < 0).any():
        raise ValueError("confusion counts and map pixel counts must not be negative")
    n = cm.T  # Olofsson's orientation: n[i, j], i = map class (stratum), j = reference class
    n_i = n.sum(axis=1)
    total = mapped.sum()
    w = mapped / total if total > 0 else np.zeros_like(mapped)
    sampled = n_i > 0
    unsampled = tuple(int(i) for i in np.flatnonzero((w > 0) & ~sampled))

    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(sampled[:, None], n / np.where(sampled, n_i, 1)[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * share  # eq. 4
        diag = np.diag(p)
        p_row = p.sum(axis=1)  # p_i. (= W_i for sampled strata)
        p_col = p.sum(axis=0)  # p_.j
        users = np.where(sampled, np.diag(share), np.nan)  # eq. 2 (= n_ii / n_i.)
        producers = np.where(p_col > 0, diag / np.where(p_col > 0, p_col, 1), np.nan)  # eq. 3
        overall = float(diag.sum())  # eq. 1

        # Per-stratum variance factor 1 / (n_i. - 1); NaN where a stratum has a single sample.
        inv = np.where(n_i > 1, 1.0 / np.where(n_i > 1, n_i - 1, 1), np.nan)
        inv = np.where(sampled, inv, 0.0)  # unsampled strata are left out (contribute nothing)
        users_var = np.where(sampled, users * (1 - users) * inv, np.nan)  # eq. 6
        overall_var = float(np.sum(np.where(sampled & (w > 0), w**2 * users_var, 0.0)))  # eq. 5 (NaN if n_i. = 1)

        # eq. 10: V(p_.k) = sum_i W_i² share_ik (1 - share_ik) / (n_i. - 1)
        terms = (w**2)[:, None] * share * (1 - share) * inv[:, None]  # (map i, reference k)
        terms = np.where((w > 0)[:, None], terms, 0.0)
        area_var = terms.sum(axis=0)

        # eq. 7 in proportions: V(P_j) = [W_j² (1-P_j)² U_j (1-U_j)/(n_j.-1) + P_j² sum_{i≠j} terms_ij] / p_.j²
        off = area_var - np.diag(terms)
        own = np.where(sampled & (w > 0), w**2 * (1 - producers) ** 2 * users * (1 - users) * inv, 0.0)
        prod_var = np.where(p_col > 0, (own + producers**2 * off) / np.where(p_col > 0, p_col, 1) ** 2, np.nan)

    return AreaAdjusted(
        map_pixels=mapped.astype(np.int64),
        samples=n_i.astype(np.int64),
        weights=w,
        proportions=p.T.copy(),  # back to rows = reference, columns = map
        overall_accuracy=overall if sampled.any() else float("nan"),
        overall_se=float(np.sqrt(overall_var)) if sampled.any() else float("nan"),
        users_accuracy=users,
        users_se=np.sqrt(users_var),
        producers_accuracy=producers,
        producers_se=np.sqrt(prod_var),
        area_proportion=p_col,
        area_proportion_se=np.sqrt(area_var),
        pixel_area=float(pixel_area),
        unsampled=unsampled,
        sampled_fraction=float(p_row.sum()),
        z=float(z),
    )
