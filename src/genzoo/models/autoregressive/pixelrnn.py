"""PixelRNN [1]: Row LSTM and Diagonal BiLSTM image models.

    integers (N, C, H, W) -> [-1, 1] -> 7x7 conv, mask 'A' -> 2h features per pixel (C colour groups)
      -> num_layers residual LSTM layers (``genzoo.nn.lstm2d``): s <- s + conv1x1_B(LSTM(s))
      -> ReLU, 1x1 conv mask 'B', ReLU, 1x1 conv mask 'B' -> per subpixel: a Bernoulli logit
         (2 levels) or ``levels`` softmax logits

The first layer's mask 'A' keeps a subpixel's own value (and its pixel's later colours) out of its
features; every later layer is mask 'B' or reads only earlier pixels, so the conditional of
subpixel (c, r, w) sees the pixels before it in raster order and colours < c of its own pixel
(R -> G -> B, [1] section 3.4). The Row LSTM has a triangular context (a blind spot above-right);
the Diagonal BiLSTM sees the whole past ([1] figure 4; see ``full_context``). The defaults follow
[1]'s binarized-MNIST model: 7 Diagonal BiLSTM layers with h = 16 (79.20 nats in [1]).

Sampling: ``sample_cached`` keeps, per layer, the recurrent states of the current and previous rows,
so a subpixel costs one pixel's work per layer plus per-row work amortized over the row, instead of
a full forward pass; it visits and draws the subpixels exactly as ``sample_naive`` does, so the two
give the same images for the same generator (up to float rounding differences in the last bit of a
logit, which would change a draw only with probability ~1e-7).

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import AutoregressiveModel
from genzoo.nn.distributions import num_params, symmetric_inputs
from genzoo.nn.lstm2d import DiagonalBiLSTMLayer, RowLSTMLayer, conv_at
from genzoo.nn.masked_conv import MaskedConv2d

FIRST_KERNEL = 7  # [1] table 1: 7x7 mask-'A' input convolution


class _PixelRNN(AutoregressiveModel):
    """The shared stack; subclasses choose the recurrent layer."""

    def __init__(self, image_shape, levels: int, hidden: int, num_layers: int, make_layer):
        super().__init__(image_shape, levels)
        channels = self.image_shape[0]
        if not isinstance(hidden, int) or hidden < 1 or hidden % channels:
            raise ValueError(
                f"hidden must be a positive multiple of the {channels} image channels (one feature "
                f"group per colour), got {hidden!r}; e.g. hidden={16 * channels}"
            )
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        width, k = 2 * hidden, num_params(self.levels)
        self.input_conv = MaskedConv2d(channels, width, FIRST_KERNEL, "A", channels)
        self.layers = nn.ModuleList(make_layer() for _ in range(num_layers))
        self.head = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(width, width, 1, "B", channels),
            nn.ReLU(),
            MaskedConv2d(width, channels * k, 1, "B", channels),
        )
        with torch.no_grad():  # start near uniform: initial loss ~ C*H*W*ln(levels) nats, whatever the seed
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        image = symmetric_inputs(x, self.levels)
        s = self.input_conv(image)
        for layer in self.layers:
            s = layer(s, image)
        return self._params(self.head(s))

    def _params(self, out: torch.Tensor) -> torch.Tensor:
        """(N, C * k, H, W) head output -> logits (N, C, H, W) or (N, C, H, W, levels)."""
        if self.levels == 2:
            return out
        return out.unflatten(1, (self.image_shape[0], self.levels)).permute(0, 1, 3, 4, 2)

    def _pixel(self, inputs: torch.Tensor, caches: list, row: int, col: int) -> torch.Tensor:
        """Parameters (N, C[, levels]) of pixel (row, col) given the padded inputs; updates the caches."""
        s = conv_at(self.input_conv, inputs[:, :, row : row + FIRST_KERNEL, col : col + FIRST_KERNEL])
        for layer, cache in zip(self.layers, caches):
            s = layer.step(cache, col, s)
        return self._params(self.head(s[:, :, None, None]))[:, :, 0, 0]

    def sample_cached(self, x, known, y, generator):
        """Ancestral sampling one pixel column of the network at a time; same draws as ``sample_naive``."""
        n, (channels, rows, width) = x.shape[0], self.image_shape
        pad = FIRST_KERNEL // 2
        inputs = F.pad(symmetric_inputs(x, self.levels), (pad, pad, pad, pad))
        caches = [layer.start_cache(n, width, inputs) for layer in self.layers]
        params = None
        for row in range(rows):
            for col in range(width):
                final = False  # do the recorded states at this pixel already see all its colours?
                for ch in range(channels):
                    keep = known[:, ch, row, col]
                    if bool(keep.all()):
                        continue
                    pixel = self._pixel(inputs, caches, row, col)
                    if params is None:
                        params = pixel.new_zeros(n, channels, rows, width, *pixel.shape[2:])
                    params[:, :, row, col] = pixel
                    drawn = self.pixel_sample(params, (ch, row, col), x, generator)
                    x[:, ch, row, col] = torch.where(keep, x[:, ch, row, col], drawn)
                    inputs[:, ch, row + pad, col + pad] = symmetric_inputs(x[:, ch, row, col], self.levels)
                    final = ch == channels - 1  # nothing at this pixel depends on its last colour
                if not final:
                    self._pixel(inputs, caches, row, col)
            for layer, cache in zip(self.layers, caches):
                layer.end_row(cache, inputs[:, :, row + pad, pad : pad + width])
        return x


class RowLSTM(_PixelRNN):
    """PixelRNN with Row LSTM layers [1]: rows computed in parallel, a triangular context.

    hidden: h, the LSTM state size (the residual stream has 2h features); a multiple of C (None: 16 per
    colour channel, 16 for grayscale as in [1], 48 for RGB).
    num_layers: residual Row LSTM layers. kernel_size: width k of both 1 x k convolutions ([1]: 3).
    """

    def __init__(self, image_shape, levels: int, hidden: int | None = None, num_layers: int = 7, kernel_size: int = 3):
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        channels = int(image_shape[0])
        hidden = 16 * channels if hidden is None else hidden
        super().__init__(image_shape, levels, hidden, num_layers, lambda: RowLSTMLayer(hidden, channels, kernel_size))


class DiagonalBiLSTM(_PixelRNN):
    """PixelRNN with Diagonal BiLSTM layers [1]: diagonals computed in parallel, the full context.

    hidden: h, the LSTM state size per direction (the residual stream has 2h features); a multiple of C
    (None: 16 per colour channel).
    num_layers: residual Diagonal BiLSTM layers ([1]: 7 with h = 16 for binarized MNIST).
    full_context: let the right-to-left direction read the raw pixels too, so that the last pixel of
    the previous row is seen ([1] as written misses it beyond the 7x7 input layer's reach; False
    reproduces [1] exactly; see ``genzoo.nn.lstm2d``).
    """

    def __init__(
        self, image_shape, levels: int, hidden: int | None = None, num_layers: int = 7, full_context: bool = True
    ):
        channels = int(image_shape[0])
        hidden = 16 * channels if hidden is None else hidden
        super().__init__(
            image_shape, levels, hidden, num_layers, lambda: DiagonalBiLSTMLayer(hidden, channels, bool(full_context))
        )
