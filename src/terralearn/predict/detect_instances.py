"""``terralearn detect`` on an instance model (Mask R-CNN): a GeoPackage of one polygon per object, streamed.

The raster is cut into the same overlapping tiles as for boxes and read one strip (row of tiles) at a time. Each
tile's masks (probability >= 0.5, score >= ``--threshold``) become polygons in raster pixels, with the tile's
footprint. Every piece is kept, cut or whole, and :func:`terralearn.geo.merge_instances.merge_instances` joins
the pieces of one object seen by neighbouring tiles by their IoU inside the window both tiles saw (then NMS at
``--nms-overlap``). After each strip, the objects that lie wholly above the next strip's first row can meet no
later tile: they are written (in map coordinates, with class, score and area) and dropped from memory, so memory
follows the strip, not the raster. The output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import shapely
from rasterio.windows import Window

from terralearn import __version__
from terralearn.config import DetectConfig
from terralearn.geo.areas import area_km2
from terralearn.geo.merge_instances import Instances, merge_instances
from terralearn.io.detections import DetectionWriter
from terralearn.io.raster import RasterStack, gdal_env
from terralearn.predict.detect_window import normalise
from terralearn.predict.window import gdal_cache_bytes

__all__ = ["detect_instances"]


def _pieces(network, batch: np.ndarray, origins, threshold: float, tile: tuple[int, int], device) -> Instances:
    """The instance pieces of normalised tiles (B, C, h, w) whose tiles start at pixel (row, col) ``origins``."""
    import torch

    from terralearn.geo.instances import mask_polygons

    polys, scores, classes, tiles = [], [], [], []
    with torch.inference_mode():
        found = network([torch.from_numpy(np.ascontiguousarray(x)).to(device) for x in batch])
    th, tw = tile
    for det, (row, col) in zip(found, origins, strict=True):
        keep = det["scores"] >= threshold
        masks = (det["masks"][keep][:, 0] >= 0.5).cpu().numpy().astype(np.uint8)
        for poly, score, label in zip(mask_polygons(masks), det["scores"][keep].tolist(),
                                      det["labels"][keep].tolist(), strict=True):  # fmt: skip
            if poly is not None:
                polys.append(shapely.affinity.translate(poly, col, row))
                scores.append(score)
                classes.append(label)
                tiles.append(shapely.box(col, row, col + tw, row + th))
    return Instances(np.array(polys, dtype=object), np.array(scores, np.float32), np.array(classes, np.int64),
                     np.array(tiles, dtype=object))  # fmt: skip


def detect_instances(config: DetectConfig, card: dict, progress=None, network=None):
    """Detect instances over the whole raster into ``config.out``; see the module documentation."""
    from terralearn.predict.detect import DetectResult, checked_inputs, ready, writer_classes

    t0 = time.perf_counter()
    with RasterStack(config.rasters, config.resampling) as stack:
        grid = stack.grid
        warnings, tile, overlap, tiles, aoi, device = checked_inputs(config, card, stack)
        if network is None:
            from terralearn.predict.detector_loader import load_detector

            network = load_detector(config.model, task="instances").network
        network = ready(network, device, card, tile)
        classes = writer_classes(card)
        values = np.array([c["value"] for c in classes], np.int64)
        metadata = {"task": "instances", "tile_size": tile, "overlap": overlap, "model": str(config.model),
                    "run_id": card.get("run_id"), "architecture": card.get("architecture"),
                    "grid": {"transform": list(grid.transform)[:6], "width": grid.width, "height": grid.height},
                    "rasters": [str(p) for p in config.rasters], "terralearn_version": __version__}  # fmt: skip
        mean, std = (np.asarray(card["normalisation"][k], np.float32) for k in ("mean", "std"))
        batch = config.batch_size or (16 if device.type == "cuda" else 4)
        t = grid.transform
        to_map = [t.a, t.b, t.d, t.e, t.c, t.f]
        counts = np.zeros(len(classes), np.int64)
        rows = tiles.row_starts.tolist()
        done = skipped = 0
        with (
            gdal_env(gdal_cache_bytes(stack, tiles.tile_y)),
            DetectionWriter(config.out, grid.crs, classes, metadata, geometry_type="MultiPolygon") as writer,
        ):

            def write(found: Instances) -> None:
                if not len(found):
                    return
                polys = np.array([shapely.affinity.affine_transform(p, to_map) for p in found.polygons], object)
                if aoi is not None:
                    inside = shapely.contains(aoi, shapely.centroid(polys))
                    polys, found = polys[inside], found.take(np.flatnonzero(inside))
                labels = found.classes - 1
                counts[:] += np.bincount(labels, minlength=len(classes))[: len(classes)]
                writer.add_geometries(polys, values[labels], found.scores)

            pending = Instances.empty()
            for i, r in enumerate(rows):
                data, valid = stack.read(Window(0, r, tiles.width, tiles.tile_y))
                todo = []
                for c in tiles.col_starts.tolist():
                    ok = valid[:, c : c + tiles.tile_x]
                    if ok.any():
                        todo.append((r, c))
                    else:
                        skipped += 1
                parts = [pending]
                for k in range(0, len(todo), batch):
                    origins = todo[k : k + batch]
                    x = np.stack([normalise(data[:, :, c : c + tiles.tile_x], valid[:, c : c + tiles.tile_x], mean,
                                            std) for _, c in origins])  # fmt: skip
                    parts.append(_pieces(network, x, origins, config.threshold, (tiles.tile_y, tiles.tile_x), device))
                done += len(todo)
                pending = merge_instances(Instances.concat(parts), nms=config.nms_overlap)
                if i + 1 < len(rows) and len(pending):
                    final = shapely.bounds(pending.polygons)[:, 3] <= rows[i + 1]  # no later tile reaches them
                    write(pending.take(np.flatnonzero(final)))
                    pending = pending.take(np.flatnonzero(~final))
                if progress:
                    progress((i + 1) * len(tiles.col_starts), len(tiles))
            write(pending)
    return DetectResult(Path(config.out), Path(config.out).with_suffix(".qml"),
                        {c["name"]: int(n) for c, n in zip(classes, counts, strict=True)}, done, skipped,
                        area_km2(grid), time.perf_counter() - t0, tile, overlap, warnings)  # fmt: skip
