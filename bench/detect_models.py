"""Benchmark of the detector registry (``terralearn.models.detection``) on the CPU: inference and training speed.

For each registry entry and each preset (``cpu``, ``full``), on random data, with ``torch.set_num_threads(2)``:

- inference: seconds per 1,000 tiles of 256 x 256 x 3, batches of 4, in eval mode under ``torch.no_grad`` (the
  post-processing, NMS included, is part of it: with random weights every proposal scores about 0.5, so NMS
  sees the most boxes it can - a worst case for the box stages);
- training: seconds per 100 steps of batch 4 (forward, losses, backward, SGD step) with 12 random boxes of
  8 to 64 px per chip (aerial objects) and one chip in four empty.

Each figure is one warm-up batch, then ``--steps`` timed batches (default 2), extrapolated: short runs, so
compare the rows with each other within one run (these machines are shared and noisy), not across runs.
The whole script takes about 2 to 3 minutes on 2 CPU cores.

Run from the repository root::

    .venv/bin/python bench/detect_models.py                     # every entry, both presets
    .venv/bin/python bench/detect_models.py --steps 4           # longer runs, steadier figures
    .venv/bin/python bench/detect_models.py --models faster_rcnn_resnet18_fpn --presets cpu
"""

from __future__ import annotations

import argparse
import time

import torch

from terralearn.models.detection import DETECTORS, PRESETS, build_detector

CHIP = 256
BATCH = 4
BANDS = 3


def random_targets(gen: torch.Generator, n_chips: int, per_chip: int = 12) -> list[dict]:
    targets = []
    for i in range(n_chips):
        n = 0 if i % 4 == 3 else per_chip
        side = torch.randint(8, 65, (n, 1), generator=gen).float()
        corner = torch.rand((n, 2), generator=gen) * (CHIP - side)
        boxes = torch.cat([corner, corner + side], dim=1)
        targets.append({"boxes": boxes, "labels": torch.ones(n, dtype=torch.int64)})
    return targets


def time_inference(model: torch.nn.Module, images: list[torch.Tensor], steps: int) -> float:
    """Seconds per 1,000 tiles."""
    model.eval()
    with torch.no_grad():
        model(images)  # warm-up
        t = time.perf_counter()
        for _ in range(steps):
            model(images)
        seconds = time.perf_counter() - t
    return seconds / (steps * len(images)) * 1000


def time_training(model: torch.nn.Module, images: list[torch.Tensor], targets: list[dict], steps: int) -> float:
    """Seconds per 100 training steps."""
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step() -> None:
        loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps * 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="timed batches per figure, after one warm-up")
    parser.add_argument("--models", nargs="*", default=list(DETECTORS), choices=list(DETECTORS), metavar="NAME")
    parser.add_argument("--presets", nargs="*", default=["cpu", "full"], choices=["cpu", "full"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    images = [torch.randn((BANDS, CHIP, CHIP), generator=gen) for _ in range(BATCH)]
    targets = random_targets(gen, BATCH)
    print(f"CPU, {torch.get_num_threads()} threads, chips {CHIP} x {CHIP} x {BANDS}, batch {BATCH}, "
          f"{args.steps} timed batches after one warm-up")  # fmt: skip
    header = f"{'model':30s} {'preset':6s} {'params M':>8s} {'infer s/1000 tiles':>19s} {'train s/100 steps':>18s}"
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for name in args.models:
        for preset in args.presets:
            torch.manual_seed(0)
            model = build_detector(name, BANDS, 1, CHIP, preset=preset)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            infer = time_inference(model, images, args.steps)
            train = time_training(model, images, targets, args.steps)
            print(f"{name:30s} {preset:6s} {params:8.1f} {infer:19.0f} {train:18.0f}", flush=True)
    print(f"presets: {PRESETS['faster_rcnn']}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
