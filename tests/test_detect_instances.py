"""`terralearn detect` on an instance model: one polygon per object, also for objects cut by every seam.

An *oracle* network finds the scene's bright objects exactly in each tile (masks and boxes, no training), so
every object that a seam crosses is seen in pieces by two or four tiles: the output must still hold one polygon
per object, at its map position, whatever the tile size.
"""

from __future__ import annotations

import numpy as np
import pyogrio
import shapely
import torch
from scipy import ndimage
from skimage.draw import ellipse
from torch import nn

from terralearn.config import DetectConfig
from terralearn.geo.instances import instance_polygons
from terralearn.io.package import save_package
from terralearn.io.raster import write_raster
from terralearn.predict.detect import detect
from tests.data.make_data import make_grid

CLASSES = [{"index": 0, "value": 1, "name": "building", "colour": "#ff0000"}]


class MaskOracle(nn.Module):
    """Bright connected regions of the normalised tiles (above 5 std) as instances, score 0.9."""

    def forward(self, images):
        out = []
        for im in images:
            found, n = ndimage.label(im[0].numpy() > 5)
            masks = torch.from_numpy(np.stack([found == k for k in range(1, n + 1)]) if n else
                                     np.zeros((0, *found.shape), bool)).float()[:, None]  # fmt: skip
            boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(found)]
            out.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "masks": masks,
                        "scores": torch.full((n,), 0.9), "labels": torch.ones(n, dtype=torch.int64)})  # fmt: skip
        return out


def scene(tmp_path):
    grid = make_grid(width=200, height=168, res=0.5)
    ids = np.zeros((grid.height, grid.width), np.int32)
    rng = np.random.default_rng(7)
    k = 0
    for cy in range(20, 168, 40):
        for cx in range(24, 200, 44):
            k += 1
            rr, cc = ellipse(cy + rng.integers(-3, 4), cx + rng.integers(-3, 4), rng.integers(6, 11),
                             rng.integers(6, 14), shape=ids.shape)  # fmt: skip
            ids[rr, cc] = k
    ids[36:44, 4:196] = k + 1  # a long building: longer than any overlap, cut by every tile it crosses
    data = np.random.default_rng(1).normal(100, 5, (1, grid.height, grid.width))
    data[0][ids > 0] += 200
    write_raster(tmp_path / "scene.tif", data.astype("float32"), grid)
    card = {"task": "instances", "architecture": "mask_rcnn_resnet18_fpn", "band_count": 1, "bands": ["scene_b1"],
            "classes": CLASSES, "chip_size": [64, 64], "preset": "cpu", "anchor_sizes": [4, 8, 16, 24, 32],
            "normalisation": {"mean": [100.0], "std": [5.0]}, "nodata": None, "pixel_size": [0.5, 0.5]}  # fmt: skip
    pkg = save_package(tmp_path / "pkg", {"w": np.zeros(1, np.float32)}, card)
    truth = [shapely.affinity.affine_transform(p, [0.5, 0, 0, -0.5, grid.transform.c, grid.transform.f])
             for p, _ in instance_polygons(ids)]  # fmt: skip
    return pkg, truth


def test_objects_across_seams_come_out_as_one_polygon_each(tmp_path):
    pkg, truth = scene(tmp_path)
    counts = {}
    for tile in (64, 96):
        out = tmp_path / f"objects_{tile}.gpkg"
        result = detect(DetectConfig(model=pkg, rasters=[tmp_path / "scene.tif"], out=out, tile_size=tile,
                                     overlap=16), network=MaskOracle())  # fmt: skip
        assert result.tiles >= 6  # seams cross the objects in both directions
        info = pyogrio.read_info(out)
        assert info["geometry_type"] == "MultiPolygon" and list(info["fields"]) == ["class_value", "class_name",
                                                                                     "score"]  # fmt: skip
        geoms = shapely.from_wkb(pyogrio.raw.read(out)[2])
        counts[tile] = len(geoms)
        assert len(geoms) == len(truth), tile
        for g in geoms:
            best = max(truth, key=lambda t: shapely.area(shapely.intersection(t, g)))
            assert shapely.area(shapely.intersection(best, g)) / shapely.area(shapely.union(best, g)) >= 0.9
        assert max(shapely.area(g) for g in geoms) == max(shapely.area(t) for t in truth)  # the long one, whole
    assert counts[64] == counts[96] == result.counts["building"]
