"""Down-shifted and down-right-shifted convolutions and the gated resnet block of PixelCNN++ [1].

No masks: causality comes from padding only above (and left) and from shifting. ``o`` is the output
position (itself a tap), ``x`` a kernel tap::

    DownShiftedConv2d (2, 3)     DownRightShiftedConv2d (2, 2)
        x x x                        x x
        x o x   rows <= r            x o     rows <= r, columns <= c
                all columns near c

Stacked, the first keeps "information from rows above only" once the input was shifted down one row
(``down_shift``), and the second keeps "from pixels before (r, c) in raster order" once the input was
shifted down or right: the streams u and ul of [1] (the vertical and horizontal stacks of [2]), which
together leave no blind spot.
With stride 2 they down-sample (output (i, j) reads input rows 2i-1..2i): sizes become ceil(H/2) x
ceil(W/2), odd sizes included; the transposed versions up-sample and crop to a requested size, taking
their outputs at (r, c) from input (r // 2, ...) only, so both directions keep the streams causal.

Sampling evaluates the layers at a few positions at a time ([3]): every layer keeps its input map in a
``StepCache`` (channels last, zero-padded like its convolution); ``store`` writes the input at a
``Span`` of positions (part of one row of one resolution), ``at`` computes the outputs at a span from
the windows stored there, one matmul, and ``step`` does both. Values are (N, L, C) tensors for a span of
L positions. The results equal the full convolution's up to float rounding (other summation orders).

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with
    Discretized Logistic Mixture Likelihood and Other Modifications. ICLR 2017.
[2] A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu. Conditional
    Image Generation with PixelCNN Decoders. NeurIPS 2016.
[3] P. Ramachandran, T. L. Paine, P. Khorrami, et al. Fast Generation for Convolutional Autoregressive
    Models. ICLR workshop 2017.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Row r gets row r-1 (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Column c gets column c-1 (zeros in column 0)."""
    return F.pad(x, (1, 0))[:, :, :, :-1]


def concat_elu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """ELU of x and of -x, concatenated over channels ([1], section 2.6): doubles the channels."""
    return F.elu(torch.cat([x, -x], dim))


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to channels-last values ``x`` (..., C_in)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class Span(NamedTuple):
    """Positions (row, start..stop-1) of resolution ``level`` (the image halved ``level`` times)."""

    level: int
    row: int
    start: int
    stop: int


class StepCache:
    """Every shifted layer's input map, channels last, for evaluating the layers span by span ([3]).

    A map is (N, top + height + bottom, left + width + right, C_in) at its input's resolution, zeros
    where nothing was stored: the convolution's zero padding, and positions not reached yet.
    """

    def __init__(self, height: int, width: int, condition: list[torch.Tensor] | None = None):
        self.height, self.width, self.maps, self.matrices = height, width, {}, {}
        self.condition = condition  # an image condition's features per resolution, (N, H_s, W_s, F), or None

    def size(self, level: int) -> tuple[int, int]:
        """(height, width) at resolution ``level``: halved ``level`` times, rounding up."""
        height, width = self.height, self.width
        for _ in range(level):
            height, width = (height + 1) // 2, (width + 1) // 2
        return height, width

    def write(self, layer: nn.Module, span: Span, x: torch.Tensor, pad=(0, 0, 0, 0)) -> None:
        """Store ``x`` (N, L, C) at ``span`` of ``layer``'s map, padded by ``pad`` = (left, right, top, bottom)."""
        left, right, top, bottom = pad
        if layer not in self.maps:
            height, width = self.size(span.level)
            self.maps[layer] = x.new_zeros(x.shape[0], top + height + bottom, left + width + right, x.shape[-1])
        self.maps[layer][:, top + span.row, left + span.start : left + span.stop] = x

    def matrix(self, conv: nn.Conv2d) -> torch.Tensor:
        """``conv``'s weight as a (C_out, kh * kw * C_in) matrix for channels-last windows (made once)."""
        if conv not in self.matrices:
            self.matrices[conv] = conv.weight.permute(0, 2, 3, 1).flatten(1)
        return self.matrices[conv]


