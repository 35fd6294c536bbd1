"""Pixel-classification models: plain-dict registries of architectures and backbones.

Architectures come from segmentation-models-pytorch through one ``smp.create_model`` call;
backbones are smp encoders or any timm encoder through the ``timm:`` prefix (as the
incumbent accepts ``timm:resnet31``). ``tiny`` is a two-layer CNN for tests and quick looks;
``cnn_s`` and ``cnn_m`` are small dilated full-resolution CNNs for few labels (see ``DilatedCNN``).

Pretrained weights: machines without internet are normal. The Hugging Face hub is put in
offline mode before anything imports it (set ``HF_HUB_OFFLINE=0`` yourself to allow
downloads), so ``weights='auto'`` falls back to random initialisation at once when the
weights are not in the local cache, and ``weights='imagenet'`` fails with a clear message.

More than 3 bands with pretrained weights: the pretrained first convolution's filters for
red, green and blue go to the bands named red/green/blue (or r/g/b); every other band gets the
mean of the three RGB filters; all are scaled by 3 / n_bands so that the first layer's
activations keep their pretrained magnitude. Without RGB band names, the bands cycle
through the RGB filters (smp's scheme). This is deliberate and documented, not an accident
of ``in_channels``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from torch import nn

from terralearn.errors import ConfigError
from terralearn.geo.bands import colour_channel
from terralearn.models.catalog import ARCHITECTURES, BACKBONES, MULTIPLE, SMALL_CNNS


def encoder_name(backbone: str) -> str:
    if backbone.startswith("timm:"):
        name = backbone.removeprefix("timm:")
        import timm

        if not timm.list_models(name):
            raise ConfigError(
                f"Unknown timm encoder '{name}'.",
                "Use a name from timm.list_models(), e.g. --backbone timm:resnet26d or timm:efficientnet_b0.",
            )
        return f"tu-{name}"
    if backbone not in BACKBONES:
        raise ConfigError(
            f"Unknown backbone '{backbone}'.",
            f"Choose one of {', '.join(sorted(BACKBONES))}, or any timm encoder as timm:NAME.",
        )
    return BACKBONES[backbone]


class TinyCNN(nn.Module):
    """Two 3x3 convolutions and a 1x1 classifier: seconds to train, for tests and quick looks."""

    def __init__(self, in_channels: int, classes: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class DilatedCNN(nn.Module):
    """A per-pixel spectral layer (1x1) then 3x3 convolutions with growing dilation, all at full resolution.

    A few tens of thousands of weights: it learns from a few hundred labelled pixels, adds the texture and
    context of its receptive field (1 + 2 * sum(dilations) pixels) to the spectra, and, with reflect padding
    and no down-sampling, gives the same answer whatever the tile size it is run on. The class scores are
    the sum of a context head (on the dilated features) and a spectral head (on the 1x1 layer's features of
    the pixel itself): objects smaller than the receptive field (a pond of a few pixels) and pixels next to
    another class keep their own spectrum's vote instead of being outvoted by their surroundings.
    """

    def __init__(self, in_channels: int, classes: int, width: int = 32, dilations=(1, 2, 4)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for d in dilations:
            layers += [
                nn.Conv2d(width, width, 3, padding=d, dilation=d, padding_mode="reflect"),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, classes, 1)
        self.spectral = nn.Conv2d(width, classes, 1)
        self.receptive_field = 1 + 2 * sum(dilations)

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        spectra = self.stem(x)
        return self.head(self.body(spectra)) + self.spectral(spectra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        small = self.receptive_field // 2 - min(h, w) + 1  # reflect padding needs inputs larger than the dilation
        if small > 0:
            out = self._scores(nn.functional.pad(x, (small, small, small, small), mode="replicate"))
            return out[..., small : small + h, small : small + w]
        return self._scores(x)


class PadToMultiple(nn.Module):
    """Reflect-pads inputs to a multiple of ``multiple`` pixels and crops the output back."""

    def __init__(self, model: nn.Module, multiple: int) -> None:
        super().__init__()
        self.model = model
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph = (-h) % self.multiple
        pw = (-w) % self.multiple
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        out = self.model(x)
        return out[..., :h, :w]


def build_model(
    architecture: str, backbone: str, in_channels: int, classes: int, pretrained: bool = False, band_names=None
) -> nn.Module:
    """A model for ``in_channels`` bands and ``classes`` classes; pretrained encoder weights if asked."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"Unknown architecture '{architecture}'.",
            f"Choose one of {', '.join(sorted(ARCHITECTURES))} (or random_forest for the per-pixel baseline).",
        )
    if architecture == "tiny":
        return TinyCNN(in_channels, classes)
    if architecture in SMALL_CNNS:
        width, dilations = SMALL_CNNS[architecture]
        return DilatedCNN(in_channels, classes, width, dilations)
    import segmentation_models_pytorch as smp

    name = encoder_name(backbone)
    weights = None
    if pretrained:
        weights = True if name.startswith("tu-") else "imagenet"
    model = smp.create_model(
        ARCHITECTURES[architecture],
        encoder_name=name,
        encoder_weights=weights,
        in_channels=3 if pretrained else in_channels,
        classes=classes,
    )
    if pretrained and in_channels != 3:
        _adapt_first_conv(model, in_channels, band_names)
    return PadToMultiple(model, MULTIPLE)


def _adapt_first_conv(model: nn.Module, in_channels: int, band_names) -> None:
    """Replace the encoder's pretrained 3-band first convolution by an ``in_channels`` one (see module doc)."""
    parent, attr, conv = _first_conv(model.encoder)
    setattr(parent, attr, band_conv(conv, in_channels, band_names))


def band_conv(conv: nn.Conv2d, in_channels: int, band_names=None, keep_weights: bool = True) -> nn.Conv2d:
    """A copy of the 3-band convolution ``conv`` taking ``in_channels`` bands.

    With ``keep_weights``, each band gets the RGB filter of its colour (by band name), else the three filters'
    mean; bands without names cycle through red, green, blue; all scaled by 3 / bands. Without, the new
    convolution keeps PyTorch's fresh initialisation, so that no two bands start with the same filter.
    """
    replacement = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    if not keep_weights:
        return replacement
    w = conv.weight.detach()  # (out, 3, kh, kw)
    new = torch.empty((w.shape[0], in_channels, *w.shape[2:]), dtype=w.dtype)
    names = [str(n).lower() for n in (band_names or [])]
    rgb = {i: c for i, n in enumerate(names) if (c := colour_channel(n)) is not None}
    mean = w.mean(dim=1)
    for i in range(in_channels):
        if rgb:
            new[:, i] = w[:, rgb[i]] if i in rgb else mean
        else:
            new[:, i] = w[:, i % 3]
    new *= 3.0 / in_channels
    with torch.no_grad():
        replacement.weight.copy_(new)
        if conv.bias is not None:
            replacement.bias.copy_(conv.bias)
    return replacement


def _first_conv(module: nn.Module):
    for parent in module.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                return parent, attr, child
    raise ConfigError("The encoder has no 3-band first convolution to adapt.", "Use --weights none.")


def encoder_parameters(model: nn.Module):
    """Parameters of the backbone (encoder), for freezing; empty for the tiny CNN."""
    inner = model.model if isinstance(model, PadToMultiple) else model
    encoder = getattr(inner, "encoder", None)
    return list(encoder.parameters()) if encoder is not None else []
