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

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with
    Discretized Logistic Mixture Likelihood and Other Modifications. ICLR 2017.
[2] A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu. Conditional
    Image Generation with PixelCNN Decoders. NeurIPS 2016.
[3] P. Ramachandran, T. L. Paine, P. Khorrami, et al. Fast Generation for Convolutional Autoregressive
    Models. ICLR workshop 2017.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Row r gets row r-1 (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Column c gets column c-1 (zeros in column 0)."""
    return F.pad(x, (1, 0))[:, :, :, :-1]


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of x and of -x, concatenated over channels ([1], section 2.6): doubles the channels."""
    return F.elu(torch.cat([x, -x], 1))


class RowCache:
    """Every shifted layer's input map, so that one image row can be recomputed alone (sampling [3]).

    ``row`` is the image row being recomputed; at resolution ``level`` (halved ``level`` times) that is
    row ``row >> level``. A layer stores its new input row in its map and reads the rows above it from
    there (zeros above the image), so those rows must hold their final values. Outputs at row r depend
    on rows <= r only, so going through the rows in order gives the full pass's outputs, up to float
    rounding: convolution algorithms, and vectorized elementwise kernels at a tensor's tail, round
    differently for different sizes.
    """

    def __init__(self, height: int):
        self.height, self.row, self.maps = height, 0, {}

    def at(self, level: int) -> int:
        return self.row >> level

    def window(self, key, x: torch.Tensor, level: int, first: int, last: int) -> torch.Tensor:
        """Store ``x`` (N, C, 1, W) as row ``at(level)`` of map ``key``; return its rows first..last."""
        if key not in self.maps:
            height = self.height
            for _ in range(level):
                height = (height + 1) // 2
            self.maps[key] = x.new_zeros(x.shape[0], x.shape[1], height + 1, x.shape[3])  # + a zero row on top
        stored = self.maps[key]
        stored[:, :, self.at(level) + 1] = x[:, :, 0]
        assert first >= -1, "kernels reach one row above at most"
        return stored[:, :, first + 1:last + 2]


class DownShiftedConv2d(nn.Conv2d):
    """(kh, kw) kernel, kh <= 2, kw odd: output (r, c) reads rows r-kh+1..r, columns c-kw//2..c+kw//2.

    ``rows``/``level``: compute the single row ``rows.at(level)`` from its input row (``RowCache``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 3), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        kh, kw = self.kernel_size
        self.pad = (kw // 2, kw // 2, kh - 1, 0)

    def forward(self, x: torch.Tensor, rows: RowCache | None = None, level: int = 0) -> torch.Tensor:
        if rows is None:
            return super().forward(F.pad(x, self.pad))
        i = rows.at(level)
        if self.stride[0] == 1:
            x = rows.window(self, x, level, i - self.kernel_size[0] + 1, i)
        else:  # down-sampling to ``level``: reads rows 2i-1, 2i of the finer level
            x = rows.window(self, x, level - 1, 2 * i - 1, 2 * i)
        return super().forward(F.pad(x, self.pad[:2]))



class DownRightShiftedConv2d(DownShiftedConv2d):
    """(kh, kw) kernel, kh <= 2: output (r, c) reads rows r-kh+1..r, columns c-kw+1..c."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 2), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        kh, kw = self.kernel_size
        self.pad = (kw - 1, 0, kh - 1, 0)


class DownShiftedConvTranspose2d(nn.ConvTranspose2d):
    """Stride-2 up-sampling, (2, 3) kernel: output (r, c) reads input row r // 2, columns near c / 2.

    ``forward(x, size)`` crops to ``size``; with ``rows``, ``x`` is input row rows.at(level + 1) and the
    result is output row rows.at(level) (no cache needed: that row reads no other input row).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 3)):
        super().__init__(in_channels, out_channels, kernel_size, stride=2)
        self.left = self.kernel_size[1] // 2

    def forward(self, x: torch.Tensor, size, rows: RowCache | None = None, level: int = 0) -> torch.Tensor:
        out = super().forward(x)[:, :, :, self.left:self.left + size[1]]
        if rows is None:
            return out[:, :, :size[0]]
        parity = rows.at(level) & 1
        return out[:, :, parity:parity + 1]


class DownRightShiftedConvTranspose2d(DownShiftedConvTranspose2d):
    """Stride-2 up-sampling, (2, 2) kernel: output (r, c) reads input (r // 2, c // 2) only."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, (2, 2))
        self.left = 0


class GatedResNet(nn.Module):
    """x + a * sigmoid(b), [a, b] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(skip)))))

    ([1], section 2.4 and figure 2). ``conv`` is a shifted convolution class; ``skip_channels`` > 0
    adds the 1x1 "nin" of an auxiliary input (the u stream feeding ul, or the shortcut from the
    up pass). The last convolution starts at a tenth of PyTorch's default scale (like the init_scale
    0.1 of [1]) so that the residual stream stays O(1) through many blocks.
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

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, rows: RowCache | None = None,
                level: int = 0) -> torch.Tensor:
        h = self.conv_in(concat_elu(x), rows, level)
        if skip is not None:
            h = h + self.skip(concat_elu(skip))
        a, b = self.conv_out(self.dropout(concat_elu(h)), rows, level).chunk(2, 1)
        return x + a * torch.sigmoid(b)
