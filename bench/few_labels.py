"""Benchmark: maps from few labels, measured as a user works (issue 9).

For each dataset it finds, in one run, it holds out part of the labels spatially, exports the rest, and runs
the whole commands ``terralearn train`` (with each method's options), ``terralearn classify`` on the whole
raster, then scores the map on the held-out labels. It prints one table: held-out overall accuracy (building
IoU for the LiDAR scene), its spread over three parts of the held-out labels, and the wall time of the train
and classify commands from process start to exit, with the in-process training time beside it.

Datasets:
- ``landsat``: ../shared/data/landsat7_landcover_ceholden, polygons sorted by ``id`` (file order kept), every
  third (positions 2, 5, 8, ...) held out, the other 20 exported with 32-px tiles and a stride of 16;
- ``lidar``: ../shared/data/lidar_dsm_buildings_opengeos, DSM + DTM + HAG, building footprints; the western half
  of the footprints' extent exported (``--class-value building --background-class --mask WEST``, 32-px tiles,
  stride 16), the eastern half scored (building IoU);
- ``sample``: the built-in sample scene, same protocol as Landsat on its polygons (always available).

Methods: ``forest`` (--model random_forest), ``tiny`` (--model tiny), ``unet`` (--model unet: the default
before model selection), ``default`` (no options: --model auto).

Run from the repository root (about 30 minutes on 2 cores with every dataset)::

    .venv/bin/python bench/few_labels.py [--datasets landsat,lidar,sample] [--methods forest,tiny,unet,default]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
METHODS = {"forest": ["--model", "random_forest"], "tiny": ["--model", "tiny"], "unet": ["--model", "unet"],
           "default": []}  # fmt: skip


@dataclass
class Dataset:
    name: str
    rasters: list[Path]
    export_args: list[str]
    score: callable  # (map path, class names by index) -> (headline, [per-part scores], pixels)
    metric: str
    truth: Path | None = None  # a full truth map (the sample's only): also scored whole, on boundaries, per class


def truth_scores(map_path: Path, truth_path: Path, classes: list[dict]) -> dict:
    """Whole-map accuracy, accuracy within 2 px of a class boundary and away from them, IoU per class name."""
    from scipy import ndimage

    from terralearn.geo.metrics import confusion_matrix, metrics_from_confusion

    pred, _, _ = read_map(map_path)
    with rasterio.open(truth_path) as src:
        codes = src.read(1)
    truth = np.full(codes.shape, 255, dtype=np.uint8)
    for c in classes:
        truth[codes == int(c["value"])] = c["index"]
    valid = truth != 255
    edge = np.zeros_like(valid)
    for c in classes:
        m = truth == c["index"]
        edge |= m & ~ndimage.binary_erosion(m, iterations=2, border_value=1)
    near = valid & ndimage.binary_dilation(edge)
    hit = pred == truth
    names = [c["name"] for c in sorted(classes, key=lambda c: c["index"])]
    iou = {
        p["name"]: p["iou"]
        for p in metrics_from_confusion(confusion_matrix(truth, pred, len(names)), names)["per_class"]
    }
    return {"whole": float(hit[valid].mean()), "boundary": float(hit[near].mean()),
            "interior": float(hit[valid & ~near].mean()), "iou": iou}  # fmt: skip


def cli(*args, workspace: Path) -> tuple[float, str]:
    """Run a terralearn command as a user does; return its wall time (process start to exit) and output."""
    cmd = [sys.executable, "-m", "terralearn", *map(str, args), "--workspace", str(workspace)]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout


def raster_args(rasters: list[Path]) -> list:
    return [x for r in rasters for x in ("-r", r)]


def read_map(path: Path) -> tuple[np.ndarray, rasterio.Affine, object]:
    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs


def polygon_scorer(test: gpd.GeoDataFrame, field: str):
    """Overall accuracy on the held-out polygons (pixel centres), and on three parts of them."""

    def score(map_path: Path, classes: list[dict]):
        pred, transform, crs = read_map(map_path)
        index = {str(c["value"]): c["index"] for c in classes}
        polys = test.to_crs(crs)
        parts = []
        correct = total = 0
        for k in range(3):
            part = polys.iloc[k::3]
            truth = rasterize([(g, index[str(v)] + 1) for g, v in zip(part.geometry, part[field], strict=True)],
                              out_shape=pred.shape, transform=transform, dtype="uint8")  # fmt: skip
            m = truth > 0
            hit = int((pred[m] == truth[m] - 1).sum())
            parts.append(hit / max(1, int(m.sum())))
            correct, total = correct + hit, total + int(m.sum())
        return correct / max(total, 1), parts, total

    return score


def landsat(tmp: Path) -> Dataset | None:
    folder = SHARED / "landsat7_landcover_ceholden"
    if not folder.is_dir():
        return None
    polygons = gpd.read_file(folder / "training_data.shp").sort_values("id", kind="stable")
    test = polygons.iloc[2::3]
    polygons.drop(test.index).to_file(tmp / "landsat_train.gpkg")
    raster = folder / "LE70220491999322EDC01_stack.gtif"
    args = ["-r", raster, "-l", tmp / "landsat_train.gpkg", "--class-field", "id", "--tile-size", 32, "--stride", 16]
    return Dataset("Landsat (10 of 30 polygons held out)", [raster], args, polygon_scorer(test, "id"), "accuracy")


def lidar(tmp: Path) -> Dataset | None:
    folder = SHARED / "lidar_dsm_buildings_opengeos"
    if not folder.is_dir():
        return None
    rasters = [folder / f"{n}.tif" for n in ("dsm", "dtm", "hag")]
    with rasterio.open(rasters[0]) as src:
        crs = src.crs
    buildings = gpd.read_file(folder / "buildings.geojson").to_crs(crs)
    x0, y0, x1, y1 = buildings.total_bounds
    xm = (x0 + x1) / 2
    west = shapely.box(x0, y0, xm, y1)
    gpd.GeoDataFrame(geometry=[west], crs=crs).to_file(tmp / "west.gpkg")
    buildings.to_file(tmp / "buildings.gpkg")
    args = [*raster_args(rasters), "-l", tmp / "buildings.gpkg", "--class-value", "building",
            "--background-class", "--mask", tmp / "west.gpkg", "--tile-size", 32, "--stride", 16]  # fmt: skip

    def score(map_path: Path, classes: list[dict]):
        pred, transform, _ = read_map(map_path)
        b = next(c["index"] for c in classes if c["name"] == "building")
        truth = rasterize([(g, 1) for g in buildings.geometry], out_shape=pred.shape, transform=transform,
                          dtype="uint8").astype(bool)  # fmt: skip
        cols = np.arange(pred.shape[1])
        xs = transform.c + (cols + 0.5) * transform.a
        inside = (xs >= xm) & (xs <= x1)
        rows = np.arange(pred.shape[0])
        ys = transform.f + (rows + 0.5) * transform.e
        inside = np.outer((ys >= y0) & (ys <= y1), inside) & (pred != 255)
        strips = np.array_split(np.nonzero(inside.any(axis=0))[0], 3)

        def iou(mask):
            p, t = (pred == b) & mask, truth & mask
            return float((p & t).sum() / max(1, (p | t).sum()))

        parts = []
        for s in strips:
            m = np.zeros_like(inside)
            m[:, s] = inside[:, s]
            parts.append(iou(m))
        return iou(inside), parts, int(inside.sum())

    return Dataset("LiDAR buildings (west -> east)", rasters, args, score, "building IoU")


def sample(tmp: Path) -> Dataset:
    from terralearn.sample import make_sample

    scene = make_sample(tmp / "sample")
    polygons = gpd.read_file(scene.labels).sort_values(scene.class_field, kind="stable")
    test = polygons.iloc[2::3]
    polygons.drop(test.index).to_file(tmp / "sample_train.gpkg")
    args = ["-r", scene.raster, "-l", tmp / "sample_train.gpkg", "--class-field", scene.class_field, "--tile-size",
            64, "--stride", 32]  # fmt: skip
    return Dataset(f"Built-in sample ({len(test)} of {len(polygons)} polygons held out)", [scene.raster], args,
                   polygon_scorer(test, scene.class_field), "accuracy", scene.truth)  # fmt: skip


def run_record(workspace: Path, run_id: int) -> tuple[float, str]:
    """The run's in-process training time and the architecture it shipped, from the workspace registry."""
    with sqlite3.connect(workspace / "terralearn.db") as con:
        row = con.execute("SELECT training_seconds, architecture FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="landsat,lidar,sample")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    methods = args.methods.split(",")
    rows, wholes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        makers = {"landsat": landsat, "lidar": lidar, "sample": sample}
        for key in args.datasets.split(","):
            data = makers[key](tmp)
            if data is None:
                print(f"{key}: ../shared/data not found, skipped", flush=True)
                continue
            ws = tmp / f"ws_{key}"
            chips = tmp / f"chips_{key}"
            cli("export", *data.export_args, "-o", chips, workspace=ws)
            for run_id, method in enumerate(methods, start=1):
                pkg = tmp / f"{key}_{method}"
                train_wall, _ = cli("train", "--chips", chips, "-o", pkg, *METHODS[method], workspace=ws)
                inproc, arch = run_record(ws, run_id)
                map_path = tmp / f"{key}_{method}.tif"
                classify_wall, _ = cli("classify", "-m", pkg, *raster_args(data.rasters), "-o", map_path, workspace=ws)
                card = json.loads((pkg / "model.json").read_text())
                value, parts, pixels = data.score(map_path, card["classes"])
                cv = (card.get("metrics") or {}).get("accuracy")
                if data.truth is not None:
                    whole = truth_scores(map_path, data.truth, card["classes"])
                    wholes.append((data.name, method, arch, whole))
                row = {"dataset": data.name, "metric": data.metric, "method": method, "model": arch, "score": value,
                       "spread": float(np.std(parts)), "pixels": pixels, "train_wall": train_wall,
                       "train_inproc": inproc, "classify_wall": classify_wall, "own_estimate": cv}  # fmt: skip
                rows.append(row)
                print(f"{key:8} {method:8} {arch:14} {data.metric} {value:.3f} ± {row['spread']:.3f} on {pixels} px;"
                      f" train {train_wall:.0f} s (in-process {inproc:.0f} s), classify {classify_wall:.1f} s",
                      flush=True)  # fmt: skip
    print("\n| dataset | method (model) | held-out score | spread (3 parts) | train wall s (in-process) | classify wall s |"
          " run's own estimate |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        own = "—" if r["own_estimate"] is None else f"{r['own_estimate']:.3f}"
        print(f"| {r['dataset']} | {r['method']} ({r['model']}) | {r['metric']} {r['score']:.3f} | ± {r['spread']:.3f} |"
              f" {r['train_wall']:.0f} ({r['train_inproc']:.0f}) | {r['classify_wall']:.1f} | {own} |")  # fmt: skip
    if wholes:
        names = list(wholes[0][3]["iou"])
        print("\nAgainst the full truth map (the sample's only):\n| dataset | method (model) | whole map | within 2 px of a"
              " boundary | away from boundaries | " + " | ".join(f"IoU {n}" for n in names) + " |\n|---|---|---|---|---|"
              + "---|" * len(names))  # fmt: skip
        for name, method, arch, w in wholes:
            print(f"| {name} | {method} ({arch}) | {w['whole']:.3f} | {w['boundary']:.3f} | {w['interior']:.3f} | "
                  + " | ".join(f"{w['iou'][n]:.2f}" for n in names) + " |")  # fmt: skip
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = {r["method"]: r for r in rows if r["dataset"] == name}
        if "default" in mine and "forest" in mine:
            d, f = mine["default"], mine["forest"]
            print(f"{name}: default / forest = {d['score'] / max(f['score'], 1e-9):.3f} (score), "
                  f"{d['train_wall'] / max(f['train_wall'], 1e-9):.1f}x the training wall time")  # fmt: skip


if __name__ == "__main__":
    main()
