"""The built-in sample scene: a seeded, realistic small multispectral land-cover scene.

A 6-band (blue, green, red, NIR, SWIR1, SWIR2) surface-reflectance image (x 10000, int16)
in UTM zone 33N with 20 m pixels and a nodata border like the edge of a satellite swath.
The landscape has structure a model can learn from: a river and lakes, forest patches,
rectangular crop fields in different growth stages (some bare), grassland, a town with
texture, and roads. Spectra overlap between classes (bare fields vs barren, young crops
vs grassland, town vs bare soil), so a per-pixel threshold is not enough.

Training labels are sparse polygons drawn inside homogeneous areas, as an analyst would,
with NLCD-style integer codes (11 water, 21 developed, 31 barren, 41 forest, 71 grassland,
82 cropland) and a class-name field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from scipy import ndimage

from terralearn.geo.grid import Grid
from terralearn.io.raster import write_raster
from terralearn.io.vector import write_vector

NODATA = -9999
BAND_NAMES = ["blue", "green", "red", "nir", "swir1", "swir2"]

# code: (name, mean spectrum x 10000)
CLASSES = {
    11: ("water", [620, 560, 380, 220, 110, 70]),
    21: ("developed", [1050, 1080, 1150, 1750, 2050, 1800]),
    31: ("barren", [1150, 1330, 1650, 2150, 2950, 2500]),
    41: ("forest", [310, 520, 320, 3100, 1500, 620]),
    71: ("grassland", [470, 720, 640, 2700, 2250, 1250]),
    82: ("cropland", [430, 780, 480, 3900, 2050, 950]),
}
BARE_FIELD = [950, 1150, 1450, 2050, 2800, 2250]
#: Materials of the town, each like a natural class on its own: roofs and yards like bare soil, gardens like grass.
ROOF = [1120, 1290, 1580, 2080, 2850, 2420]
GARDEN = [480, 730, 630, 2750, 2200, 1200]
ASPHALT = CLASSES[21][1]
#: Street spacing and the side of a house lot in the town, in pixels.
BLOCK = 6
LOT = 2


@dataclass(frozen=True)
class SampleScene:
    raster: Path
    labels: Path
    truth: Path
    class_field: str = "class_id"
    class_name_field: str = "class_name"


def _smooth(rng, shape, sigma) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (f - f.mean()) / (f.std() + 1e-12)


def _line_mask(shape, points, width) -> np.ndarray:
    line = shapely.LineString(points).buffer(width / 2)
    return rasterize([(line, 1)], out_shape=shape, transform=Affine.identity(), dtype="uint8").astype(bool)


def make_land_cover(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class-code map, a per-object 'greenness' map (0 bare .. 1 fully green) for crop fields, and the town."""
    shape = (size, size)
    cover = np.full(shape, 71, dtype=np.int16)  # grassland matrix
    green = np.zeros(shape, dtype=np.float32)
    # agricultural zone: a band of rectangular fields in growth stages, some bare
    ag = _smooth(rng, shape, size / 6) > -0.2
    step = max(16, size // 14)
    for r0 in range(0, size, step):
        offset = int(rng.integers(0, step))
        c = -offset
        while c < size:
            w = int(rng.integers(step * 2 // 3, step * 3 // 2))
            r1, c1 = min(size, r0 + step - 2), min(size, c + w - 2)
            cc = max(c, 0)
            block = (slice(r0, r1), slice(cc, c1))
            if c1 > cc and ag[block].mean() > 0.6:
                stage = rng.random()
                if stage < 0.18:
                    cover[block], green[block] = 31, 0.0  # bare field: spectrally like barren
                elif stage < 0.3:
                    cover[block], green[block] = 71, 0.0  # fallow / pasture
                else:
                    cover[block], green[block] = 82, rng.uniform(0.35, 1.0)
            c += w
    # forest patches
    forest = _smooth(rng, shape, size / 20) + 0.6 * _smooth(rng, shape, size / 60) > 1.0
    cover[forest & (cover != 82)] = 41
    # barren outcrops (rare)
    barren = _smooth(rng, shape, size / 40) > 2.1
    cover[barren] = 31
    # lakes and a river
    lakes = _smooth(rng, shape, size / 25) > 2.0
    cover[lakes] = 11
    pts = [(-5, size * 0.3)]
    y = size * 0.3
    for x in np.linspace(0, size + 5, 12)[1:]:
        y = float(np.clip(y + rng.normal(0, size * 0.06), size * 0.1, size * 0.9))
        pts.append((x, y))
    cover[_line_mask(shape, pts, max(3, size // 70))] = 11
    # a town around a point, with roads
    cy, cx = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    town = ((yy - cy) ** 2 + (xx - cx) ** 2) < (size / 9) ** 2 * (1 + 0.5 * _smooth(rng, shape, size / 30))
    town &= cover != 11
    cover[town] = 21
    for a, b in (((0, cy), (size, cy + rng.integers(-40, 40))), ((cx, 0), (cx + rng.integers(-60, 60), size))):
        cover[_line_mask(shape, [a, b], 2)] = 21
    return cover, green, town


def town_materials(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Street mask and the vegetated share (0 roof .. 1 garden) of every pixel of a town laid out in blocks.

    Streets run every ``BLOCK`` pixels; between them, house lots of ``LOT`` x ``LOT`` pixels are mostly roof
    or mostly garden (a bimodal share). Each pixel alone looks like bare soil or grass; only the pattern
    (a street grid, lots alternating at the scale of two pixels) says "town".
    """
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    street = (yy % BLOCK == 0) | (xx % BLOCK == 0)
    lots = (rng.random((shape[0] // LOT + 1, shape[1] // LOT + 1)) < 0.5).astype(np.float32)
    share = np.kron(lots, np.ones((LOT, LOT), dtype=np.float32))[: shape[0], : shape[1]]
    return street, share


def make_image(cover: np.ndarray, green: np.ndarray, town: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Surface reflectance x 10000 for each pixel, with object, texture and sensor variation."""
    shape = cover.shape
    img = np.zeros((6, *shape), dtype=np.float32)
    for code, (_, spectrum) in CLASSES.items():
        sel = cover == code
        img[:, sel] = np.array(spectrum, dtype=np.float32)[:, None]
    crop = cover == 82
    bare = np.array(BARE_FIELD, dtype=np.float32)[:, None]
    full = np.array(CLASSES[82][1], dtype=np.float32)[:, None]
    g = green[crop][None, :]
    img[:, crop] = g * full + (1 - g) * bare
    # broad illumination / moisture gradient and per-class texture
    for b in range(6):
        img[b] *= 1 + 0.08 * _smooth(rng, shape, shape[0] / 8)
    street, share = town_materials(shape, rng)
    lots = town & ~street
    v = share[lots][None, :]
    img[:, lots] = v * np.array(GARDEN, dtype=np.float32)[:, None] + (1 - v) * np.array(ROOF, dtype=np.float32)[:, None]
    img[:, town & street] = np.array(ASPHALT, dtype=np.float32)[:, None]
    forest = cover == 41
    img[:, forest] *= 1 + 0.12 * _smooth(rng, shape, 1.2)[forest][None, :]
    grass = cover == 71
    img[3:, grass] *= 1 + 0.10 * _smooth(rng, shape, 6)[grass][None, :]
    # mixed pixels at edges (sensor point-spread), then per-pixel noise
    img = ndimage.gaussian_filter(img, sigma=(0, 0.7, 0.7))
    img *= 1 + 0.06 * rng.standard_normal(img.shape).astype(np.float32)
    img += rng.normal(0, 40, img.shape).astype(np.float32)
    return np.clip(img, 1, 10000).astype(np.int16)


def swath_border(size: int, rng: np.random.Generator) -> np.ndarray:
    """True inside the imaged swath: a slanted strip, as at the edge of a Landsat scene."""
    yy, xx = np.mgrid[0:size, 0:size]
    slope = rng.uniform(0.12, 0.2)
    left = size * 0.04 + slope * yy
    right = size * 1.02 - slope * (size - yy)
    return (xx > left) & (xx < right + size * 0.1)


def draw_training_polygons(cover: np.ndarray, valid: np.ndarray, rng: np.random.Generator, per_class: int = 14):
    """Sparse training polygons inside homogeneous areas, in pixel coordinates (col, row)."""
    polys, codes = [], []
    size = cover.shape[0]
    for code in CLASSES:
        inside = ndimage.binary_erosion((cover == code) & valid, iterations=3)
        rows, cols = np.nonzero(inside)
        if len(rows) == 0:
            continue
        target = per_class if code not in (31, 11) else per_class // 2
        tries = 0
        placed: list[shapely.Polygon] = []
        while len(placed) < target and tries < 400:
            tries += 1
            k = int(rng.integers(len(rows)))
            cy, cx = rows[k] + 0.5, cols[k] + 0.5
            r = rng.uniform(6, 15 if code != 21 else 10)
            n = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = r * rng.uniform(0.6, 1.3, n)
            poly = shapely.Polygon(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)])
            if not poly.is_valid or poly.area < 6 or any(poly.distance(p) < 6 for p in placed):
                continue
            burn = rasterize([(poly, 1)], out_shape=cover.shape, transform=Affine.identity(), dtype="uint8") > 0
            if burn.sum() < 4 or (cover[burn] == code).mean() < 0.97 or not valid[burn].all():
                continue
            placed.append(poly)
        polys += placed
        codes += [code] * len(placed)
    del size
    return polys, codes


def make_sample(out_dir: Path, seed: int = 42, size: int = 512, pixel_size: float = 20.0) -> SampleScene:
    """Write the sample scene (image, label polygons, full truth map) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cover, green, town = make_land_cover(size, rng)
    img = make_image(cover, green, town, rng)
    valid = swath_border(size, rng)
    img[:, ~valid] = NODATA
    transform = Affine(pixel_size, 0, 448_000.0, 0, -pixel_size, 5_102_000.0)
    grid = Grid(CRS.from_epsg(32633), transform, size, size)
    raster = out_dir / "sample_scene.tif"
    write_raster(raster, img, grid, nodata=NODATA, band_names=BAND_NAMES)
    truth = out_dir / "sample_truth.tif"
    write_raster(truth, np.where(valid, cover, 0).astype(np.uint8), grid, nodata=0, band_names=["class_id"])
    polys, codes = draw_training_polygons(cover, valid, rng)
    world = [shapely.affinity.affine_transform(p, transform.to_shapely()) for p in polys]
    gdf = gpd.GeoDataFrame(
        {"class_id": codes, "class_name": [CLASSES[c][0] for c in codes]}, geometry=world, crs=grid.crs
    )
    labels = out_dir / "sample_labels.gpkg"
    write_vector(gdf, labels, layer="labels")
    return SampleScene(raster, labels, truth)
