"""Convolutions evaluated one position at a time, for fast sampling of convolutional autoregressive models.

Sampling an image model in raster order with full forward passes recomputes every activation of the
image once per subpixel. But a causal (masked) convolution's output at (i, j) reads only its input at
(i, j) and before, so each layer can instead keep a cache of its input, padded like the convolution,
and compute its output at the single position being generated from the k x k neighbourhood there::

    cache of the layer's input (zero border = the convolution's zero padding)
        . . . . . . .
        . x x x x x .        x: written at earlier positions
        . x x[x x x].        [ ]: the patch read for (i, j) (rows below the centre are
        . x x[x o  ].             masked out and never read); o: the input at (i, j),
        . . . . . . .             written just before the output there is computed

One step costs one (N, rows*k*C_in) x (rows*k*C_in, C_out) matmul instead of a convolution over the
whole image; a 1x1 convolution is a plain matmul with no cache. The results equal the full
convolution's up to float rounding (the sums are taken in another order).
"""

from __future__ import annotations

import torch
from torch import nn


class IncrementalConv2d:
    """A stride-1, same-padded ``nn.Conv2d`` (a ``MaskedConv2d`` included) evaluated at one position at a time.

    ``step(value, i, j)`` stores the layer's input at (i, j), ``value`` of shape (N, C_in), and returns
    its output there, (N, C_out). Positions must be stepped in raster order and every position a later
    one reads must have been stepped first (a position may be stepped again, e.g. after more of its
    colours are known). Weights are read once, at construction (the mask applied): build a new one
    after changing the module.
    """

    def __init__(self, conv: nn.Conv2d, batch: int, height: int, width: int):
        k = conv.kernel_size[0]
        if (
            conv.kernel_size != (k, k)
            or k % 2 == 0
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
            or conv.padding != (k // 2, k // 2)
            or conv.padding_mode != "zeros"
        ):
            raise ValueError(
                f"incremental evaluation needs a square, odd, stride-1, same-padded convolution, got {conv}"
            )
        weight = conv.weight.detach()
        mask = getattr(conv, "mask", None)
        if mask is not None:
            weight = weight * mask  # the same product MaskedConv2d.forward takes
        used_rows = (weight != 0).flatten(0, 1).any(0).any(1).nonzero()
        # rows below the last one with a nonzero tap (below the centre, for a causal mask) are never read
        self.rows = int(used_rows.max()) + 1 if len(used_rows) else 1
        self.pad = k // 2
        self.k = k
        # (C_out, C_in, rows, k) -> (rows*k*C_in, C_out) to match a channels-last patch
        self.weight = weight[:, :, : self.rows].permute(2, 3, 1, 0).reshape(-1, conv.out_channels).contiguous()
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.cache = None
        if k > 1:  # channels last, so that writing one position's channels is one contiguous copy
            self.cache = weight.new_zeros(batch, height + 2 * self.pad, width + 2 * self.pad, conv.in_channels)

    def store(self, value: torch.Tensor, i: int, j: int) -> None:
        """Store the input ``value`` (N, C_in) at (i, j) without computing the output there."""
        if self.cache is not None:
            self.cache[:, i + self.pad, j + self.pad] = value

    def step(self, value: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The output (N, C_out) at (i, j), after storing the input ``value`` (N, C_in) there."""
        if self.cache is None:
            patch = value
        else:
            self.store(value, i, j)
            patch = self.cache[:, i : i + self.rows, j : j + self.k].reshape(value.shape[0], -1)
        if self.bias is None:
            return patch @ self.weight
        return torch.addmm(self.bias, patch, self.weight)


def incremental_convs(module: nn.Module, batch: int, height: int, width: int) -> dict[nn.Module, IncrementalConv2d]:
    """An ``IncrementalConv2d`` with its own cache for every ``nn.Conv2d`` inside ``module``."""
    return {m: IncrementalConv2d(m, batch, height, width) for m in module.modules() if isinstance(m, nn.Conv2d)}


def sequential_step(
    layers: nn.Sequential, value: torch.Tensor, i: int, j: int, convs: dict[nn.Module, IncrementalConv2d]
) -> torch.Tensor:
    """``layers`` applied at position (i, j) to its input there, ``value`` (N, C).

    Convolutions go through their ``IncrementalConv2d`` in ``convs``; every other module must act
    elementwise (activations, dropout) and is applied to the (N, C) vector as it is.
    """
    for layer in layers:
        value = convs[layer].step(value, i, j) if layer in convs else layer(value)
    return value
