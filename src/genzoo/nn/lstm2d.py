"""Two-dimensional LSTM layers of PixelRNN [1]: the Row LSTM and the Diagonal BiLSTM.

Both are residual layers on a stream of ``2h`` features per pixel (h = ``hidden``): a masked
input-to-state convolution gives the four gates (4h features), an unmasked state-to-state
convolution adds the recurrent part, and a 1x1 mask-'B' convolution maps the h-feature LSTM output back
to 2h features that are added to the stream ([1] section 3.3). The gates are
``o, f, i = sigmoid(.)``, ``g = tanh(.)``, ``c = f * c_prev + i * g``, ``h = o * tanh(c)``.

RGB: every feature map is split into C contiguous colour groups (see ``genzoo.nn.masked_conv``).
Gate maps are laid out group-major, ``[group][o, f, i, g][h / C]``, so that the contiguous split of
the 4h gate features gives each colour group its own four gates and the cell never mixes groups. The
state-to-state convolutions are unmasked: they only read the states of pixels that come strictly
earlier, all of whose colours are already known ([1] table 1).

Row LSTM (``RowLSTMLayer``, kernel width k = 3) processes the image one row at a time. The gates of
row r are ``K_is * x_r`` (1 x k, mask 'B': the pixels left of ``o`` and ``o`` itself) plus
``K_ss * h_{r-1}`` (1 x k over the previous row's states). The context is a triangle (k = 3; the
7x7 input layer and further layers widen it, but the region far above-right stays unseen)::

    x x x x x x x      row r-3: states at columns c-3 .. c+3
    . x x x x x .      row r-2: c-2 .. c+2
    . . x x x . .      row r-1: the previous row's states at c-1, c, c+1
    . . x o . . .      row r: the pixel to the left, and o itself (mask 'B': earlier colours only)

Diagonal BiLSTM (``DiagonalBiLSTMLayer``) skews the map so that row r moves right by r; every
diagonal of the image becomes a column, and a column-wise LSTM whose 2 x 1 state-to-state kernel
reads, in image coordinates, the pixel above (r-1, c) and the pixel to the left (r, c-1)::

    image          skewed (H x (W + H - 1))
    a b c          a b c . .
    d e f    ->    . d e f .      column t holds the pixels with r + c = t
    g h i          . . g h i

The input-to-state convolution is 1x1 (mask 'B'). A second LSTM runs right-to-left (on the map
flipped horizontally) and so sees the whole current row; its output is shifted down by one row
before being added, so the output at (r, c) combines the left-to-right state (r, c) (everything above
and to the left) with the right-to-left state (r-1, c) (everything above and to the right): the
context of rows < r and the pixels before c ([1] section 3.2, figure 2).

One pixel escapes this in [1] as written: the stream at a pixel never holds that pixel's own value
(mask 'A'; for colour images, its last colour), so no stream of row r-1 holds its last pixel
(r-1, W-1), and from row r only the 7x7 input layer reaches it (columns >= W-4). With
``full_context`` (the default) the right-to-left gates also read the raw pixel values through an
unmasked 1x1 convolution (allowed: that direction's output is only used one row further down),
closing the gap; ``full_context=False`` is exactly [1].

Both layers also expose ``start_cache / step / end_row`` for ancestral sampling that reuses the
recurrent state: ``step`` computes one pixel of one layer in O(h^2) work given the stream at that
pixel; ``end_row`` does the per-row work (the next row's state-to-state input; for the Diagonal
BiLSTM the right-to-left sweep of the finished row).

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn.activations import tanh
from genzoo.nn.masked_conv import MaskedConv2d, causal_mask


def lstm_cell(gates: torch.Tensor, c: torch.Tensor, groups: int, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update from pre-activations laid out ``[group][o, f, i, g][h / groups]`` along ``dim``."""
    dim = dim % gates.dim()
    o, f, i, g = (part.flatten(dim, dim + 1) for part in gates.unflatten(dim, (groups, 4, -1)).unbind(dim + 1))
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * tanh(g)
    return torch.sigmoid(o) * tanh(c), c


def conv_at(conv: nn.Conv2d, patch: torch.Tensor) -> torch.Tensor:
    """The output of a masked convolution at one position, from its receptive patch (N, in, kh, kw) -> (N, out)."""
    return F.conv2d(patch, conv.weight * conv.mask, conv.bias).flatten(1)


