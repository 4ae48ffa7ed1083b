"""Fully-visible sigmoid belief net: p(x) = prod_i p(x_i | x_<i), each a logistic regression [1, 2].

Subpixel i (raster order, channels innermost) is predicted from all earlier subpixels by a logistic
regression (binary data: 0/1 inputs, one Bernoulli logit) or a softmax regression (multi-level data:
one-hot inputs, ``levels`` logits). All D regressions are one masked linear layer with a strictly
lower-triangular mask in the ordering (drawn in ``genzoo.nn.masked``), so ``log_prob`` (nats) costs one
matrix product. Weights and biases start at zero: the initial model is uniform, loss D*log(levels).
The layer has (D * levels)^2 weights for multi-level data: fine for small images, not for 256 levels.

[1] R. M. Neal. Connectionist learning of belief networks. Artificial Intelligence 56, 1992.
[2] B. J. Frey. Graphical Models for Machine Learning and Digital Communication. MIT Press, 1998.
"""

from __future__ import annotations

import torch
from torch import nn

from genzoo.models.base import AutoregressiveModel
from genzoo.nn.distributions import num_params
from genzoo.nn.masked import MaskedLinear, expand_mask, masked_inputs, num_inputs, ordering_rank, unflatten_params


class FVSBN(AutoregressiveModel):
    def __init__(self, image_shape, levels: int):
        super().__init__(image_shape, levels)
        d, k_in, k_out = self.num_dims, num_inputs(self.levels), num_params(self.levels)
        rank = ordering_rank(self.ordering())
        self.linear = MaskedLinear(d * k_in, d * k_out)
        self.linear.mask.copy_(expand_mask(rank[:, None] > rank[None, :], k_in, k_out))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return unflatten_params(self.linear(masked_inputs(x, self.levels)), self.image_shape, self.levels)
