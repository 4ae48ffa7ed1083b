"""Independent subpixels: p(x) = prod_i Categorical(x_i; softmax(theta_i)).

The simplest explicit-density baseline (a fully-visible belief net with no connections): the
reference point every autoregressive model must beat, and a fast model for testing the core.
"""

from __future__ import annotations

import torch
from torch import nn

from genzoo.models.base import AutoregressiveModel
from genzoo.nn.distributions import num_params


class IndependentPixels(AutoregressiveModel):
    def __init__(self, image_shape, levels: int):
        super().__init__(image_shape, levels)
        k = num_params(levels)
        shape = self.image_shape if k == 1 else (*self.image_shape, k)
        self.logits = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return self.logits.expand(x.shape[0], *self.logits.shape)
