"""Benchmark of TerraLearn's classify stage (``terralearn.predict.classify``): speed, memory and backends.

Four measures, each taken within one run of this script (the machines are noisy: compare ratios, not
seconds across runs). The model packages are built here WITHOUT training, through the project's own
``build_model`` and ``save_package`` (random initialisation: the speed does not depend on the weights).
The inputs are synthetic 6-band int16 rasters of 100 m pixels in EPSG:32633 (smooth per-band fields plus
noise, a nodata strip on the east edge), built in a temporary folder and never timed.

1. Efficiency. End-to-end throughput of ``classify`` (pixels/s: model loading, the reader thread, tile
   normalisation, the Hann-weighted blend, the writer thread and the final COG, attribute table and style
   included) divided by the bare model's forward throughput on the same tiles already in memory (same
   model, tile size, batch size and tile count as ``classify``, from ``tile_starts`` with stride = tile -
   overlap). U-Net / ResNet-18, 6 bands, 6 classes, tile 256, overlap 32, batch 8, on a 2,000 x 2,000
   raster. Both rates use the raster's pixel count, so the ratio is bare seconds / classify seconds.
   The bare model runs full batches of 8 in row-major tile order, which is how ``classify`` batches the
   tiles too (across tile rows). Target >= 0.9.
2. Memory. Peak RSS of a ``classify`` of an 8,000 x 8,000 x 6 raster divided by the peak RSS of one of
   2,000 x 2,000 x 6 (16x the pixels), each in a fresh subprocess (this script re-invoked in a hidden
   ``--child`` mode that prints its own peak back). The peak is VmHWM from ``/proc/self/status`` on Linux:
   ``getrusage(RUSAGE_SELF).ru_maxrss`` survives fork + exec there and would report the parent's RSS.
   The ``tiny`` CNN with 64 x 64 chips (default tile 64, overlap 16, batch 8), so that it takes minutes.
   Also shown: each child's peak after its imports, and the growth above it. Target <= 1.3.
3. The incumbent's case: a 2,800 x 1,100 x 6 raster at 100 m, the shape of ArcGIS Pro's documented
   national land-cover run ("Classify Pixels Using Deep Learning", 5 to 30 min). U-Net / ResNet-18 on the
   CPU (tile 256, overlap 32, batch 8): seconds and the ratio to 8 minutes (480 s). Target >= 50x.
4. ONNX Runtime versus PyTorch on the CPU: ``classify`` with ``backend="onnx"`` and ``backend="torch"``
   on the raster of measure 1 (same model and tiles). Speed-up = torch seconds / onnx seconds (both end to
   end). ``classify`` exports the package to ONNX once per weights and tile size and keeps the export in a
   cache next to the package: the first ONNX run (cache empty: export included) is timed on its own before
   the repeats, which use the cache; the export is also timed on its own. Also: the bare forward speed-up
   (ONNX Runtime session vs the PyTorch module on the in-memory tiles of measure 1), and the share of valid
   pixels on which the two maps agree. Target agreement > 99 %.

Every ``classify`` runs on the CPU (``device="cpu"``) with PyTorch's default thread count. With
``--repeat N`` (default 3) the timed runs of measures 1, 3 and 4 are interleaved N times and the best of
each is reported.

Run from the repository root::

    .venv/bin/python bench/classify.py                  # everything (about 10 minutes on 2 CPU cores)
    .venv/bin/python bench/classify.py --quick          # smaller rasters, one repeat: a smoke run
    .venv/bin/python bench/classify.py --skip-memory    # measures 1, 3 and 4 only
    .venv/bin/python bench/classify.py --keep /tmp/cl   # keep packages, inputs and maps in /tmp/cl
    .venv/bin/python bench/classify.py --profile        # plus a cProfile'd classify of measure 1, top 20
    .venv/bin/python bench/classify.py --gdal-cachemax 64   # measure 2 with GDAL's block cache capped (diagnosis)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from terralearn.config import ClassifyConfig
from terralearn.geo.grid import Grid
from terralearn.geo.tiling import tile_starts
from terralearn.io.package import save_package
from terralearn.io.raster import write_raster
from terralearn.models.segmentation import build_model
from terralearn.predict import ClassifyResult, classify
from terralearn.predict.loader import load_model

BANDS = 6
BAND_NAMES = ["blue", "green", "red", "nir", "swir1", "swir2"]
CLASSES = 6
COLOURS = ["#419bdf", "#397d49", "#88b053", "#e49635", "#c4281b", "#a59b8f"]
PIXEL = 100.0  # metres
CRS_CODE = "EPSG:32633"
ORIGIN = (300_000.0, 5_400_000.0)  # top-left corner, inside UTM zone 33N
NODATA = -32768
NODATA_STRIP = 40  # columns of nodata on the east edge
MEAN = [1500.0 + 400.0 * b for b in range(BANDS)]
STD = [450.0] * BANDS

TILE, OVERLAP, BATCH = 256, 32, 8
EFFICIENCY_TARGET = 0.9
MEMORY_TARGET = 1.3
INCUMBENT_SECONDS = 480.0  # 8 minutes, inside the documented 5-30 min
INCUMBENT_RANGE = (300.0, 1800.0)
INCUMBENT_TARGET = 50.0
AGREEMENT_TARGET = 0.99

FULL = {"efficiency": (2000, 2000), "incumbent": (2800, 1100), "memory": ((2000, 2000), (8000, 8000))}
QUICK = {"efficiency": (1000, 1000), "incumbent": (1400, 550), "memory": ((500, 500), (2000, 2000))}


# --- inputs ------------------------------------------------------------------------------------------------


def make_package(out: Path, architecture: str, backbone: str | None, chip: int, calibrate: Path | None = None) -> Path:
    """A model package with randomly initialised weights, written by the project's own save_package.

    With ``calibrate`` (a raster), the last layer is shifted and scaled so that each class's logit has mean 0
    and standard deviation 1 over a few of its tiles: a random network otherwise maps nearly everything to one
    or two classes, which would make the ONNX-vs-PyTorch agreement check trivially easy.
    """
    torch.manual_seed(0)
    model = build_model(architecture, backbone, BANDS, CLASSES)
    if calibrate is not None:
        head = model.model.segmentation_head[0]  # smp's last convolution (linear in its input)
        x = torch.from_numpy(np.stack(normalised_tiles(calibrate, chip, chip // 8)[:4]))
        model.eval()
        with torch.no_grad():
            logits = model(x)
            m, sd = logits.mean(dim=(0, 2, 3)), logits.std(dim=(0, 2, 3)).clamp_min(1e-6)
            head.weight /= sd[:, None, None, None]
            head.bias.copy_((head.bias - m) / sd)
    card = {
        "task": "pixel_classification",
        "architecture": architecture,
        "backbone": backbone,
        "bands": BAND_NAMES,
        "band_count": BANDS,
        "normalisation": {"mean": MEAN, "std": STD},
        "nodata": NODATA,
        "classes": [
            {"index": i, "value": i + 1, "name": f"class {i + 1}", "colour": COLOURS[i]} for i in range(CLASSES)
        ],
        "chip_size": [chip, chip],
        "pixel_size": [PIXEL, PIXEL],
    }
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return save_package(out, tensors, card, overwrite=True)


class FieldMaker:
    """Rows of a 6-band int16 reflectance-like raster: smooth per-band fields, noise, a nodata strip."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.width, self.height = width, height
        self.rng = np.random.default_rng(seed)
        self.params = [
            (self.rng.uniform(2.0, 9.0), self.rng.uniform(2.0, 9.0), self.rng.uniform(0.0, 2 * np.pi))
            for _ in range(BANDS)
        ]

    def rows(self, row0: int, nrows: int) -> np.ndarray:
        yy = ((row0 + np.arange(nrows, dtype=np.float32)) / self.height)[:, None]
        xx = (np.arange(self.width, dtype=np.float32) / self.width)[None, :]
        data = np.empty((BANDS, nrows, self.width), dtype=np.int16)
        for b, (fx, fy, phase) in enumerate(self.params):
            field = MEAN[b] + 800.0 * np.sin(2 * np.pi * fx * xx + phase) * np.cos(2 * np.pi * fy * yy)
            noise = 60.0 * self.rng.standard_normal((nrows, self.width), dtype=np.float32)
            data[b] = (field + noise).astype(np.int16)
        data[:, :, self.width - NODATA_STRIP :] = NODATA
        return data


