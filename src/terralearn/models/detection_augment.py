"""Augmentation for object detection: the boxes move with the pixels.

One chip at a time: a (C, H, W) tensor of normalised bands (any number) and an (N, 4) tensor of boxes in pixel
coordinates, ``x1, y1, x2, y2`` (pixel ``(row r, col c)`` covers ``[c, c + 1) x [r, r + 1)``, torchvision's
convention). Geometric transforms are the dihedral group of the square (flips and 90-degree rotations): aerial
chips have no "up", and these transforms neither interpolate pixels nor distort boxes, so a box stays exactly
tight around its object. Radiometric jitter (per band brightness and contrast) touches the image only.

Everything is pure (no file access, no global random state): randomness comes from the ``torch.Generator``
given, so a seeded run repeats exactly.
"""

from __future__ import annotations

import torch


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror left-right: x -> W - x."""
    w = image.shape[-1]
    return image.flip(-1), torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)


def vflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror top-bottom: y -> H - y."""
    h = image.shape[-2]
    return image.flip(-2), torch.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], dim=1)


def rot90(image: torch.Tensor, boxes: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``k`` quarter turns counter-clockwise, as ``torch.rot90(image, k, (-2, -1))``.

    One turn sends pixel (row r, col c) of a W-wide image to (row W - 1 - c, col r), i.e. the point (x, y) to
    (y, W - x); a box (x1, y1, x2, y2) becomes (y1, W - x2, y2, W - x1).
    """
    k %= 4
    for _ in range(k):
        w = image.shape[-1]
        image = torch.rot90(image, 1, (-2, -1))
        boxes = torch.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], dim=1)
    return image, boxes


def jitter(image: torch.Tensor, gen: torch.Generator, brightness: float = 0.1, contrast: float = 0.1) -> torch.Tensor:
    """Per band: stretch around the band's mean by 1 +- ``contrast`` and shift by +- ``brightness``.

    Uniform draws; the image is normalised (per-band statistics), so ``brightness`` is in standard deviations.
    """
    c = image.shape[0]
    gain = 1 + contrast * (2 * torch.rand((c, 1, 1), generator=gen) - 1)
    shift = brightness * (2 * torch.rand((c, 1, 1), generator=gen) - 1)
    mean = image.mean(dim=(-2, -1), keepdim=True)
    return (image - mean) * gain.to(image) + mean + shift.to(image)


def augment_detection(
    image: torch.Tensor,
    boxes: torch.Tensor,
    gen: torch.Generator,
    flips: bool = True,
    rotations: bool = True,
    brightness: float = 0.0,
    contrast: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random element of the dihedral group (flips and, on square chips, quarter turns), then jitter.

    ``image`` (C, H, W), ``boxes`` (N, 4) xyxy in pixels (N may be 0); returns new tensors, inputs untouched.
    Jitter is applied when ``brightness`` or ``contrast`` is above 0.
    """
    boxes = boxes.reshape(-1, 4).to(torch.float32)
    draws = torch.randint(0, 4, (3,), generator=gen)
    if flips:
        if draws[0] % 2:
            image, boxes = hflip(image, boxes)
        if draws[1] % 2:
            image, boxes = vflip(image, boxes)
    if rotations and image.shape[-1] == image.shape[-2] and int(draws[2]):
        image, boxes = rot90(image, boxes, int(draws[2]))
    if brightness > 0 or contrast > 0:
        image = jitter(image, gen, brightness, contrast)
    return image, boxes


def augment_sample(image: torch.Tensor, target: dict, gen: torch.Generator, **options) -> tuple[torch.Tensor, dict]:
    """:func:`augment_detection` on an (image, target dict) pair; the other target entries are kept.

    Instance masks (``target["masks"]``, (N, H, W)) move with the pixels: they ride along as extra channels
    through the flips and turns (which never interpolate), and the band jitter then touches the image only.
    """
    masks = target.get("masks")
    if masks is None:
        image, boxes = augment_detection(image, target["boxes"], gen, **options)
        return image, {**target, "boxes": boxes}
    brightness, contrast = options.pop("brightness", 0.0), options.pop("contrast", 0.0)
    c = image.shape[0]
    both, boxes = augment_detection(torch.cat([image, masks.to(image.dtype)]), target["boxes"], gen, **options)
    image, masks = both[:c], both[c:].round().to(target["masks"].dtype)
    if brightness > 0 or contrast > 0:
        image = jitter(image, gen, brightness, contrast)
    return image, {**target, "boxes": boxes, "masks": masks}