class MaskedRowConv2d(nn.Conv2d):
    """A 1 x k convolution along the row with mask 'B' (the centre row of the k x k causal mask)::

    1 1 o 0 0      o: the pixel itself, colour groups <= own group (mask 'B')
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, color_groups: int):
        super().__init__(in_channels, out_channels, (1, kernel_size), padding=(0, kernel_size // 2))
        mask = causal_mask(in_channels, out_channels, kernel_size, "B", color_groups)
        self.register_buffer("mask", mask[:, :, kernel_size // 2 : kernel_size // 2 + 1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class RowLSTMLayer(nn.Module):
    """Residual Row LSTM layer: (N, 2h, H, W) -> (N, 2h, H, W)."""

    def __init__(self, hidden: int, color_groups: int, kernel_size: int = 3):
        super().__init__()
        self.hidden, self.groups, self.kernel_size = hidden, color_groups, kernel_size
        self.input_to_state = MaskedRowConv2d(2 * hidden, 4 * hidden, kernel_size, color_groups)
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, kernel_size, padding=kernel_size // 2, bias=False)
        self.output = MaskedConv2d(hidden, 2 * hidden, 1, "B", color_groups)

    def forward(self, s: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        gates = self.input_to_state(s)
        n, _, rows, width = s.shape
        h = c = s.new_zeros(n, self.hidden, width)
        out = []
        for row in gates.unbind(2):  # unbind, not gates[:, :, r]: a view per row whose backward stacks (no
            h, c = lstm_cell(row + self.state_to_state(h), c, self.groups)  # zero-filled full-size gradients)
            out.append(h)
        return s + self.output(torch.stack(out, 2))

    # cached sampling: the stream of the current row (for the 1 x k input-to-state taps), the states of
    # the current and previous rows, and K_ss * h_{r-1} for the current row.
    def start_cache(self, n: int, width: int, like: torch.Tensor) -> dict:
        pad = self.kernel_size // 2
        zeros = lambda f, w=width: like.new_zeros(n, f, w)  # noqa: E731
        return {
            "stream": zeros(2 * self.hidden, width + 2 * pad),
            "h": zeros(self.hidden),
            "c": zeros(self.hidden),
            "c_above": zeros(self.hidden),
            "recurrent": self.state_to_state(zeros(self.hidden)),
        }

    def step(self, cache: dict, col: int, s: torch.Tensor) -> torch.Tensor:
        """Stream (N, 2h) at (row, col) -> stream after this layer; records the pixel's states."""
        k = self.kernel_size
        cache["stream"][:, :, col + k // 2] = s
        patch = cache["stream"][:, :, None, col : col + k]
        gates = conv_at(self.input_to_state, patch) + cache["recurrent"][:, :, col]
        h, c = lstm_cell(gates, cache["c_above"][:, :, col], self.groups)
        cache["h"][:, :, col], cache["c"][:, :, col] = h, c
        return s + conv_at(self.output, h[:, :, None, None])

    def end_row(self, cache: dict, image_row: torch.Tensor | None = None) -> None:
        cache["recurrent"] = self.state_to_state(cache["h"])
        cache["c_above"] = cache["c"]
        cache["h"], cache["c"] = torch.zeros_like(cache["h"]), torch.zeros_like(cache["c"])
        cache["stream"].zero_()


def skew(x: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W) -> (N, F, H, W + H - 1) with row r shifted right by r (zeros elsewhere)."""
    n, f, rows, width = x.shape
    length = width + rows - 1
    flat = F.pad(x, (0, rows)).flatten(2)[:, :, : rows * length]  # rows of stride length + 1 read at stride length
    return flat.unflatten(2, (rows, length))


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of ``skew``: (N, F, H, W + H - 1) -> (N, F, H, W)."""
    n, f, rows, length = x.shape
    return F.pad(x.flatten(2), (0, rows)).unflatten(2, (rows, length + 1))[..., :width]


def diagonal_lstm(gates: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Left-to-right diagonal LSTM: input-to-state gates (N, 4m, H, W) -> hidden states (N, m, H, W).

    The state at (r, c) comes from the gates there and the states at (r-1, c) and (r, c-1): the 2 x 1
    state-to-state kernel on the skewed map, here ``weight`` (4m, 2m) applied to [above, left].
    States outside the image are held at zero, so the first column starts from zero like the first
    row. Several independent LSTMs may be stacked along the features (``groups`` counts their colour
    groups, ``weight`` is then block-diagonal): both directions of a layer share one loop.
    """
    n, _, rows, width = gates.shape
    skewed = skew(gates).permute(3, 0, 2, 1).contiguous()  # (W + H - 1, N, H, 4m): one diagonal per step
    inside = skew(gates.new_ones(1, 1, rows, width))[0, 0].t()[:, :, None]  # (W + H - 1, H, 1)
    h = c = gates.new_zeros(n, rows, weight.shape[1] // 2)
    out = []
    for diagonal, live in zip(skewed.unbind(0), inside.unbind(0)):  # unbind: no zero-filled gradient per step
        above = F.pad(h, (0, 0, 1, 0))[:, :rows]
        h, c = lstm_cell(diagonal + F.linear(torch.cat([above, h], -1), weight), c, groups, -1)
        h, c = h * live, c * live
        out.append(h)
    return unskew(torch.stack(out, -1).transpose(1, 2), width)


class DiagonalBiLSTMLayer(nn.Module):
    """Residual Diagonal BiLSTM layer: (N, 2h, H, W) -> (N, 2h, H, W)."""

    def __init__(self, hidden: int, color_groups: int, full_context: bool = True):
        super().__init__()
        self.hidden, self.groups = hidden, color_groups
        # per direction: a colour-masked 1x1 input-to-state convolution (output group-major) and the
        # 2 x 1 state-to-state kernel as a linear map of [state above, previous state along the row]
        self.input_to_state = MaskedConv2d(2 * hidden, 4 * hidden, 1, "B", color_groups)
        self.input_to_state_rl = MaskedConv2d(2 * hidden, 4 * hidden, 1, "B", color_groups)
        self.left_to_right = nn.Linear(2 * hidden, 4 * hidden, bias=False)
        self.right_to_left = nn.Linear(2 * hidden, 4 * hidden, bias=False)
        self.pixels_to_state = nn.Conv2d(color_groups, 4 * hidden, 1, bias=False) if full_context else None
        self.output = MaskedConv2d(hidden, 2 * hidden, 1, "B", color_groups)

    def forward(self, s: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """``image``: the network's input pixels (N, C, H, W), read by the right-to-left direction."""
        gates_rl = self.input_to_state_rl(s)
        if self.pixels_to_state is not None:
            gates_rl = gates_rl + self.pixels_to_state(image)
        gates = torch.cat([self.input_to_state(s), gates_rl.flip(3)], 1)
        h = self.hidden  # block-diagonal weight on [above_lr, above_rl, left_lr, left_rl]
        lr, rl = self.left_to_right.weight, self.right_to_left.weight
        zero = lr.new_zeros(4 * h, h)
        weight = torch.cat(
            [torch.cat([lr[:, :h], zero, lr[:, h:], zero], 1), torch.cat([zero, rl[:, :h], zero, rl[:, h:]], 1)], 0
        )
        forward, backward = diagonal_lstm(gates, weight, 2 * self.groups).chunk(2, 1)
        backward = F.pad(backward.flip(3)[:, :, :-1], (0, 0, 1, 0))  # row r gets row r-1: no future pixel
        return s + self.output(forward + backward)

    # cached sampling: left-to-right states of the current and previous rows, the right-to-left gates of
    # the current row (filled pixel by pixel) and the right-to-left states of the previous row.
    def start_cache(self, n: int, width: int, like: torch.Tensor) -> dict:
        zeros = lambda f: like.new_zeros(n, f, width)  # noqa: E731
        return {
            "h": zeros(self.hidden),
            "c": zeros(self.hidden),
            "h_above": zeros(self.hidden),
            "gates_rl": zeros(4 * self.hidden),
            "h_rl_above": zeros(self.hidden),
        }

    def step(self, cache: dict, col: int, s: torch.Tensor) -> torch.Tensor:
        """Stream (N, 2h) at (row, col) -> stream after this layer; records the pixel's states."""
        pixel = s[:, :, None, None]
        cache["gates_rl"][:, :, col] = conv_at(self.input_to_state_rl, pixel)
        left = cache["h"][:, :, col - 1] if col > 0 else torch.zeros_like(cache["h"][:, :, 0])
        c_left = cache["c"][:, :, col - 1] if col > 0 else torch.zeros_like(left)
        recurrent = self.left_to_right(torch.cat([cache["h_above"][:, :, col], left], 1))
        gates = conv_at(self.input_to_state, pixel) + recurrent
        h, c = lstm_cell(gates, c_left, self.groups)
        cache["h"][:, :, col], cache["c"][:, :, col] = h, c
        return s + conv_at(self.output, (h + cache["h_rl_above"][:, :, col])[:, :, None, None])

    def end_row(self, cache: dict, image_row: torch.Tensor | None = None) -> None:
        """``image_row``: the input pixels (N, C, W) of the finished row."""
        if self.pixels_to_state is not None:
            cache["gates_rl"] = cache["gates_rl"] + self.pixels_to_state(image_row[:, :, None])[:, :, 0]
        above, h_rl = cache["h_rl_above"], torch.zeros_like(cache["h_rl_above"])
        h = c = torch.zeros_like(above[:, :, 0])
        for col in reversed(range(above.shape[-1])):  # the finished row, right to left
            recurrent = self.right_to_left(torch.cat([above[:, :, col], h], 1))
            h, c = lstm_cell(cache["gates_rl"][:, :, col] + recurrent, c, self.groups)
            h_rl[:, :, col] = h
        cache["h_rl_above"], cache["h_above"] = h_rl, cache["h"]
        cache["h"], cache["c"] = torch.zeros_like(cache["h"]), torch.zeros_like(cache["c"])