class DownShiftedConv2d(nn.Conv2d):
    """(kh, kw) kernel, kh <= 2, kw odd: output (r, c) reads rows r-kh+1..r, columns c-kw//2..c+kw//2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 3), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        kh, kw = self.kernel_size
        self.pad = (kw // 2, kw // 2, kh - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))

    def store(self, cache: StepCache, span: Span, x: torch.Tensor) -> None:
        """Write the input ``x`` (N, L, C_in) at ``span`` (of the input's resolution)."""
        cache.write(self, span, x, self.pad)

    def at(self, cache: StepCache, span: Span) -> torch.Tensor:
        """The outputs (N, L, C_out) at ``span`` (of the output's resolution), from the stored inputs.

        In the padded map, output (i, j) reads rows stride*i + (0..kh-1), columns stride*j + (0..kw-1).
        """
        (kh, kw), stride = self.kernel_size, self.stride[0]
        rows = cache.maps[self][
            :, stride * span.row : stride * span.row + kh, stride * span.start : stride * (span.stop - 1) + kw
        ]  # (N, kh, columns, C_in)
        windows = rows.unfold(2, kw, stride).permute(0, 2, 1, 4, 3).flatten(2)  # (N, L, kh * kw * C_in)
        return F.linear(windows, cache.matrix(self), self.bias)

    def step(self, cache: StepCache, span: Span, x: torch.Tensor) -> torch.Tensor:
        """Stride 1: store the input ``x`` (N, L, C_in) at ``span``, return the outputs there."""
        self.store(cache, span, x)
        return self.at(cache, span)


class DownRightShiftedConv2d(DownShiftedConv2d):
    """(kh, kw) kernel, kh <= 2: output (r, c) reads rows r-kh+1..r, columns c-kw+1..c."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 2), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        kh, kw = self.kernel_size
        self.pad = (kw - 1, 0, kh - 1, 0)


class DownShiftedConvTranspose2d(nn.ConvTranspose2d):
    """Stride-2 up-sampling, (2, 3) kernel: output (r, c) reads input row r // 2, columns near c / 2.

    Uncropped, output column c' = 2j + k gets input column j through kernel column k; ``forward(x,
    size)`` crops columns ``left``.. and rows 0.. to ``size``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 3)):
        super().__init__(in_channels, out_channels, kernel_size, stride=2)
        self.left = self.kernel_size[1] // 2

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return super().forward(x)[:, :, : size[0], self.left : self.left + size[1]]

    def store(self, cache: StepCache, span: Span, x: torch.Tensor) -> None:
        """Write the input ``x`` (N, L, C_in) at ``span`` (of the coarser, input resolution)."""
        cache.write(self, span, x)

    def at(self, cache: StepCache, span: Span) -> torch.Tensor:
        """The outputs (N, L, C_out) at ``span``, from the stored input columns that reach it."""
        kw = self.kernel_size[1]
        stored = cache.maps[self][:, span.row // 2]  # (N, input width, C_in)
        first = max(0, (span.start + self.left - kw + 2) // 2)  # ceil((start + left - (kw - 1)) / 2)
        stop = min(stored.shape[1], (span.stop - 1 + self.left) // 2 + 1)
        x = stored[:, first:stop].transpose(1, 2)[:, :, None]  # (N, C_in, 1, columns)
        out = F.conv_transpose2d(x, self.weight, self.bias, stride=2)[:, :, span.row % 2]
        offset = span.start + self.left - 2 * first
        return out[:, :, offset : offset + span.stop - span.start].transpose(1, 2)


class DownRightShiftedConvTranspose2d(DownShiftedConvTranspose2d):
    """Stride-2 up-sampling, (2, 2) kernel: output (r, c) reads input (r // 2, c // 2) only."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, (2, 2))
        self.left = 0


class GatedResNet(nn.Module):
    """x + a * sigmoid(b), [a, b] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(skip))))) + c

    ([1], section 2.4 and figure 2; ``c`` an optional conditioning term (N, 2 channels, H, W), e.g. the
    projection of an image condition's features, added before the gate as [1]'s code adds h).
    ``conv`` is a shifted convolution class; ``skip_channels`` > 0 adds the 1x1 "nin" of an auxiliary
    input (the u stream feeding ul, or the shortcut from the up pass). The last convolution starts at a
    tenth of PyTorch's default scale (like the init_scale 0.1 of [1]) so that the residual stream stays
    O(1) through many blocks.
    """

    def __init__(self, channels: int, conv: type, skip_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        self.conv_in = conv(2 * channels, channels)
        self.skip = nn.Conv2d(2 * skip_channels, channels, 1) if skip_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = conv(2 * channels, 2 * channels)
        with torch.no_grad():
            self.conv_out.weight.mul_(0.1)
            self.conv_out.bias.zero_()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv_in(concat_elu(x))
        if skip is not None:
            h = h + self.skip(concat_elu(skip))
        out = self.conv_out(self.dropout(concat_elu(h)))
        a, b = (out if c is None else out + c).chunk(2, 1)
        return x + a * torch.sigmoid(b)

    def step(
        self,
        cache: StepCache,
        span: Span,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        c: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``forward`` at ``span`` only, channels last: x, skip, c and the result are (N, L, C)."""
        h = self.conv_in.step(cache, span, concat_elu(x, -1))
        if skip is not None:
            h = h + pointwise(self.skip, concat_elu(skip, -1))
        out = self.conv_out.step(cache, span, self.dropout(concat_elu(h, -1)))
        a, b = (out if c is None else out + c).chunk(2, -1)
        return x + a * torch.sigmoid(b)
