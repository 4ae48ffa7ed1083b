"""Masked linear layers and the connectivity of autoregressive networks over flattened subpixels.

A network over D subpixels sees each subpixel as ``num_inputs(levels)`` columns (its 0/1 value for
binary data, a one-hot vector otherwise) and predicts ``num_params(levels)`` outputs per subpixel.
Masks are built per subpixel, shape (out, in), then widened to those column groups by ``expand_mask``.

For D = 3 in order x1, x2, x3 the strictly lower-triangular mask of a fully-visible net (FVSBN, and
MADE's direct connections) is::

    out\\in  x1 x2 x3
    p(x1)    0  0  0
    p(x2)    1  0  0
    p(x3)    1  1  0

[1] M. Germain, K. Gregor, I. Murray, H. Larochelle. MADE: Masked Autoencoder for Distribution
    Estimation. ICML 2015.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedLinear(nn.Linear):
    """y = x (mask * W)^T + b, with a fixed 0/1 ``mask`` buffer (out, in); ``mask`` in forward overrides it.

    The mask is architecture, not state: a non-persistent buffer (moved by ``.to``, absent from the
    state dict, so checkpoints and weight averages never hold or blend it); models rebuild it.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, (self.mask if mask is None else mask) * self.weight, self.bias)


def num_inputs(levels: int) -> int:
    """Input columns per subpixel: 1 (the 0/1 value) for binary data, else ``levels`` (one-hot)."""
    return 1 if levels == 2 else levels


def masked_inputs(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer images (N, C, H, W) -> float inputs (N, D * num_inputs), grouped per flat subpixel."""
    x = x.flatten(1)
    return x.float() if levels == 2 else F.one_hot(x, levels).flatten(1).float()


def unflatten_params(out: torch.Tensor, image_shape, levels: int) -> torch.Tensor:
    """Outputs (N, D * num_params) -> Bernoulli logits (N, C, H, W) or softmax logits (N, C, H, W, levels)."""
    return out.reshape(out.shape[0], *image_shape, *(() if levels == 2 else (levels,)))


def ordering_rank(order: torch.Tensor) -> torch.Tensor:
    """rank[flat index] = position of that subpixel in the generation ``order`` (0-based)."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank


def expand_mask(mask: torch.Tensor, k_in: int, k_out: int) -> torch.Tensor:
    """Per-subpixel mask (D_out, D_in) -> float column mask (D_out * k_out, D_in * k_in)."""
    return mask.repeat_interleave(k_out, 0).repeat_interleave(k_in, 1).float()


def made_degrees(rank: torch.Tensor, hidden: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """Degrees of MADE's units [1, sec. 4]: m_0 for the D inputs, then one LongTensor per hidden layer."""
    top = max(rank.numel() - 1, 1)  # hidden degrees live in [1, D-1] (D = 1: one dummy degree)
    degrees = [rank.cpu() + 1]  # an input's degree is its 1-based position in the ordering
    for size in hidden:
        # draw from [min of the layer below, D-1] so that no unit is left without inputs [1, sec. 4.2]
        low = min(int(degrees[-1].min()), top)
        degrees.append(torch.randint(low, top + 1, (size,), generator=generator))
    return degrees


def made_masks(degrees: list[torch.Tensor], direct: bool = False) -> list[torch.Tensor]:
    """Boolean (out, in) masks from ``made_degrees``: hidden layers, the output layer, then (if ``direct``)
    the input -> output skip; an output of degree d sees exactly the inputs of degree < d [1, eqs. 12-13]."""
    # hidden unit k' of layer l may see unit k of layer l-1 iff m_l(k') >= m_{l-1}(k)
    masks = [above[:, None] >= below[None, :] for below, above in zip(degrees[:-1], degrees[1:])]
    # output d may see the last hidden layer's unit k iff d > m_L(k): strict, so x_d never sees itself
    masks.append(degrees[0][:, None] > degrees[-1][None, :])
    if direct:  # direct connections: output d sees input j iff d > j (the FVSBN mask)
        masks.append(degrees[0][:, None] > degrees[0][None, :])
    return masks
