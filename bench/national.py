"""The incumbent's national land-cover case, timed as a user waits for it: the whole command, process start to exit.

ArcGIS Pro's documented run: a 2,800 x 1,100 x 6 raster of 100 m pixels with about 100 label polygons.
* "Export Training Data For Deep Learning", 10 x 10 chips, stride 5, features only: 3,655 chips in 74 s (49 chips/s).
* "Classify Pixels Using Deep Learning" with a U-Net: 8 minutes (480 s) on the CPU.

This script builds the same shapes (synthetic, seeded: ``bench/export.py``'s raster and polygons, and
``bench/classify.py``'s untrained U-Net / ResNet-18 package with 64-px chips - the speed does not depend on the
weights), then runs, interleaved ``--repeat`` times, best of each reported:

1. ``terralearn export ...`` in a fresh process (wall time from spawn to exit: interpreter start-up, imports,
   pre-flight checks, chips, manifest) beside the in-process ``export()`` call and its chip phase;
2. ``terralearn classify ...`` in a fresh process, beside the in-process ``classify()`` call, with the default
   backend (``auto``: ONNX Runtime on the export that training caches in the package, made here as training makes
   it and timed on its own; it runs without importing torch) and with ``--backend torch``.

The export writes one file per chip, so on a slow disk it is bound by file creation: the script also times a plain
loop creating as many files of the chips' size in the same folder (the disk's floor), and repeats the export on a
RAM disk (``/dev/shm``) when there is one, to show TerraLearn's own cost. Ratios to the incumbent are printed for both; targets: export >= 30x its 49 chips/s and classify >= 50x its 8 min,
whole command. Timings are printed, never asserted: these machines are noisy.

Run from the repository root::

    .venv/bin/python bench/national.py              # best of three
    .venv/bin/python bench/national.py --repeat 1   # one of each
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from terralearn.config import ClassifyConfig
from terralearn.io.package import read_card
from terralearn.predict import classify
from terralearn.predict.onnx import cache_default_export

HERE = Path(__file__).resolve().parent
_SCRIPT = Path(sys.executable).with_name("terralearn")  # the command users type, installed with the package
TERRALEARN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "terralearn"]
INCUMBENT_CLASSIFY_SECONDS = 480.0
EXPORT_TARGET, CLASSIFY_TARGET = 30.0, 50.0
CHIP = 64  # the package's training chip size (its default classify tile)


def _bench_module(name: str):
    """Another benchmark script of this folder, imported by path (``bench/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def whole_command(args: list[str]) -> float:
    """Seconds from spawning ``terralearn ARGS`` to its exit (which must be 0)."""
    t0 = time.perf_counter()
    done = subprocess.run([*TERRALEARN, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"terralearn {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def file_floor(folder: Path, n: int, size: int) -> float:
    """Seconds a plain Python loop takes to create ``n`` files of ``size`` bytes in ``folder`` (the disk's floor)."""
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    for i in range(n):
        (folder / f"f{i}.tif").write_bytes(b"x" * size)
    seconds = time.perf_counter() - t0
    shutil.rmtree(folder)
    return seconds


def export_series(ex, export_args: list[str], raster: Path, labels: Path, chips: Path, runs: dict, key: str) -> int:
    """One whole-command export and one in-process export into ``chips``; returns the chip count."""
    shutil.rmtree(chips, ignore_errors=True)  # deleting thousands of chips is not the export's work
    runs[key].append(whole_command([*export_args, "--out", str(chips)]))
    shutil.rmtree(chips, ignore_errors=True)
    result, call = ex.run_once(raster, labels, chips)
    runs[f"{key}_call"].append(call)
    runs[f"{key}_chips"].append(result.seconds)
    files = sorted((chips / "images").iterdir())
    runs[f"{key}_floor"].append(file_floor(chips.parent / f"{chips.name}-floor", 2 * result.chips,
                                           files[0].stat().st_size))  # fmt: skip
    return result.chips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each, best reported (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default 0)")
    parser.add_argument("--ram", type=Path, default=Path("/dev/shm"), help="a RAM disk for a second export series")
    args = parser.parse_args(argv)
    ex, cl = _bench_module("export"), _bench_module("classify")

    with tempfile.TemporaryDirectory(prefix="terralearn-national-") as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(args.seed)
        raster, labels = work / "landcover.tif", work / "labels.gpkg"
        grid = ex.make_raster(raster, rng)
        n_polygons = ex.make_labels(labels, grid, rng)
        package = cl.make_package(work / "unet", "unet", "resnet18", CHIP)
        chips, out = work / "chips", work / "map.tif"
        export_args = ["export", "-r", str(raster), "-l", str(labels), "--class-field", "class_id",
                       "--class-name-field", "class_name", "--tile-size", str(ex.TILE), "--stride", str(ex.STRIDE),
                       "--output-tiles", "features_only", "--overwrite",
                       "--workspace", str(work)]  # fmt: skip
        classify_args = ["classify", "--model", str(package), "-r", str(raster), "-o", str(out), "--device", "cpu",
                         "--overwrite", "--workspace", str(work)]  # fmt: skip
        backends = ("auto", "torch")
        configs = {b: ClassifyConfig.build(model=package, rasters=[raster], out=out, device="cpu", overwrite=True,
                                           backend=b) for b in backends}  # fmt: skip
        t0 = time.perf_counter()
        cache_default_export(package, read_card(package), CHIP)  # what training does at its end
        training_export = time.perf_counter() - t0

        series = {"disk": chips}
        ram = Path(tempfile.mkdtemp(prefix="terralearn-national-", dir=args.ram)) if args.ram.is_dir() else None
        if ram is not None:
            series["ram"] = ram / "chips"
        runs: dict[str, list[float]] = {f"{s}{k}": [] for s in series for k in ("", "_call", "_chips", "_floor")}
        runs.update({f"{b}{k}": [] for b in backends for k in ("", "_call", "_inside")})
        n_chips = 0
        try:
            for _ in range(args.repeat):
                for name, folder in series.items():
                    n_chips = export_series(ex, export_args, raster, labels, folder, runs, name)
                for b in backends:
                    runs[b].append(whole_command([*classify_args, *(["--backend", b] if b != "auto" else [])]))
                    t0 = time.perf_counter()
                    inside = classify(configs[b])
                    runs[f"{b}_call"].append(time.perf_counter() - t0)
                    runs[f"{b}_inside"].append(inside.seconds)
        finally:
            if ram is not None:
                shutil.rmtree(ram, ignore_errors=True)
        best = {k: min(v) for k, v in runs.items()}

    print("TerraLearn on the incumbent's national case (2 CPU cores here; best of "
          f"{args.repeat}, runs interleaved)")  # fmt: skip
    print(f"  raster        {ex.WIDTH} x {ex.HEIGHT} x {ex.BANDS}, {ex.PIXEL:g} m; {n_polygons} polygons")
    print(f"  export        {n_chips} chips of {ex.TILE} px, stride {ex.STRIDE}, features only")
    for name in series:
        where = "this machine's disk (system temp folder)" if name == "disk" else f"a RAM disk ({args.ram})"
        floor = n_chips * 2 / best[f"{name}_floor"]
        print(f"   on {where}; a bare loop creates {floor:,.0f} files/s there (2 per chip: {floor / 2:,.0f} chips/s)")
        for key, what in ((name, "whole command"), (f"{name}_call", "in process"), (f"{name}_chips", "chip phase")):
            rate = n_chips / best[key]
            target = rate / ex.INCUMBENT_RATE >= EXPORT_TARGET
            verdict = f" (target >= {EXPORT_TARGET:g}x: {'met' if target else 'NOT met'})" if key == name else ""
            print(
                f"    {what:<15} {best[key]:6.2f} s  {rate:7,.0f} chips/s  {rate / ex.INCUMBENT_RATE:6.1f}x "
                f"the incumbent's {ex.INCUMBENT_RATE:g} chips/s{verdict}"
            )
    print(f"  classify      U-Net / ResNet-18, {CHIP}-px chips (default tile, overlap 16 px), CPU")
    titles = (("auto", "default backend (auto: ONNX Runtime on the export cached at training)"),
              ("torch", "PyTorch (--backend torch)"))  # fmt: skip
    for b, title in titles:
        print(f"   {title}")
        for key, what in ((b, "whole command"), (f"{b}_call", "in process"), (f"{b}_inside", "stage's own")):
            ratio = INCUMBENT_CLASSIFY_SECONDS / best[key]
            verdict = f" (target >= {CLASSIFY_TARGET:g}x: {'met' if ratio >= CLASSIFY_TARGET else 'NOT met'})"
            print(
                f"    {what:<15} {best[key]:6.2f} s  {ratio:6.1f}x the incumbent's 8 min{verdict if key == b else ''}"
            )
    print(f"   the ONNX export that training adds to the package (in process): {training_export:.2f} s")
    for key, values in runs.items():
        print(f"  all runs {key:<15} " + ", ".join(f"{v:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
