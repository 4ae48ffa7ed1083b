"""Gated PixelCNN layers: a vertical and a horizontal stack with no blind spot [1][2].

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016
    (masked convolutions, masks A/B, R -> G -> B channel groups).
[2] A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu, "Conditional
    Image Generation with PixelCNN Decoders", NeurIPS 2016 (gated units, the two stacks, conditioning).

The two kernels of one layer, kernel_size k = 5 (``x`` a weight, ``o`` the output position)::

    vertical, (k//2+1) x k           horizontal, 1 x (k//2+1)
      x x x x x                        x x o    o: the current pixel, channel-masked by group:
      x x x x x                                    mask A in the first layer (groups strictly before),
      x x o x x  <- includes row r                 mask B after (groups before and the same group)

The vertical stack needs no mask: its output at row r has seen rows <= r, and it reaches the
horizontal stack only through ``shift_down`` (row r receives the vertical features of row r-1), so
there it is information about the rows above only, every column of them. The horizontal stack adds
the pixels to the left. Receptive field of the output at ``o`` after L layers (k = 3, L = 2)::

      v v v v v      v: L*(k//2)+1 rows above, columns c - L*(k//2) .. c + L*(k//2), all channels
      v v v v v
      v v v v v
      h h o . .      h: L*(k//2) pixels to the left; at o itself, the earlier channels only

A plain PixelCNN stack of 3x3 mask-B convolutions instead misses a wedge above-right of ``o`` (the
blind spot of [2], Figure 1): here (r-1, c+1), (r-2, c+2), ... are all seen.

Hidden channels are split into contiguous blocks, one per image channel (R, G, B); a gate's tanh
and sigmoid halves share the block layout, so gating never mixes groups.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn.activations import tanh


def channel_groups(channels: int, groups: int) -> torch.Tensor:
    """Group (image channel) of each of ``channels`` hidden channels: contiguous equal blocks."""
    return torch.arange(channels) * groups // channels


def gate(pre: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) over the two halves of dimension 1 ([2], eq. 2)."""
    a, b = pre.chunk(2, dim=1)
    return tanh(a) * torch.sigmoid(b)


def shift_down(v: torch.Tensor) -> torch.Tensor:
    """Move (N, C, H, W) features down one row (zeros in row 0): row r gets row r-1."""
    return F.pad(v, (0, 0, 1, 0))[:, :, :-1, :]


class VerticalConv(nn.Conv2d):
    """(k//2+1) x k convolution whose output at row r sees rows r-k//2 .. r (no mask, cropped padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, (kernel_size // 2 + 1, kernel_size))
        self.half = kernel_size // 2

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(v, (self.half, self.half, self.half, 0)))

    def row(self, window: torch.Tensor) -> torch.Tensor:
        """One output row (N, out, W) from the padded window (N, in, k//2+1, W + 2*(k//2))."""
        return super().forward(window)[:, :, 0, :]


class HorizontalConv(nn.Conv2d):
    """1 x width convolution over the current row, ending at the current pixel, masked by channel group.

    ``width=1`` gives the channel-masked 1x1 convolutions of the horizontal stack and the output layers.
    ``strict`` (mask A): output group g sees input groups < g at the current pixel; else (mask B) <= g.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        in_groups: torch.Tensor,
        out_groups: torch.Tensor,
        strict: bool,
    ):
        super().__init__(in_channels, out_channels, (1, width))
        mask = torch.ones(out_channels, in_channels, 1, width)
        allowed = in_groups[None, :] < out_groups[:, None] if strict else in_groups[None, :] <= out_groups[:, None]
        mask[:, :, 0, -1] = allowed.float()
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the config, never stored

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        width = self.kernel_size[1]
        return F.conv2d(F.pad(h, (width - 1, 0)), self.masked_weight(), self.bias)

    def matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(out, in*width) masked weight and bias: ``F.linear(window.flatten(1), *matrix)`` on a
        (N, in, width) window of the row ending at a pixel gives that pixel's output (fast sampling)."""
        return self.masked_weight().flatten(1), self.bias


class GatedLayer(nn.Module):
    """One layer of both stacks ([2], Figure 2), with a skip output.

    v' = gate(V * v + e_v)                      vertical stack, no residual ([2]: it did not help)
    g  = gate(H * h + 1x1(shift_down(V * v + e_v)) + e_h)
    h' = h + 1x1_res(g)  (first layer: 1x1_res(g)),   skip = 1x1_skip(g)

    ``e_v``, ``e_h``: the class embedding rows, (N, 2p) each, or maps (N, 2p, H, W) of an image
    condition ([2], eq. 5), or None.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, image_channels: int, first: bool):
        super().__init__()
        in_groups = torch.arange(in_channels) if first else channel_groups(in_channels, image_channels)
        hidden = channel_groups(channels, image_channels)
        self.channels = channels
        self.first = first
        self.vertical = VerticalConv(in_channels, 2 * channels, kernel_size)
        self.horizontal = HorizontalConv(
            in_channels, 2 * channels, kernel_size // 2 + 1, in_groups, hidden.repeat(2), strict=first
        )
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)  # rows above only: no mask needed
        self.out = HorizontalConv(channels, 2 * channels, 1, hidden, hidden.repeat(2), strict=False)

    def forward(self, v, h, e_v=None, e_h=None):
        """(v', h', skip) for whole images; the cached sampler repeats these sums in the same order."""
        v_pre = self.vertical(v)
        if e_v is not None:
            v_pre = v_pre + (e_v[:, :, None, None] if e_v.dim() == 2 else e_v)
        h_pre = self.horizontal(h) + self.v_to_h(shift_down(v_pre))
        if e_h is not None:
            h_pre = h_pre + (e_h[:, :, None, None] if e_h.dim() == 2 else e_h)
        res, skip = self.out(gate(h_pre)).chunk(2, dim=1)
        return gate(v_pre), (res if self.first else h + res), skip
