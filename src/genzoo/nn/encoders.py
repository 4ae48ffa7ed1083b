"""Encoders (images -> vectors) and decoders (vectors -> per-subpixel logits) for latent-variable models.

Two architectures, chosen by name:

- ``"mlp"``: fully connected layers with tanh, as in Kingma & Welling (2014) and Burda et al. (2016):
  image (C*H*W) -> hidden[0] -> ... -> out, and the mirror image for the decoder.
- ``"conv"``: one 3x3 stride-2 convolution per entry of ``hidden`` (its channel count), ELU, then a
  linear layer; the decoder mirrors it with nearest-neighbour upsampling to the encoder's exact sizes
  followed by 3x3 convolutions, so any H, W works (28 -> 14 -> 7 -> 4 and back to 7 -> 14 -> 28).

Decoders return logits in the layout of ``genzoo.nn.distributions``: (M, C, H, W) Bernoulli logits for
2 levels, (M, C, H, W, levels) softmax logits otherwise.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from genzoo.nn.activations import Tanh

ARCHITECTURES = ("mlp", "conv")
ACTIVATIONS = {"tanh": Tanh, "relu": nn.ReLU, "elu": nn.ELU}  # of the "mlp" architecture


def mlp(widths: Sequence[int], activation: type[nn.Module] = Tanh) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b)] + ([activation()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def _halvings(h: int, w: int, n: int) -> list[tuple[int, int]]:
    """Spatial sizes after 0..n stride-2 convolutions with padding 1 (sizes round up)."""
    sizes = [(h, w)]
    for _ in range(n):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


class _PixelLogits(nn.Module):
    """Reshape a flat or channel-stacked output into the per-subpixel logits layout."""

    def __init__(self, image_shape: tuple[int, int, int], k: int):
        super().__init__()
        self.image_shape, self.k = image_shape, k

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        if self.k == 1:
            return out.reshape(-1, c, h, w)
        return out.reshape(-1, c, self.k, h, w).permute(0, 1, 3, 4, 2)


class MLPEncoder(nn.Module):
    def __init__(self, image_shape, hidden: Sequence[int], out_features: int, activation: str = "tanh"):
        super().__init__()
        self.net = mlp([math.prod(image_shape), *hidden, out_features], ACTIVATIONS[activation])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int], image_shape, k: int, activation: str = "tanh"):
        super().__init__()
        self.net = mlp([in_features, *reversed(hidden), math.prod(image_shape) * k], ACTIVATIONS[activation])
        self.logits = _PixelLogits(tuple(image_shape), k)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(self.net(z))


class ConvEncoder(nn.Module):
    def __init__(self, image_shape, hidden: Sequence[int], out_features: int):
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for a, b in zip([c, *hidden[:-1]], hidden):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ELU()]
        h_out, w_out = _halvings(h, w, len(hidden))[-1]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(hidden[-1] * h_out * w_out, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int], image_shape, k: int):
        super().__init__()
        c, h, w = image_shape
        sizes = _halvings(h, w, len(hidden))
        self.start = (hidden[-1], *sizes[-1])
        self.linear = nn.Sequential(nn.Linear(in_features, math.prod(self.start)), nn.ELU())
        layers: list[nn.Module] = []
        channels = [c * k, *hidden]  # channels[i]: channels at resolution sizes[i]
        for i in range(len(hidden), 0, -1):
            layers += [
                nn.Upsample(size=sizes[i - 1], mode="nearest"),
                nn.Conv2d(channels[i], channels[i - 1], 3, padding=1),
            ] + ([nn.ELU()] if i > 1 else [])
        self.convs = nn.Sequential(*layers)
        self.logits = _PixelLogits(tuple(image_shape), k)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(self.convs(self.linear(z).reshape(-1, *self.start)))


def image_encoder(
    architecture: str, image_shape, hidden: Sequence[int], out_features: int, activation: str = "tanh"
) -> nn.Module:
    """Images (N, C, H, W) as floats -> (N, out_features); ``activation`` of the MLP (convs use ELU)."""
    if architecture == "mlp":
        return MLPEncoder(image_shape, hidden, out_features, activation)
    return ConvEncoder(image_shape, hidden, out_features)


def image_decoder(
    architecture: str, in_features: int, hidden: Sequence[int], image_shape, k: int, activation: str = "tanh"
) -> nn.Module:
    """Vectors (M, in_features) -> per-subpixel logits (M, C, H, W) or (M, C, H, W, k)."""
    if architecture == "mlp":
        return MLPDecoder(in_features, hidden, image_shape, k, activation)
    return ConvDecoder(in_features, hidden, image_shape, k)
