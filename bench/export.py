"""Benchmark of TerraLearn's export stage against ArcGIS Pro's "Export Training Data For Deep Learning".

What it reproduces: the shape of the run documented for ArcGIS Pro - a 100 m land-cover raster of
about 2,800 x 1,100 pixels with 6 bands and about 100 label polygons, exported as 10 x 10 pixel
tiles with a stride of 5 pixels, features-only tiles (Classified Tiles). The incumbent took 74 s
for 3,655 chips (49 chips/s); TerraLearn's target is at least 100 times that rate.

The inputs are synthetic and built here from a seeded numpy generator, in a temporary folder,
through TerraLearn's own io layer:

* a 6-band int16 GeoTIFF, 2800 x 1100 pixels of 100 m in EPSG:32633 (UTM 33N), nodata -32768,
  with a nodata strip along one edge;
* 100 non-overlapping, irregular label polygons (GeoPackage, layer ``labels``) with an integer
  ``class_id`` (5 classes) and a ``class_name``, sized so that the export writes about as many
  chips as the documented run (the actual count, about 3,600, is printed).

The export runs through the public stage function ``terralearn.export.export``. Reported: the
chip count, the chip-writing phase (``ExportResult.seconds``, pre-flight checks excluded), the
whole call (checks included), chips/s and its ratio to the incumbent's 49 chips/s, and peak
memory. Timings are printed, never asserted: these machines are noisy.

Run from the repository root::

    .venv/bin/python bench/export.py                  # best of three runs
    .venv/bin/python bench/export.py --repeat 5       # best of five
    .venv/bin/python bench/export.py --keep /tmp/cs   # keep the inputs and the last chip set in /tmp/cs
    .venv/bin/python bench/export.py --profile        # plus a cProfile'd run, top 15 by cumulative time
    .venv/bin/python bench/export.py --tracemalloc    # plus a run measuring the peak of Python allocations
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from terralearn.config import ExportConfig
from terralearn.export import export
from terralearn.geo.grid import Grid
from terralearn.io.raster import write_raster
from terralearn.io.vector import write_vector

# The documented ArcGIS Pro run.
INCUMBENT_CHIPS = 3655
INCUMBENT_SECONDS = 74.0
INCUMBENT_RATE = 49.0  # chips/s, as documented (3,655 / 74 s)
TARGET_RATIO = 100.0

WIDTH, HEIGHT, BANDS = 2800, 1100, 6
PIXEL = 100.0  # metres
CRS_CODE = "EPSG:32633"
ORIGIN = (300_000.0, 5_400_000.0)  # top-left corner, inside UTM zone 33N
NODATA = -32768
BAND_NAMES = ["blue", "green", "red", "nir", "swir1", "swir2"]
CLASSES = {1: "water", 2: "forest", 3: "grassland", 4: "cropland", 5: "built-up"}
N_POLYGONS = 100
TILE, STRIDE = 10, 5


def make_raster(path: Path, rng: np.random.Generator) -> Grid:
    """A 6-band int16 reflectance-like raster: smooth per-band fields plus noise, a nodata strip on the east edge."""
    transform = Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])
    grid = Grid(CRS.from_string(CRS_CODE), transform, WIDTH, HEIGHT)
    yy = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[None, :]
    data = np.empty((BANDS, HEIGHT, WIDTH), dtype=np.int16)
    for b in range(BANDS):
        fx, fy, phase = rng.uniform(1.0, 6.0), rng.uniform(1.0, 4.0), rng.uniform(0.0, 2 * np.pi)
        field = 1500 + 400 * b + 800 * np.sin(2 * np.pi * fx * xx + phase) * np.cos(2 * np.pi * fy * yy)
        data[b] = (field + rng.normal(0.0, 60.0, (HEIGHT, WIDTH))).astype(np.int16)
    data[:, :, WIDTH - 40 :] = NODATA  # a strip outside the sensor swath
    write_raster(path, data, grid, nodata=NODATA, band_names=BAND_NAMES)
    return grid


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float) -> shapely.Polygon:
    """An irregular star-shaped polygon of mean radius ``radius`` around (cx, cy)."""
    n = int(rng.integers(12, 24))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.6, 1.4, n)
    return shapely.Polygon(np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)]))


def make_labels(path: Path, grid: Grid, rng: np.random.Generator) -> int:
    """~100 non-overlapping land-cover polygons of about 1 to 3 km across, kept off the nodata strip."""
    left, bottom, right, top = grid.bounds
    right -= 60 * PIXEL
    polygons: list[shapely.Polygon] = []
    attempts = 0
    while len(polygons) < N_POLYGONS and attempts < 100 * N_POLYGONS:
        attempts += 1
        radius = PIXEL * rng.uniform(6.0, 16.0)
        cx = rng.uniform(left + 2 * radius, right - 2 * radius)
        cy = rng.uniform(bottom + 2 * radius, top - 2 * radius)
        poly = shapely.make_valid(_blob(rng, cx, cy, radius))
        if not poly.is_empty and not any(poly.intersects(p) for p in polygons):
            polygons.append(poly)
    class_ids = rng.integers(1, len(CLASSES) + 1, len(polygons))
    gdf = gpd.GeoDataFrame(
        {"class_id": class_ids.astype(np.int32), "class_name": [CLASSES[int(c)] for c in class_ids]},
        geometry=polygons,
        crs=grid.crs,
    )
    write_vector(gdf, path, layer="labels")
    return len(gdf)


def run_once(raster: Path, labels: Path, out: Path):
    config = ExportConfig.build(
        rasters=[raster], labels=labels, class_field="class_id", class_name_field="class_name",
        tile_size_x=TILE, tile_size_y=TILE, stride_x=STRIDE, stride_y=STRIDE,
        output_tiles="features_only", out=out, overwrite=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = export(config)
    return result, time.perf_counter() - t0


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="run the export N times and report the best (default 3)")
    parser.add_argument("--keep", type=Path, help="keep the inputs and the chip set of the last run in this folder")
    parser.add_argument(
        "--profile", action="store_true", help="one more, untimed run under cProfile; top 15 by cumulative time"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default 0)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="one more, untimed run measuring the peak of Python allocations"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    with tempfile.TemporaryDirectory(prefix="terralearn-bench-") as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        raster, labels = work / "landcover.tif", work / "labels.gpkg"
        grid = make_raster(raster, rng)
        n_polygons = make_labels(labels, grid, rng)
        setup = time.perf_counter() - t0
        out = work / "chips"

        def fresh_run():
            # Remove the previous chip set outside the timing: with overwrite=True, export() would
            # otherwise delete it (thousands of files) inside its own chip-phase timing.
            shutil.rmtree(out, ignore_errors=True)
            return run_once(raster, labels, out)

        runs = [fresh_run() for _ in range(args.repeat)]
        profiler = traced = None
        if args.profile:  # an extra run: the profiler's overhead stays out of the timings above
            profiler = cProfile.Profile()
            profiler.runcall(fresh_run)
        if args.tracemalloc:  # an extra run too: tracing every allocation slows the export about tenfold
            tracemalloc.start()
            fresh_run()
            traced = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

        best, whole = min(runs, key=lambda r: r[0].seconds)
        rate, whole_rate = best.chips_per_second, best.chips / whole
        ratio = rate / INCUMBENT_RATE
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print("TerraLearn export benchmark - ArcGIS Pro 'Export Training Data For Deep Learning' shape")
        print(f"  raster              {WIDTH} x {HEIGHT} px, {BANDS} bands int16, {PIXEL:g} m, {CRS_CODE}")
        print(f"  labels              {n_polygons} polygons, {len(CLASSES)} classes")
        print(f"  tiles               {TILE} x {TILE} px, stride {STRIDE}, features_only")
        print(f"  inputs built in     {setup:.2f} s (not timed below)")
        print(f"  timed runs          {args.repeat} (best reported)")
        print(f"  chips               {best.chips} ({best.train_chips} train, {best.val_chips} val)")
        print(f"  chip phase          {best.seconds:.3f} s")
        print(f"  whole call          {whole:.3f} s (pre-flight checks included)")
        print(f"  chips/s             {rate:,.0f} chip phase, {whole_rate:,.0f} whole call")
        print(f"  incumbent           {INCUMBENT_CHIPS} chips in {INCUMBENT_SECONDS:g} s = {INCUMBENT_RATE:g} chips/s")
        print(f"  vs incumbent        {ratio:,.1f}x chip phase, {whole_rate / INCUMBENT_RATE:,.1f}x whole call")
        print(f"  target              >= {TARGET_RATIO:g}x chip phase: {verdict}")
        print(f"  peak RSS            {_peak_rss_mib():,.0f} MiB (whole process, input building included)")
        if traced is not None:
            print(f"  peak Python alloc   {traced / 2**20:,.1f} MiB (tracemalloc, extra untimed run)")
        if len(runs) > 1:
            print("  all runs (chip s)   " + ", ".join(f"{r[0].seconds:.3f}" for r in runs))

        if args.profile:
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(15)
            print("\nProfile of an extra, untimed run (top 15 by cumulative time; main thread only - the chip")
            print("writer threads' own work shows up as the main thread waiting on their futures):")
            print(buf.getvalue().rstrip())

        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for item in (raster, labels):
                shutil.copy2(item, args.keep / item.name)
            dest = args.keep / "chips"
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(out), dest)
            print(f"\nKept inputs and chip set in {args.keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
