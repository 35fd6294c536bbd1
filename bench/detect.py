"""`terralearn detect` measured in one run: end-to-end throughput against the bare model, and peak memory.

Synthetic, seeded inputs (3-band uint16 noise on a UTM grid, 0.5 m pixels) and untrained detectors built as
training builds them (speed does not depend on the weights). An untrained Faster R-CNN scores its boxes about
1 / (classes + 1), so the default ``--threshold 0.3`` keeps all 300 boxes per tile: the merge and the writer see
more boxes than a trained model gives them (a worst case for both).

1. **Throughput**: ``detect()`` in process on a ``BASE`` x ``BASE`` raster (tiles of 256 px, overlap 64; it reads,
   normalises, infers, merges and writes) against the bare ``network(tiles)`` call on the same normalised tiles in
   the same batches. Target: ratio >= 0.8. Printed for the ``cpu`` and ``full`` presets, with seconds per
   1,000 tiles of 256 px.
2. **Peak memory**: ``detect()`` in a fresh process per raster (its own ``VmHWM``), on a wide raster and on
   one 16x taller. The network there is a stand-in that returns 300 random boxes per tile at once (the real model
   adds the same constant to both runs and would take minutes per run on 2 cores): what scales with the raster
   is the reading, the merge and the writer. Target: tall / base <= 1.3.

Run from the repository root::

    .venv/bin/python bench/detect.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from terralearn.config import DetectConfig
from terralearn.geo.grid import Grid
from terralearn.io.package import save_package
from terralearn.io.raster import RasterStack, describe_raster, write_raster
from terralearn.models.detection import build_detector
from terralearn.predict.detect import detect
from terralearn.predict.detect_window import normalise
from terralearn.predict.window import plan_tiles

BASE = 512  # throughput raster side: 9 tiles of 256 px with overlap 64
TILE, OVERLAP, BATCH = 256, 64, 4
WIDE, LOW, TALLER = 2048, 512, 16  # memory: 2048 x 512 against 2048 x 8192 pixels
THRESHOLD = 0.3
ARCH = "faster_rcnn_resnet18_fpn"


def _raster(path: Path, width: int, height: int, bands: int = 3) -> Path:
    from affine import Affine
    from rasterio.crs import CRS

    grid = Grid(CRS.from_epsg(32631), Affine(0.5, 0, 500_000.0, 0, -0.5, 4_650_000.0), width, height)
    data = np.random.default_rng(0).normal(1000, 100, (bands, height, width)).astype("uint16")
    write_raster(path, data, grid)
    return path


def _package(folder: Path, raster: Path, preset: str) -> tuple[Path, nn.Module]:
    info = describe_raster(raster)
    torch.manual_seed(0)
    net = build_detector(ARCH, info.count, 2, TILE, preset).eval()
    card = {"task": "detection", "architecture": ARCH, "band_count": info.count, "bands": list(info.band_names),
            "classes": [{"index": 0, "value": 1, "name": "car", "colour": "#ff0000"},
                        {"index": 1, "value": 2, "name": "boat", "colour": "#0000ff"}],
            "chip_size": [TILE, TILE], "preset": preset, "anchor_sizes": None,
            "normalisation": {"mean": [1000.0] * info.count, "std": [100.0] * info.count},
            "nodata": None, "pixel_size": list(info.grid.res)}  # fmt: skip
    tensors = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return save_package(folder / f"pkg_{preset}", tensors, card, overwrite=True), net


def _config(package: Path, raster: Path, out: Path) -> DetectConfig:
    return DetectConfig.build(model=package, rasters=[raster], out=out, tile_size=TILE, overlap=OVERLAP,
                              batch_size=BATCH, threshold=THRESHOLD, device="cpu", overwrite=True)  # fmt: skip


def _bare(net: nn.Module, raster: Path) -> tuple[float, int]:
    """Seconds of the bare forward over the same normalised tiles, in the same batches; tiles."""
    with RasterStack([raster]) as stack:
        data, valid = stack.read(_whole(stack))
    tiles = plan_tiles(data.shape[1], data.shape[2], TILE, OVERLAP)
    mean, std = np.full(data.shape[0], 1000.0, np.float32), np.full(data.shape[0], 100.0, np.float32)
    chips = np.stack([normalise(data[:, w.row_off : w.row_off + TILE, w.col_off : w.col_off + TILE],
                                valid[w.row_off : w.row_off + TILE, w.col_off : w.col_off + TILE], mean, std)
                      for w in tiles.windows()])  # fmt: skip
    with torch.inference_mode():
        net(list(torch.from_numpy(chips[:1])))  # warm-up, as detect's first batch is not
        t0 = time.perf_counter()
        for k in range(0, len(chips), BATCH):
            net(list(torch.from_numpy(chips[k : k + BATCH])))
    return time.perf_counter() - t0, len(chips)


def _whole(stack):
    from rasterio.windows import Window

    return Window(0, 0, stack.grid.width, stack.grid.height)


class RandomBoxes(nn.Module):
    """300 seeded random boxes (6-40 px) per tile with uniform scores and 2 classes: a network that costs nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, images):
        out, g = [], self.generator
        for im in images:
            h, w = im.shape[-2:]
            xy = torch.rand(300, 2, generator=g) * torch.tensor([w - 40.0, h - 40.0])
            wh = 6 + torch.rand(300, 2, generator=g) * 34
            out.append({"boxes": torch.cat([xy, xy + wh], 1), "scores": torch.rand(300, generator=g),
                        "labels": torch.randint(1, 3, (300,), generator=g)})  # fmt: skip
        return out


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss``, not inherited from the parent on exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def _child(package: str, raster: str, out: str) -> None:
    started = _peak_mb()  # the interpreter with torch, rasterio and TerraLearn imported
    t0 = time.perf_counter()
    result = detect(_config(Path(package), Path(raster), Path(out)).model_copy(update={"threshold": 0.0}),
                    network=RandomBoxes())  # fmt: skip
    print(json.dumps({"peak_mb": _peak_mb(), "imports_mb": started,
                      "tiles": result.tiles, "detections": result.detections,
                      "seconds": time.perf_counter() - t0}))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        tmp = Path(tmp)
        base = _raster(tmp / "base.tif", BASE, BASE)
        print(f"terralearn detect, {ARCH}, untrained, {TILE}-px tiles, overlap {OVERLAP}, batch {BATCH}, "
              f"{torch.get_num_threads()} CPU threads")  # fmt: skip
        for preset in ("cpu", "full"):
            package, net = _package(tmp, base, preset)
            bare, n = _bare(net, base)
            t0 = time.perf_counter()
            result = detect(_config(package, base, tmp / f"{preset}.gpkg"))
            e2e = time.perf_counter() - t0
            print(f"  {preset:<4} preset: {n} tiles, detect {e2e:.2f} s ({result.detections:,} boxes written) vs "
                  f"bare forward {bare:.2f} s -> ratio {bare / e2e:.2f} (target >= 0.8); "
                  f"{1000 * e2e / n:,.0f} s per 1,000 tiles end to end, {1000 * bare / n:,.0f} s bare")  # fmt: skip
        package, _ = _package(tmp, base, "cpu")
        rows = {}
        for name, height in (("base", LOW), ("tall", LOW * TALLER)):
            raster = _raster(tmp / f"{name}.tif", WIDE, height)
            done = subprocess.run([sys.executable, __file__, "--child", str(package), str(raster),
                                   str(tmp / f"{name}.gpkg")], capture_output=True, text=True, check=True)  # fmt: skip
            rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
            r = rows[name]
            print(f"  memory {name}: {WIDE} x {height} px, {r['tiles']} tiles, {r['detections']:,} boxes written, "
                  f"peak RSS {r['peak_mb']:,.0f} MB ({r['peak_mb'] - r['imports_mb']:,.0f} MB over the imports), "
                  f"{r['seconds']:.1f} s")  # fmt: skip
        tall, low = rows["tall"], rows["base"]
        print(
            f"  peak memory tall / base ({TALLER}x taller): {tall['peak_mb'] / low['peak_mb']:.2f} (target <= 1.3); "
            f"over the imports: {(tall['peak_mb'] - tall['imports_mb']) / (low['peak_mb'] - low['imports_mb']):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
