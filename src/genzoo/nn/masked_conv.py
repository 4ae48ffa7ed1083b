"""Masked (causal) 2-D convolutions for raster-order autoregressive image models [1].

A masked convolution zeroes the kernel weights that would let an output see "future" inputs in the
ordering: rows below, pixels to the right in the same row and, at the centre pixel, colours that come
later. Kernel of size 3 for a single colour group (``1`` = weight used, ``0`` = masked)::

    mask 'A' (first layer)      mask 'B' (later layers)
        1 1 1                       1 1 1
        1 0 0                       1 1 0
        0 0 0                       0 0 0

'A' excludes the centre pixel itself: the first layer may not see the subpixel it predicts. 'B' keeps
the centre: after an 'A' layer the features at a pixel already only hold information from the past.

RGB channel grouping: with ``color_groups = C`` the input and output channels are each split into C
contiguous, equal groups (group g belongs to colour g, e.g. R, G, B). Off-centre taps connect all
groups. At the centre tap, an output of group g sees input groups ``< g`` under 'A' and ``<= g`` under
'B'. For C = 3 the centre tap's group-to-group connectivity (rows: output R, G, B; columns: input)::

    mask 'A'      mask 'B'
    0 0 0         1 0 0
    1 0 0         1 1 0
    1 1 0         1 1 1

so R is predicted from past pixels only, G also from R of the same pixel, B also from R and G.
A 1x1 convolution with mask 'B' is a per-pixel linear map that keeps this colour order.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016,
    section 3.4 (masked convolution, masks A and B).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(
    in_channels: int, out_channels: int, kernel_size: int, mask_type: str, color_groups: int = 1
) -> torch.Tensor:
    """The 0/1 float mask of shape (out_channels, in_channels, k, k) described in the module docstring."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    for name, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if n % color_groups:
            raise ValueError(f"{name}={n} must be divisible by color_groups={color_groups}")
    c = kernel_size // 2
    mask = torch.ones(out_channels, in_channels, kernel_size, kernel_size)
    mask[:, :, c, c + 1 :] = 0  # right of the centre, same row
    mask[:, :, c + 1 :, :] = 0  # rows below
    out_group = torch.arange(out_channels) * color_groups // out_channels
    in_group = torch.arange(in_channels) * color_groups // in_channels
    earlier = in_group[None, :] < out_group[:, None] if mask_type == "A" else in_group[None, :] <= out_group[:, None]
    mask[:, :, c, c] = earlier.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-padded ``nn.Conv2d`` whose weight is multiplied by a fixed causal mask in ``forward``.

    The mask is a (non-persistent) buffer rebuilt from the constructor arguments; the stored weight is
    never modified, so the masked entries simply receive zero gradient.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        mask_type: str = "B",
        color_groups: int = 1,
        bias: bool = True,
    ):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.mask_type = mask_type
        self.color_groups = color_groups
        self.register_buffer(
            "mask", causal_mask(in_channels, out_channels, kernel_size, mask_type, color_groups), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_type={self.mask_type!r}, color_groups={self.color_groups}"