def _grid(width: int, height: int) -> Grid:
    return Grid(CRS.from_string(CRS_CODE), Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]), width, height)


def make_raster(path: Path, width: int, height: int, seed: int) -> Path:
    """A raster built in memory and written by TerraLearn's write_raster (tiled 256, deflate)."""
    write_raster(path, FieldMaker(width, height, seed).rows(0, height), _grid(width, height), nodata=NODATA,
                 band_names=BAND_NAMES)  # fmt: skip
    return path


def make_raster_windowed(path: Path, width: int, height: int, seed: int, strip: int = 256) -> Path:
    """The same kind of raster (same profile as write_raster), written strip by strip: RAM stays small."""
    grid, maker = _grid(width, height), FieldMaker(width, height, seed)
    profile = dict(
        driver="GTiff", width=width, height=height, count=BANDS, dtype="int16", crs=grid.crs,
        transform=grid.transform, nodata=NODATA, compress="deflate", tiled=True, blockxsize=256,
        blockysize=256, BIGTIFF="IF_SAFER",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for i, name in enumerate(BAND_NAMES, start=1):
            dst.set_band_description(i, name)
        for r in range(0, height, strip):
            n = min(strip, height - r)
            dst.write(maker.rows(r, n), window=Window(0, r, width, n))
    return path


# --- timed pieces ------------------------------------------------------------------------------------------


def run_classify(package: Path, raster: Path, out: Path, **kw) -> tuple[ClassifyResult, float]:
    config = ClassifyConfig.build(model=package, rasters=[raster], out=out, device="cpu", overwrite=True, **kw)
    t0 = time.perf_counter()
    result = classify(config)
    return result, time.perf_counter() - t0


def tile_grid(width: int, height: int, tile: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column starts of the tiles classify processes (stride = tile - overlap)."""
    return tile_starts(height, tile, tile - overlap), tile_starts(width, tile, tile - overlap)


def normalised_tiles(raster: Path, tile: int, overlap: int) -> list[np.ndarray]:
    """The tiles classify cuts from ``raster``, normalised as classify does (nodata pixels set to 0), in memory."""
    mean = np.asarray(MEAN, np.float32)[:, None, None]
    std = np.asarray(STD, np.float32)[:, None, None]
    with rasterio.open(raster) as src:
        data = src.read()
    x = (data.astype(np.float32) - mean) / std
    x[:, (data == NODATA).any(axis=0)] = 0.0
    rows, cols = tile_grid(data.shape[2], data.shape[1], tile, overlap)
    return [x[:, r : r + tile, c : c + tile] for r in rows for c in cols]


class BareModel:
    """The package's network on tiles already in memory: normalised exactly as classify does, pre-batched."""

    def __init__(self, package: Path, raster: Path, tile: int, overlap: int, batch: int) -> None:
        self.net = load_model(package).network.eval()
        tiles = normalised_tiles(raster, tile, overlap)
        self.tiles = len(tiles)
        self.tile_pixels = self.tiles * tile * tile
        # Full batches of `batch` over all tiles in row-major order (as classify batches them).
        self.full = [torch.from_numpy(np.stack(tiles[i : i + batch])) for i in range(0, len(tiles), batch)]

    def run(self, batches: list[torch.Tensor]) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                self.net(b)
        return time.perf_counter() - t0

    def run_onnx(self, session, batches: list[torch.Tensor]) -> float:
        arrays = [b.numpy() for b in batches]
        t0 = time.perf_counter()
        for a in arrays:
            session.run(None, {"image": a})
        return time.perf_counter() - t0

    def warm_up(self, times: int = 2) -> None:
        sizes = {len(b): b for b in self.full}
        with torch.inference_mode():
            for _ in range(times):
                for b in sizes.values():
                    self.net(b)


def read_map(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def class_shares(labels: np.ndarray) -> str:
    ok = labels != 255
    counts = np.bincount(labels[ok].ravel(), minlength=CLASSES)[:CLASSES]
    return " ".join(f"{100 * c / max(ok.sum(), 1):.0f}" for c in counts) + " %"


# --- memory (child processes) ------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB.

    On Linux, VmHWM of /proc/self/status: ``getrusage(RUSAGE_SELF).ru_maxrss`` is carried over fork + exec,
    so a child re-invoked from this (large) parent would report at least the parent's RSS at the fork.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def child(package: str, raster: str, out: str) -> int:
    """Hidden --child mode: one classify in this fresh process; print its peak RSS etc. as one JSON line."""
    baseline = peak_rss_mib()
    result, wall = run_classify(Path(package), Path(raster), Path(out))
    peak = peak_rss_mib()
    print(json.dumps({"baseline_mib": baseline, "peak_mib": peak, "seconds": result.seconds, "wall": wall,
                      "pixels": result.pixels}))  # fmt: skip
    return 0


def run_child(package: Path, raster: Path, out: Path, gdal_cachemax: int | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(package), str(raster), str(out)]
    env = dict(os.environ)
    if gdal_cachemax is not None:
        env["GDAL_CACHEMAX"] = str(gdal_cachemax)  # MB
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child classify failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- main --------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller rasters and one repeat: a smoke run")
    parser.add_argument("--skip-memory", action="store_true", help="skip measure 2 (the 8,000 x 8,000 raster)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep packages, inputs and maps")
    parser.add_argument("--repeat", type=int, help="interleaved timed runs, best reported (default 3; --quick 1)")
    parser.add_argument("--profile", action="store_true", help="plus a cProfile'd classify of measure 1, top 20")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic rasters (default 0)")
    parser.add_argument(
        "--gdal-cachemax", type=int, metavar="MB",
        help="diagnosis: run the memory children with GDAL_CACHEMAX=MB (default: GDAL's own, 5%% of RAM)",
    )  # fmt: skip
    parser.add_argument("--child", nargs=3, metavar=("PKG", "RASTER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be at least 1")

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    holder = nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory(prefix="terralearn-bench-")
    with holder as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        ew, eh = sizes["efficiency"]
        eff_raster = make_raster(work / f"efficiency_{ew}x{eh}.tif", ew, eh, args.seed)
        unet = make_package(work / "unet_resnet18", "unet", "resnet18", TILE, calibrate=eff_raster)
        iw, ih = sizes["incumbent"]
        inc_raster = make_raster(work / f"incumbent_{iw}x{ih}.tif", iw, ih, args.seed + 1)
        bare = BareModel(unet, eff_raster, TILE, OVERLAP, BATCH)
        setup = time.perf_counter() - t0

        print("TerraLearn classify benchmark (all on the CPU)", flush=True)
        print(f"  torch threads       {torch.get_num_threads()} (CPU cores: {len(os.sched_getaffinity(0))})")
        print(f"  inputs built in     {setup:.1f} s (not timed below)")
        print(f"  timed runs          {repeat} interleaved (best of each reported)")
        print(f"  load average        {os.getloadavg()[0]:.2f} before the timed runs (other work on the machine "
              "inflates the seconds)", flush=True)  # fmt: skip

        # Warm-up, untimed: every batch shape through the bare model; the ONNX export timed once on its own.
        bare.warm_up()
        import onnxruntime as ort

        from terralearn.config import OnnxConfig
        from terralearn.io.onnx_cache import onnx_cache_dir
        from terralearn.predict.onnx import export_onnx

        t = time.perf_counter()
        onnx_path = export_onnx(OnnxConfig(package=unet, out=work / "model_alone.onnx", size=(TILE, TILE))).path
        t_export = time.perf_counter() - t
        session = ort.InferenceSession(str(onnx_path), ort.SessionOptions(), providers=["CPUExecutionProvider"])
        bare.run_onnx(session, bare.full[:1])

        kw = dict(tile_size=TILE, overlap=OVERLAP, batch_size=BATCH)
        assert not onnx_cache_dir(unet).exists()  # a fresh package: the first ONNX classify exports
        onnx_first = run_classify(unet, eff_raster, work / "eff_onnx.tif", backend="onnx", **kw)[0].seconds
        torch_runs, onnx_runs, inc_runs, full_runs, ort_runs = [], [], [], [], []
        for _ in range(repeat):
            torch_runs.append(run_classify(unet, eff_raster, work / "eff_torch.tif", backend="torch", **kw))
            full_runs.append(bare.run(bare.full))
            onnx_runs.append(run_classify(unet, eff_raster, work / "eff_onnx.tif", backend="onnx", **kw))
            ort_runs.append(bare.run_onnx(session, bare.full))
            inc_runs.append(run_classify(unet, inc_raster, work / "incumbent_map.tif", backend="torch", **kw))

        # 1. Efficiency.
        rows, cols = tile_grid(ew, eh, TILE, OVERLAP)
        best_torch = min(r[0].seconds for r in torch_runs)
        best_full = min(full_runs)
        pixels = ew * eh
        eff = best_full / best_torch
        print("\n1. Efficiency: classify end to end vs the bare model on the same tiles in memory")
        print(f"  model               U-Net / ResNet-18, {BANDS} bands, {CLASSES} classes (random init)")
        print(f"  raster              {ew} x {eh} px x {BANDS} bands int16 ({NODATA_STRIP}-px nodata strip)")
        print(f"  tiles               {TILE} px, overlap {OVERLAP}, batch {BATCH}: {len(rows)} x {len(cols)} = "
              f"{bare.tiles} tiles ({bare.tile_pixels / pixels:.2f} tile px per raster px)")  # fmt: skip
        print(
            f"  classify            {best_torch:7.2f} s  {pixels / best_torch:12,.0f} px/s  (runs: "
            + ", ".join(f"{r[0].seconds:.2f}" for r in torch_runs)
            + ")"
        )
        print(f"  bare, full batches  {best_full:7.2f} s  {pixels / best_full:12,.0f} px/s  ({len(bare.full)} "
              "batches; runs: " + ", ".join(f"{s:.2f}" for s in full_runs) + ")")  # fmt: skip
        print(f"  efficiency          {eff:7.3f}  (vs full batches; target >= {EFFICIENCY_TARGET}: "
              f"{verdict(eff >= EFFICIENCY_TARGET)})")  # fmt: skip
        pairs = ", ".join(f"{f / r[0].seconds:.3f}" for f, r in zip(full_runs, torch_runs, strict=True))
        print(f"  pairwise            {pairs}  (each run's bare full-batch s / classify s)", flush=True)

        # 3. The incumbent's case.
        best_inc = min(inc_runs, key=lambda r: r[0].seconds)[0]
        irows, icols = tile_grid(iw, ih, TILE, OVERLAP)
        ratio = INCUMBENT_SECONDS / best_inc.seconds
        print("\n3. The incumbent's case: ArcGIS Pro's national land-cover run (documented 5-30 min)")
        print(f"  raster              {iw} x {ih} px x {BANDS} bands at {PIXEL:g} m"
              + ("" if (iw, ih) == FULL["incumbent"] else " (--quick: NOT the documented shape)"))  # fmt: skip
        print(f"  tiles               {len(irows)} x {len(icols)} = {len(irows) * len(icols)} of {TILE} px, "
              f"overlap {OVERLAP}, batch {BATCH}, U-Net / ResNet-18, CPU")  # fmt: skip
        print(
            f"  classify            {best_inc.seconds:7.2f} s  (runs: "
            + ", ".join(f"{r[0].seconds:.2f}" for r in inc_runs)
            + ")"
        )
        print(f"  vs 8 min (480 s)    {ratio:7.1f}x  (target >= {INCUMBENT_TARGET:g}x: "
              f"{verdict(ratio >= INCUMBENT_TARGET)}); vs the documented range "
              f"{INCUMBENT_RANGE[0] / best_inc.seconds:.0f}x-{INCUMBENT_RANGE[1] / best_inc.seconds:.0f}x",
              flush=True)  # fmt: skip

        # 4. ONNX Runtime vs PyTorch.
        best_onnx = min(r[0].seconds for r in onnx_runs)
        a, b = read_map(work / "eff_torch.tif"), read_map(work / "eff_onnx.tif")
        both = (a != 255) & (b != 255)
        agree = float((a[both] == b[both]).mean())
        print("\n4. ONNX Runtime vs PyTorch on the CPU (raster and tiles of measure 1)")
        print(
            f"  torch backend       {best_torch:7.2f} s  (runs: "
            + ", ".join(f"{r[0].seconds:.2f}" for r in torch_runs)
            + ")"
        )
        print(f"  onnx backend        {best_onnx:7.2f} s  (runs: " + ", ".join(f"{r[0].seconds:.2f}" for r in onnx_runs)
              + "; the export cached)")  # fmt: skip
        print(f"  onnx, first run     {onnx_first:7.2f} s  (cache empty: exports and caches the model; the export "
              f"alone {t_export:.2f} s)")  # fmt: skip
        print(f"  speed-up            {best_torch / best_onnx:7.2f}x  (torch s / onnx s, classify end to end)")
        best_ort = min(ort_runs)
        print(f"  bare forward        torch {best_full:.2f} s, onnx runtime {best_ort:.2f} s (full batches; runs: "
              + ", ".join(f"{v:.2f}" for v in ort_runs) + f"): {best_full / best_ort:.2f}x")  # fmt: skip
        print(f"  agreement           {100 * agree:7.3f} % of {int(both.sum()):,} valid pixels (target > "
              f"{100 * AGREEMENT_TARGET:g} %: {verdict(agree > AGREEMENT_TARGET)})")  # fmt: skip
        print(f"  class shares        torch {class_shares(a)}; onnx {class_shares(b)}", flush=True)

        # 2. Memory.
        if not args.skip_memory:
            tiny = make_package(work / "tiny", "tiny", None, 64)
            (sw, sh), (bw, bh) = sizes["memory"]
            t0 = time.perf_counter()
            small = make_raster(work / f"memory_{sw}x{sh}.tif", sw, sh, args.seed + 2)
            big = make_raster_windowed(work / f"memory_{bw}x{bh}.tif", bw, bh, args.seed + 3)
            built = time.perf_counter() - t0
            rs = run_child(tiny, small, work / "memory_small_map.tif", args.gdal_cachemax)
            rb = run_child(tiny, big, work / "memory_big_map.tif", args.gdal_cachemax)
            mem = rb["peak_mib"] / rs["peak_mib"]
            print("\n2. Memory: peak RSS, each classify in a fresh process (tiny CNN, 64-px tiles, overlap 16)")
            if args.gdal_cachemax is not None:
                print(f"  GDAL_CACHEMAX       {args.gdal_cachemax} MB in the children (--gdal-cachemax)")
            print(f"  inputs              {sw} x {sh} and {bw} x {bh} px x {BANDS} bands int16 "
                  f"({bw * bh / (sw * sh):g}x the pixels; built in {built:.1f} s, not timed)")  # fmt: skip
            for name, r, (w, h) in (("small", rs, (sw, sh)), ("large", rb, (bw, bh))):
                print(f"  {name:5s} {w:>5d} x {h:<5d}   peak {r['peak_mib']:7,.0f} MiB (after imports "
                      f"{r['baseline_mib']:5,.0f} MiB, +{r['peak_mib'] - r['baseline_mib']:5,.0f} MiB in classify); "
                      f"{r['seconds']:6.1f} s, {r['pixels'] / r['seconds']:10,.0f} px/s")  # fmt: skip
            grow = (rb["peak_mib"] - rb["baseline_mib"]) / max(rs["peak_mib"] - rs["baseline_mib"], 1e-9)
            print(f"  ratio               {mem:7.3f}  (large / small peak; target <= {MEMORY_TARGET}: "
                  f"{verdict(mem <= MEMORY_TARGET)}); growth in classify alone {grow:.2f}x", flush=True)  # fmt: skip

        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(run_classify, unet, eff_raster, work / "eff_profile.tif", backend="torch", **kw)
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats("tottime").print_stats(20)
            print("\nProfile of an extra, untimed classify of measure 1 (top 20 by own time; main thread only)")
            print(buf.getvalue().rstrip())

        if args.keep:
            print(f"\nKept packages, inputs and maps in {args.keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
