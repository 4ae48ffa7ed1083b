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

Inside the recurrences (training and scoring) the gates are held gates-first, (4, h, N, ...) per row
or diagonal, and the cell (``gated_cell``) is one autograd node with a hand-written backward: every
elementwise op of a step then runs on one contiguous block, and autograd records one node per step
instead of a dozen (at h = 16 the bookkeeping, not the arithmetic, is most of a step's time).

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

from genzoo.nn.activations import tanh, tanh_
from genzoo.nn.masked_conv import MaskedConv2d, causal_mask


def gates_first(t: torch.Tensor, groups: int) -> torch.Tensor:
    """Rows of ``t`` (a weight or bias of the 4h gate features) from group-major ``[group][o, f, i, g][m]`` to
    gates-first ``[o, f, i, g][group][m]`` (dim 0), the layout the recurrences compute in."""
    return t.unflatten(0, (groups, 4, -1)).transpose(0, 1).flatten(0, 2)


def _cell_forward(p: torch.Tensor, c_prev: torch.Tensor, dim: int):
    """(h, c, the gate activations, tanh(c)) of one LSTM update; ``p`` holds the pre-activations with the
    gates (o, f, i, g) along axis ``dim`` (size 4), ``c_prev`` has p's shape without that axis."""
    act = torch.empty_like(p)
    torch.sigmoid(p.narrow(dim, 0, 3), out=act.narrow(dim, 0, 3))  # o, f, i
    g = act.select(dim, 3)
    tanh_(p.select(dim, 3), out=g)
    o, f, i, _ = act.unbind(dim)
    c = torch.addcmul(f * c_prev, i, g)
    tanh_c = tanh(c)
    return o * tanh_c, c, act, tanh_c


class _LSTMCell(torch.autograd.Function):
    """The LSTM update as one autograd node: the gates' activations in one buffer, a hand-written backward.

    Autograd over the dozen small elementwise ops of a cell records a node (and, for strided gate slices,
    a copy) per op; at PixelRNN's sizes (h = 16) that bookkeeping costs more than the arithmetic.
    """

    @staticmethod
    def forward(ctx, p, c_prev, dim):
        h, c, act, tanh_c = _cell_forward(p, c_prev, dim)
        ctx.dim = dim
        ctx.save_for_backward(act, c_prev, tanh_c)
        return h, c

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h, grad_c):
        act, c_prev, tanh_c = ctx.saved_tensors
        dim = ctx.dim
        o, f, i, g = act.unbind(dim)
        grad_cell = torch.ops.aten.tanh_backward(grad_h * o, tanh_c).add_(grad_c)  # dL/dc
        grad_act = torch.empty_like(act)
        for k, (a, b) in enumerate(((grad_h, tanh_c), (grad_cell, c_prev), (grad_cell, g), (grad_cell, i))):
            torch.mul(a, b, out=grad_act.select(dim, k))  # dL/do, dL/df, dL/di, dL/dg
        grad_p = torch.empty_like(act)
        sig, out = (t.narrow(dim, 0, 3) for t in (act, grad_p))
        torch.ops.aten.sigmoid_backward.grad_input(grad_act.narrow(dim, 0, 3), sig, grad_input=out)
        torch.ops.aten.tanh_backward.grad_input(grad_act.select(dim, 3), g, grad_input=grad_p.select(dim, 3))
        return grad_p, grad_cell * f, None


