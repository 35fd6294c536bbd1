"""DOTA P0706 ships, trained on the western half and detected over the eastern half, as a user works.

The image (1,111 x 1,182 px RGB, 0.26 m, no georeferencing) and its DOTA ``labelTxt`` come from
``../shared/data/dota_samples`` (skipped cleanly when that folder is absent). The script cuts the image at the
middle column into ``west.png`` and ``east.png``, with a DOTA label file each: the ships (531; the 5 harbours
are larger than any chip and are left out) clipped to that half, dropped when less than half of a ship is on it.
No pixel of the east half is seen in training. Then it runs the whole commands a user types, each timed from
process start to exit:

1. ``terralearn export --task detection`` of the west half (``--tile-size``, ``--stride``, other options default);
2. ``terralearn train`` on those chips (the defaults unless ``--epochs`` / ``--batch-size`` / ``--model`` are given);
3. ``terralearn detect`` over the east half, once with its default tile and once at ``--second-tile``;
4. ``terralearn evaluate`` of each against the east half's label file: ship AP50 and COCO mAP.

It also checks the two detections of the east half against each other (the issue's seam criterion): no pair of
same-class detections within one output overlapping with IoU > 0.5, and the object counts within 5 %.

There is no random-forest figure: a per-pixel classifier draws no boxes. The figure beside the detector is the
best a detector can reach on these labels, the east half's ships with their own boxes (AP50 1.0), and the
training run's validation mAP50 on the west half's held-out blocks.

Run from the repository root::

    .venv/bin/python bench/dota.py                      # the defaults: 128-px chips, stride 64
    .venv/bin/python bench/dota.py --epochs 20 --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dota_samples"


def cli(*args, workspace: Path) -> tuple[float, str]:
    """Run a terralearn command as a user does; its wall time (process start to exit) and output."""
    cmd = [sys.executable, "-m", "terralearn", *map(str, args), "--workspace", str(workspace)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout + done.stderr


def write_half(image: np.ndarray, boxes: np.ndarray, labels: list[str], difficult, x0: int, x1: int,
               folder: Path, name: str) -> int:  # fmt: skip
    """Columns [x0, x1) of ``image`` as ``folder/images/NAME.png`` and its ships as ``folder/labelTxt/NAME.txt``."""
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "labelTxt").mkdir()
    Image.fromarray(image[:, x0:x1]).save(folder / "images" / f"{name}.png")
    lines, kept = ["imagesource:GoogleEarth", "gsd:0.255589285596"], 0
    for b, label, diff in zip(boxes, labels, difficult, strict=True):
        if label != "ship":
            continue
        c = np.array([max(b[0], x0), b[1], min(b[2], x1), b[3]]) - [x0, 0, x0, 0]
        if c[2] <= c[0] or (c[2] - c[0]) < 0.5 * (b[2] - b[0]):
            continue
        lines.append(f"{c[0]:g} {c[1]:g} {c[2]:g} {c[1]:g} {c[2]:g} {c[3]:g} {c[0]:g} {c[3]:g} ship {int(diff)}")
        kept += 1
    (folder / "labelTxt" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return kept


def duplicates(path: Path) -> tuple[int, int]:
    """(detections, pairs of same-class detections overlapping with IoU > 0.5) in a detections GeoPackage."""
    from terralearn.geo.boxes import pairwise_iou
    from terralearn.io.detections import read_detections

    d = read_detections(path)
    pairs = 0
    for value in np.unique(d.class_values):
        b = d.boxes[d.class_values == value]
        iou = pairwise_iou(b, b)
        pairs += int(np.triu(iou > 0.5, k=1).sum())
    return len(d), pairs


def ship_ap(metrics: dict) -> dict:
    [ship] = [c for c in metrics["per_class"] if c["class_name"] == "ship"]
    return ship


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile-size", type=int, default=128, help="export chip size (default 128)")
    parser.add_argument("--stride", type=int, default=64, help="export stride (default 64)")
    parser.add_argument(
        "--second-tile",
        type=int,
        default=128,
        help="detect's second tile size, beside its default (default 128: the chip size)",
    )
    parser.add_argument("--epochs", type=int, help="train --epochs (default: train's)")
    parser.add_argument("--batch-size", type=int, help="train --batch-size (default: train's)")
    parser.add_argument("--model", help="train --model (default: train's)")
    parser.add_argument("--refit", choices=("auto", "on", "off"), help="train --refit (default: train's)")
    parser.add_argument("--keep", type=Path, help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"{SHARED} not found: skipped (the DOTA sample lives outside the repository)")
        return 0
    from PIL import Image

    from terralearn.io.annotations import read_annotations

    [record] = read_annotations(SHARED / "labelTxt" / "P0706.txt")
    image = np.asarray(Image.open(SHARED / "images" / "P0706.png").convert("RGB"))
    mid = image.shape[1] // 2
    with tempfile.TemporaryDirectory(prefix="terralearn-dota-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ws = root / "ws"
        n_west = write_half(image, record.boxes, record.labels, record.difficult, 0, mid, root / "west", "west")
        n_east = write_half(image, record.boxes, record.labels, record.difficult, mid, image.shape[1],
                            root / "east", "east")  # fmt: skip
        west_png, west_txt = root / "west" / "images" / "west.png", root / "west" / "labelTxt" / "west.txt"
        east_png, east_txt = root / "east" / "images" / "east.png", root / "east" / "labelTxt" / "east.txt"
        print(f"DOTA P0706 {image.shape[1]} x {image.shape[0]} px: west half {mid} px wide, {n_west} ships; "
              f"east half {image.shape[1] - mid} px wide, {n_east} ships", flush=True)  # fmt: skip
        wall = {}
        wall["export"], out = cli("export", "--task", "detection", "--raster", west_png, "--labels", west_txt,
                                  "--tile-size", args.tile_size, "--stride", args.stride, "--out", root / "chips",
                                  workspace=ws)  # fmt: skip
        manifest = json.loads((root / "chips" / "manifest.json").read_text())
        chips = manifest["chips"]
        print(f"export   {wall['export']:7.1f} s  {chips['count']} chips ({chips['train']} train, {chips['val']} "
              f"validation, {chips.get('refit', 0)} for the refit only), ships in chips "
              f"{manifest['objects']['in_chips']}", flush=True)  # fmt: skip
        train_args = ["train", "--chips", root / "chips", "--out", root / "pkg"]
        for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--model", args.model),
                            ("--refit", args.refit)):  # fmt: skip
            if value is not None:
                train_args += [flag, value]
        wall["train"], out = cli(*train_args, workspace=ws)
        card = json.loads((root / "pkg" / "model.json").read_text())
        val = card.get("metrics", {})
        print(
            f"train    {wall['train']:7.1f} s  {card['architecture']}, preset {card['preset']}, "
            f"{card.get('epochs_run')} epochs; west validation blocks mAP50 {val.get('map50')}",
            flush=True,
        )
        if card.get("refit"):
            r = card["refit"]
            print(f"refit    {r['seconds']:7.1f} s  in train: {r['epochs']} epochs on every chip ({r['chips']} chips, "
                  f"{r['objects']} ships in chips)", flush=True)  # fmt: skip
        print(
            "         " + "\n         ".join(line for line in out.splitlines() if line.startswith(("epoch", "refit"))),
            flush=True,
        )
        results = {}
        for tile in (None, args.second_tile):  # detect's default tile, then the second size
            gpkg = root / f"east_{tile or 'default'}.gpkg"
            size = [] if tile is None else ["--tile-size", tile]
            wall[f"detect_{tile}"], _ = cli("detect", "-m", root / "pkg", "-r", east_png, "-o", gpkg, *size,
                                            workspace=ws)  # fmt: skip
            if tile is None:
                from terralearn.io.detections import read_detections

                tile = read_detections(gpkg).metadata["tile_size"]
                wall[f"detect_{tile}"] = wall.pop("detect_None")
            wall[f"evaluate_{tile}"], _ = cli("evaluate", "--prediction", gpkg, "--reference", east_txt,
                                              "--out", root / f"eval_{tile}", workspace=ws)  # fmt: skip
            metrics = json.loads((root / f"eval_{tile}" / "metrics.json").read_text())
            ship = ship_ap(metrics)
            n, pairs = duplicates(gpkg)
            results[tile] = (n, pairs, ship, metrics)
            print(f"detect   {wall[f'detect_{tile}']:7.1f} s  tile {tile}: {n} ships detected, {pairs} same-class "
                  f"pairs with IoU > 0.5; evaluate {wall[f'evaluate_{tile}']:.1f} s: ship AP50 {ship['ap50']:.3f} "
                  f"(target >= 0.5), precision {ship['precision']:.3f}, recall {ship['recall']:.3f}, "
                  f"COCO mAP {metrics['map']:.3f}", flush=True)  # fmt: skip
        (t1, (n1, p1, *_)), (t2, (n2, p2, *_)) = results.items()
        agree = abs(n1 - n2) / max(n1, n2, 1)
        print(f"two tile sizes ({t1}, {t2}): counts {n1} / {n2}, differ by {agree:.1%} "
              f"(target <= 5 %); duplicate pairs {p1} / {p2} (target 0)")  # fmt: skip
        print(f"reference: the east half's own boxes score AP50 1.0; whole commands {sum(wall.values()):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
