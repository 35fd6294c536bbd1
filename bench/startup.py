"""Benchmark: how fast the command line answers (issue 10), against rasterio's own ``rio --help``.

Whole commands, from process start to exit, interleaved in one run (these machines are noisy): each
command runs ``--repeats`` times in turn with the others and the median is printed, with its ratio to
``rio --help`` measured in the same rounds. Targets: ``terralearn --help`` at most 2x, a refused bad
input (a missing raster) at most 3x.

Run from the repository root::

    .venv/bin/python bench/startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        missing = Path(tmp) / "missing.tif"
        tl, t = str(BIN / "terralearn"), Path(tmp)
        commands = {
            "rio --help (reference)": [str(BIN / "rio"), "--help"],
            "terralearn --help": [tl, "--help"],
            "terralearn train --help": [tl, "train", "--help"],
            "terralearn export, missing raster": [tl, "export", "-r", str(missing), "-l", str(t / "l.gpkg"), "-o",
                                                  str(t / "o")],
            "terralearn classify, missing model": [tl, "classify", "-m", str(t / "p"), "-r", str(missing), "-o",
                                                   str(t / "m.tif")],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(wall(cmd))
    ref = statistics.median(times["rio --help (reference)"])
    targets = {"terralearn --help": 2.0, "terralearn export, missing raster": 3.0}
    print(f"| command | median wall s ({args.repeats} runs) | / rio --help | target |\n|---|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        target = f"<= {targets[name]:.0f}x" if name in targets else ""
        print(f"| {name} | {med:.2f} | {med / ref:.2f}x | {target} |")


if __name__ == "__main__":
    main()
