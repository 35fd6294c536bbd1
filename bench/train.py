"""Benchmark: does the data path starve the model during training?

Measures, in one run, on the same model, batch size and chips:
- full loop: samples/s of ``Trainer.train_epoch`` (chip indexing, sampling, augmentation with flips, 90-degree
  rotations and radiometric jitter, forward, loss, backward, optimizer and scheduler step);
- bare model: samples/s of forward + loss + backward + optimizer step on one batch already in memory.
Prints both and their ratio (target >= 0.9). Chips come from the built-in sample scene (6 bands, 64 x 64).

Run from the repository root::

    .venv/bin/python bench/train.py [--model unet --backbone resnet18 --batch-size 16 --epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from terralearn.config import ExportConfig, TrainConfig
from terralearn.export import export
from terralearn.models.device import resolve_device
from terralearn.sample import make_sample
from terralearn.train.data import load_training_data
from terralearn.train.loop import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the full loop to time (after one warm-up)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = make_sample(tmp / "sample")
        export(ExportConfig.build(rasters=[scene.raster], labels=scene.labels, class_field=scene.class_field,
                                  tile_size_x=64, tile_size_y=64, stride_x=32, stride_y=32, out=tmp / "chips"))  # fmt: skip
        config = TrainConfig.build(chips=tmp / "chips", out=tmp / "pkg", model=args.model, backbone=args.backbone,
                                   batch_size=args.batch_size, epochs=args.epochs + 1, weights="none",
                                   learning_rate=1e-3, device=args.device)  # fmt: skip
        data = load_training_data(config.chips)
        trainer = Trainer(config, data, resolve_device(args.device))
        trainer.setup_optimizer(1e-3)
        n = len(trainer.x_train)
        trainer.train_epoch(0)  # warm-up
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            trainer.train_epoch(epoch)
        sync()
        full = args.epochs * n / (time.perf_counter() - t)

        steps = args.epochs * trainer.steps_per_epoch
        x = trainer.x_train[: args.batch_size].to(trainer.device)
        y = trainer.y_train[: args.batch_size].to(trainer.device)
        trainer.model.train()
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(trainer.device.type, enabled=trainer.amp):
                loss = trainer.loss_fn(trainer.model(x), y)
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.scaler.scale(loss).backward()
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()
        sync()
        bare = steps * len(x) / (time.perf_counter() - t)
    print("TerraLearn training data-path benchmark")
    print(f"  model               {args.model} / {args.backbone}, batch {args.batch_size}, device {trainer.device}")
    print(f"  chips               {n} training chips of {data.x_train.shape[1]} x 64 x 64")
    print(f"  full loop           {full:8.1f} samples/s  (sampling, augmentation, step)")
    print(f"  bare model steps    {bare:8.1f} samples/s  (one batch already in memory)")
    ratio = full / bare
    print(f"  ratio               {ratio:8.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