def gated_cell(p: torch.Tensor, c: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update (h, c) from pre-activations ``p`` with the gates (o, f, i, g) along axis ``dim``."""
    if torch.is_grad_enabled() and (p.requires_grad or c.requires_grad):
        return _LSTMCell.apply(p, c, dim % p.dim())
    return _cell_forward(p, c, dim)[:2]


def lstm_cell(gates: torch.Tensor, c: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update from pre-activations laid out ``[group][o, f, i, g][h / groups]`` along the last dim:
    (h, c), each (..., h)."""
    h, c = gated_cell(gates.unflatten(-1, (groups, 4, -1)), c.unflatten(-1, (groups, -1)), -2)
    return h.flatten(-2), c.flatten(-2)


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
        n, _, rows, width = s.shape
        # gates-first rows: (rows, 4, h, N, W), so that each gate of a row is one contiguous block
        gates = self.input_to_state(s).unflatten(1, (self.groups, 4, -1)).permute(4, 2, 1, 3, 0, 5)
        gates = gates.contiguous().flatten(2, 3)
        h = c = s.new_zeros(self.hidden, n, width)
        weight = self.recurrent_weight()
        out = []
        for r, row in enumerate(gates.unbind(0)):  # unbind, not gates[r]: a view per row whose backward stacks
            h, c = gated_cell(row if r == 0 else row + self.recurrent(h, weight), c, 0)  # (no zero-filled grads)
            out.append(h)
        return s + self.output(torch.stack(out, 0).permute(2, 1, 0, 3))  # (h, rows, N, W) -> (N, h, rows, W)

    def recurrent_weight(self) -> torch.Tensor:
        """K_ss as a (4h, h k) matrix with gates-first rows (``state_to_state`` holds the kernel)."""
        return gates_first(self.state_to_state.weight.flatten(1), self.groups)

    def recurrent(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """K_ss * h along a row as one matrix product (``weight``: ``recurrent_weight()``): states (h, N, W)
        -> gates-first (4, h, N, W). (A 1-D convolution call at these sizes took ~300 us on one CPU thread,
        this product ~30 us.)"""
        k, (hidden, n, width) = self.kernel_size, h.shape
        padded = F.pad(h, (k // 2, k // 2))
        windows = torch.stack([padded[..., j : j + width] for j in range(k)], 1)  # (h, k, N, W)
        return (weight @ windows.view(hidden * k, n * width)).view(4, hidden, n, width)

    def _recurrent_cache(self, h: torch.Tensor) -> torch.Tensor:
        """``recurrent`` for the sampler's layout: states (N, h, W) -> (N, 4h, W), group-major gates."""
        rec = self.recurrent(h.transpose(0, 1), self.recurrent_weight()).unflatten(1, (self.groups, -1))
        return rec.permute(3, 1, 0, 2, 4).flatten(1, 3)  # (4, G, m, N, W) -> (N, [G][4][m], W)

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
            "recurrent": zeros(4 * self.hidden),
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
        cache["recurrent"] = self._recurrent_cache(cache["h"])
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


def diagonal_lstm(inputs: list, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Left-to-right diagonal LSTMs stacked along the features -> their hidden states (N, m, H, W).

    ``inputs``: per stacked LSTM, (x, w, b): its input (N, K, H, W) and its 1x1 input-to-state product,
    weight (4 m_d, K) and bias (4 m_d,) or None, rows group-major ``[group][o, f, i, g][m_d / groups]``
    (``groups`` colour groups each). The state at (r, c) comes from the gates there and the states at
    (r-1, c) and (r, c-1): the 2 x 1 state-to-state kernel on the skewed map, here ``weight`` (4m, 2m)
    applied to [above, left], block-diagonal over the stacked LSTMs (both directions of a layer share one
    loop). States outside the image are held at zero, so the first column starts from zero like the first
    row. The input products run on the skewed inputs (K features, narrower than the 4 m_d gates they
    give), laid out diagonal-major and gates-first, so no gate map is ever skewed or transposed; outside
    the image their gates hold only the bias, and the states there are zeroed like the rest.
    """
    n, _, rows, width = inputs[0][0].shape
    gates = []  # per stacked LSTM: (4, m_d, W + H - 1, N, H), gates-first and diagonal-major
    for x, w, b in inputs:
        xs = skew(x).permute(1, 3, 0, 2).contiguous()  # (K, W + H - 1, N, H): one diagonal per column block
        g = gates_first(w, groups) @ xs.view(xs.shape[0], -1)
        if b is not None:
            g = g + gates_first(b, groups)[:, None]
        gates.append(g.view(4, -1, *xs.shape[1:]))
    diagonals = torch.cat(gates, 1).unbind(2)  # (4, m, N, H) each; unbind: no zero-filled gradient per step
    weight = gates_first(weight, groups * len(inputs))
    inside = skew(inputs[0][0].new_ones(1, 1, rows, width))[0, 0].t()  # (W + H - 1, H)
    m = weight.shape[1] // 2
    h = c = inputs[0][0].new_zeros(m, n, rows)
    out = []
    for diagonal, live in zip(diagonals, inside.unbind(0)):
        above = F.pad(h, (1, 0))[..., :rows]
        recurrent = (weight @ torch.cat([above, h]).view(2 * m, n * rows)).view(4, m, n, rows)
        h, c = gated_cell(diagonal + recurrent, c, 0)
        h, c = h * live, c * live
        out.append(h)
    return unskew(torch.stack(out, -1).transpose(0, 1), width)  # (m, N, H, W + H - 1) -> (N, m, H, W)


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
        lr_in, rl_in = self.input_to_state, self.input_to_state_rl  # 1x1 products: (weight * mask) @ features
        rl_weight, rl_x = (rl_in.weight * rl_in.mask).flatten(1), s
        if self.pixels_to_state is not None:
            rl_weight = torch.cat([rl_weight, self.pixels_to_state.weight.flatten(1)], 1)
            rl_x = torch.cat([s, image.to(s.dtype)], 1)
        inputs = [(s, (lr_in.weight * lr_in.mask).flatten(1), lr_in.bias), (rl_x.flip(3), rl_weight, rl_in.bias)]
        h = self.hidden  # block-diagonal weight on [above_lr, above_rl, left_lr, left_rl]
        lr, rl = self.left_to_right.weight, self.right_to_left.weight
        zero = lr.new_zeros(4 * h, h)
        weight = torch.cat(
            [torch.cat([lr[:, :h], zero, lr[:, h:], zero], 1), torch.cat([zero, rl[:, :h], zero, rl[:, h:]], 1)], 0
        )
        forward, backward = diagonal_lstm(inputs, weight, self.groups).chunk(2, 1)
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
