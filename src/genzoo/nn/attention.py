"""Causal self-attention over the pixels of an image, as in the attention blocks of PixelSNAIL [1].

Every pixel p (raster position t = row * W + column) attends to all pixels strictly before it: keys and
values come from positions s < t, so the attention output at p carries the whole past of the image and
nothing of p itself. Attention mask for a 2 x 2 image (rows: query position t, columns: key position s,
``1`` = attended)::

    t\\s  0 1 2 3
    0    0 0 0 0      pixel 0 has no past: its output is exactly zero
    1    1 0 0 0
    2    1 1 0 0
    3    1 1 1 0      the diagonal is excluded, so a mask-A layer may read the output

Colour order (RGB, R -> G -> B within a pixel). Keys and values are computed from the *context*
(features concatenated with the image, [1]) of strictly earlier pixels, where every colour is already
known, so they need no channel mask. The queries are colour-grouped: the query of colour group g is a
mask-B 1x1 convolution of the colour-grouped features (``genzoo.nn.masked_conv``), so it reads feature
groups <= g, which depend only on the past and on colours < g of p. The output of group g is the
attention read with group g's query, laid out in contiguous colour groups, so it can feed mask-B layers
that keep the colour order. With one group (one channel, or a model whose every feature is strictly
past) this is ordinary single- or multi-head causal attention.

Each query and key also sees the pixel's position (row and column scaled to [-1/2, 1/2)), as the
"background" channels of [1]'s implementation do.

[1] X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. PixelSNAIL: An Improved Autoregressive Generative
    Model. ICML 2018.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.nn.incremental import IncrementalConv2d
from genzoo.nn.masked_conv import MaskedConv2d


def causal_pixel_mask(
    height: int, width: int, include_current: bool = False, device: torch.device | None = None
) -> torch.Tensor:
    """Boolean (T, T) matrix, T = H*W: entry (t, s) is True where query position t may read key s < t."""
    t = torch.arange(height * width, device=device)
    return t[None, :] <= t[:, None] if include_current else t[None, :] < t[:, None]


def pixel_positions(height: int, width: int, device=None) -> torch.Tensor:
    """(1, 2, H, W) row and column coordinates, each scaled to [-1/2, 1/2)."""
    rows = (torch.arange(height, device=device, dtype=torch.float32) / height - 0.5)[:, None].expand(height, width)
    cols = (torch.arange(width, device=device, dtype=torch.float32) / width - 0.5)[None, :].expand(height, width)
    return torch.stack([rows, cols])[None]


class CausalPixelAttention(nn.Module):
    """Causal attention over raster positions with colour-grouped queries (module docstring).

    feature_channels: width of the colour-grouped features that give the queries (a multiple of ``groups``).
    context_channels: width of the context that gives keys and values (features and image, concatenated).
    key_channels / value_channels: per head; ``heads`` heads share one softmax-normalized read each.
    groups: colour groups of the queries and of the output, whose width is groups * heads * value_channels.
    include_current: also attend to the current pixel. Breaks causality; only for tests that must catch it.

    ``forward(features, context)``: (N, F, H, W), (N, Ctx, H, W) -> (N, groups*heads*value_channels, H, W).
    """

    def __init__(
        self,
        feature_channels: int,
        context_channels: int,
        key_channels: int = 16,
        value_channels: int = 32,
        heads: int = 1,
        groups: int = 1,
        include_current: bool = False,
    ):
        super().__init__()
        self.key_channels, self.value_channels, self.heads, self.groups = key_channels, value_channels, heads, groups
        self.include_current = include_current
        self.query = MaskedConv2d(feature_channels, groups * heads * key_channels, 1, "B", groups)
        self.query_position = nn.Conv2d(2, groups * heads * key_channels, 1, bias=False)
        self.key = nn.Conv2d(context_channels + 2, heads * key_channels, 1)
        self.value = nn.Conv2d(context_channels + 2, heads * value_channels, 1)

    @property
    def out_channels(self) -> int:
        return self.groups * self.heads * self.value_channels

    def forward(self, features: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, _, h, w = features.shape
        g, m, dk, dv = self.groups, self.heads, self.key_channels, self.value_channels
        pos = pixel_positions(h, w, features.device).to(features.dtype)
        q = self.query(features) + self.query_position(pos)
        context = torch.cat([context, pos.expand(n, -1, -1, -1)], 1)
        q = q.reshape(n, g, m, dk, h * w).transpose(-1, -2)  # (N, G, heads, T, dk)
        k = self.key(context).reshape(n, 1, m, dk, h * w)  # (N, 1, heads, dk, T): shared by the groups
        v = self.value(context).reshape(n, 1, m, dv, h * w).transpose(-1, -2)  # (N, 1, heads, T, dv)
        allowed = causal_pixel_mask(h, w, self.include_current, features.device)
        scores = (q @ k) / math.sqrt(dk)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        # zero the weights outside the mask: a row with no past (pixel 0) reads exactly nothing
        weights = torch.softmax(scores, -1).masked_fill(~allowed, 0.0)
        out = weights @ v  # (N, G, heads, T, dv)
        return out.transpose(-1, -2).reshape(n, g * m * dv, h, w)


class AttentionCache:
    """``CausalPixelAttention`` evaluated one position at a time in raster order (fast sampling).

    ``append(context, i, j)`` stores the key and value of pixel (i, j) once its context (N, Ctx) is final;
    ``read(features, i, j)`` gives the output (N, out_channels) at (i, j) from its features (N, F) and the
    keys and values appended so far: one query against t cached keys, O(t) instead of a whole forward
    pass. Pixels must be appended in raster order, each after its own reads. Equal to the full forward
    pass up to float rounding.
    """

    def __init__(self, attention: CausalPixelAttention, batch: int, height: int, width: int):
        if attention.include_current:
            raise ValueError("cached attention reads strictly earlier pixels only")
        self.attention = attention
        self.width = width
        self.convs = {
            name: IncrementalConv2d(getattr(attention, name), batch, height, width)
            for name in ("query", "query_position", "key", "value")
        }
        weight = attention.key.weight
        self.positions = pixel_positions(height, width, weight.device).to(weight.dtype)[0]
        m, dk, dv = attention.heads, attention.key_channels, attention.value_channels
        self.keys = weight.new_zeros(batch, m, height * width, dk)
        self.values = weight.new_zeros(batch, m, height * width, dv)
        self.count = 0  # pixels appended so far

    def append(self, context: torch.Tensor, i: int, j: int) -> None:
        t = i * self.width + j
        if t != self.count:
            raise ValueError(f"append pixels in raster order: expected position {self.count}, got {t}")
        pos = self.positions[:, i, j].expand(context.shape[0], 2)
        context = torch.cat([context, pos], 1)
        n, m = context.shape[0], self.attention.heads
        self.keys[:, :, t] = self.convs["key"].step(context, i, j).reshape(n, m, -1)
        self.values[:, :, t] = self.convs["value"].step(context, i, j).reshape(n, m, -1)
        self.count += 1

    def read(self, features: torch.Tensor, i: int, j: int) -> torch.Tensor:
        a = self.attention
        n, t = features.shape[0], i * self.width + j
        if t > self.count:
            raise ValueError(f"position {t} reads pixels that were never appended (have {self.count})")
        if t == 0:
            return features.new_zeros(n, a.out_channels)
        pos = self.positions[:, i, j].expand(n, 2)
        q = self.convs["query"].step(features, i, j) + self.convs["query_position"].step(pos, i, j)
        q = q.reshape(n, a.groups, a.heads, 1, a.key_channels)
        k = self.keys[:, None, :, :t].transpose(-1, -2)  # (N, 1, heads, dk, t)
        weights = torch.softmax((q @ k) / math.sqrt(a.key_channels), -1)
        return (weights @ self.values[:, None, :, :t]).reshape(n, a.out_channels)
