"""Neural autoregressive distribution estimator [1]: logistic regressions on a shared hidden layer.

In the ordering o (default: raster, channels innermost), subpixel x_i = x_{o(i)} is predicted from

    h_i = sigmoid(c + sum_{j<i} W_j x_j)        (H units; W_j: H x inputs of subpixel j)
    p(x_i | x_<i) = Bernoulli(sigmoid(V_i h_i + b_i))          binary data, x_j in {0, 1}
                  = Categorical(softmax(V_i h_i + b_i))        multi-level data, x_j one-hot [2]

Sharing W between the D conditionals makes all pre-activations one cumulative sum over the ordering:
``log_prob`` (nats) costs O(D H) per image instead of O(D^2 H), and so does ``sample_cached``.
V and b start at zero, so the initial model is uniform (loss D*log(levels)).

[1] H. Larochelle, I. Murray. The Neural Autoregressive Distribution Estimator. AISTATS 2011.
[2] B. Uria, M.-A. Cote, K. Gregor, I. Murray, H. Larochelle. Neural Autoregressive Distribution
    Estimation. JMLR 17, 2016.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.models.base import AutoregressiveModel
from genzoo.nn.distributions import discrete_sample, num_params
from genzoo.nn.masked import num_inputs, ordering_rank, unflatten_params


class NADE(AutoregressiveModel):
    def __init__(self, image_shape, levels: int, hidden: int = 500):
        super().__init__(image_shape, levels)
        if int(hidden) < 1:
            raise ValueError(f"hidden must be a positive number of units, got {hidden}")
        d, k_in, k_out, h = self.num_dims, num_inputs(self.levels), num_params(self.levels), int(hidden)
        # parameters are indexed by flat subpixel (C, H, W); the ordering only decides who sees whom
        self.W = nn.Parameter(
            torch.randn(d, k_in, h) / math.sqrt(d)
        )  # W[j] = W_j^T: (k_in, H) from subpixel j's inputs
        self.c = nn.Parameter(torch.zeros(h))
        self.V = nn.Parameter(torch.zeros(d, k_out, h))
        self.b = nn.Parameter(torch.zeros(d, k_out))
        order = self.ordering()
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("rank", ordering_rank(order), persistent=False)

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """h_i for every step i of the ordering: (N, D, H), from one cumulative sum over the ordering."""
        # shift by one step first (step i gets subpixel o(i-1); step 0 gets a zero column of W), so
        # the sum at step i is exactly over j < i: bitwise independent of x_i and later subpixels
        x = x.flatten(1)
        x = torch.cat([torch.zeros_like(x[:, :1]), x[:, self.order[:-1]]], 1)
        w = torch.cat([torch.zeros_like(self.W[:1]), self.W[self.order[:-1]]])
        if self.levels == 2:
            terms = x.unsqueeze(-1).to(w.dtype) * w[:, 0]
        else:  # one_hot(x_j) W_j as a lookup
            terms = w[torch.arange(self.num_dims, device=x.device), x]
        return torch.sigmoid(self.c + terms.cumsum(1))

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        h = self.hidden_states(x)
        logits = torch.einsum("ndh,dkh->ndk", h, self.V[self.order]) + self.b[self.order]
        logits = logits[:, self.rank]  # back from ordering steps to flat subpixels
        return unflatten_params(logits, self.image_shape, self.levels)

    def sample_cached(self, x, known, y, generator):
        """Ancestral sampling carrying the pre-activation a = c + sum_{j<i} W_j x_j: O(D H) per image."""
        n = x.shape[0]
        flat, known = x.view(n, -1), known.reshape(n, -1)
        a = self.c.expand(n, -1)
        for f in self.order.tolist():
            if not bool(known[:, f].all()):
                logits = torch.sigmoid(a) @ self.V[f].t() + self.b[f]
                drawn = discrete_sample(logits.squeeze(-1) if self.levels == 2 else logits, self.levels, generator)
                flat[:, f] = torch.where(known[:, f], flat[:, f], drawn)
            a = a + (flat[:, f, None].to(a.dtype) * self.W[f, 0] if self.levels == 2 else self.W[f, flat[:, f]])
        return x
