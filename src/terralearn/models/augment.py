"""Batch augmentations for multi-band chips (any number of bands), on tensors."""

from __future__ import annotations

import torch

from terralearn.config import UNLABELLED

#: Sides of a pasted rectangle, as shares of the chip's sides (thin strips to large blocks).
CUTMIX_SIDES = (0.05, 0.75)


def augment_batch(x: torch.Tensor, y: torch.Tensor, kinds: list[str], gen: torch.Generator):
    """Random flips, 90-degree rotations, mild radiometric jitter and noise, per chip.

    ``x`` is (B, C, H, W) normalised, ``y`` (B, H, W). Geometric transforms move labels with
    the image; radiometric ones touch the image only (valid pixels and nodata alike are
    normalised values, nodata being 0).
    """
    if not kinds:
        return x, y
    b = x.shape[0]
    square = x.shape[-1] == x.shape[-2]
    if "flip" in kinds or "rot90" in kinds:
        xs, ys = [], []
        flips = torch.randint(0, 2, (b, 2), generator=gen)
        rots = torch.randint(0, 4 if square else 1, (b,), generator=gen) if "rot90" in kinds else torch.zeros(b)
        for i in range(b):
            xi, yi = x[i], y[i]
            if "flip" in kinds:
                if flips[i, 0]:
                    xi, yi = xi.flip(-1), yi.flip(-1)
                if flips[i, 1]:
                    xi, yi = xi.flip(-2), yi.flip(-2)
            k = int(rots[i])
            if k:
                xi, yi = torch.rot90(xi, k, (-2, -1)), torch.rot90(yi, k, (-2, -1))
            xs.append(xi)
            ys.append(yi)
        x, y = torch.stack(xs), torch.stack(ys)
    if "jitter" in kinds:
        c = x.shape[1]
        gain = 1 + 0.05 * torch.randn((b, c, 1, 1), generator=gen)
        offset = 0.05 * torch.randn((b, c, 1, 1), generator=gen)
        x = x * gain.to(x.device) + offset.to(x.device)
    if "noise" in kinds:
        x = x + 0.02 * torch.randn(x.shape, generator=gen).to(x.device)
    return x, y


def mixup(x: torch.Tensor, alpha: float, gen: torch.Generator):
    """Mix each chip with another of the batch; returns (mixed x, permutation, lambda)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], generator=gen)
    return lam * x + (1 - lam) * x[perm], perm, lam


def cutmix(x: torch.Tensor, y: torch.Tensor, prob: float, gen: torch.Generator, ignore: int = UNLABELLED):
    """Paste the labelled pixels of a random rectangle of another chip of the batch into each chip.

    With probability ``prob`` per chip; image and labels move together, and only pixels labelled in the
    source (``y != ignore``) are pasted, so each pasted piece is part of a training polygon with its own
    outline. Sparse polygons drawn inside homogeneous areas have no labelled pixels on both sides of a
    real class boundary; the pasted pieces give the network labelled boundaries, so it learns to trust a
    pixel's own spectrum next to another class instead of smearing the edge.
    """
    if prob <= 0:
        return x, y
    b, _, h, w = x.shape
    x, y = x.clone(), y.clone()
    src = torch.randperm(b, generator=gen)
    draw = torch.rand((b, 5), generator=gen)
    lo, hi = CUTMIX_SIDES
    for i in range(b):
        j = int(src[i])
        if draw[i, 0] >= prob or j == i:
            continue
        rh = max(1, int(h * (lo + (hi - lo) * draw[i, 1])))
        rw = max(1, int(w * (lo + (hi - lo) * draw[i, 2])))
        r0, c0 = int((h - rh) * draw[i, 3]), int((w - rw) * draw[i, 4])
        rows, cols = slice(r0, r0 + rh), slice(c0, c0 + rw)
        paste = y[j, rows, cols] != ignore
        x[i, :, rows, cols] = torch.where(paste, x[j, :, rows, cols], x[i, :, rows, cols])
        y[i, rows, cols] = torch.where(paste, y[j, rows, cols], y[i, rows, cols])
    return x, y
