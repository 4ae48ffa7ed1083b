"""Neural autoregressive distribution estimator [1]: logistic regressions on a shared hidden layer.

In the ordering o (default: raster, channels innermost), subpixel x_i = x_{o(i)} is predicted from

    h_i = sigmoid(c + sum_{j<i} W_j x_j)        (H units; W_j: H x inputs of subpixel j)
    p(x_i | x_<i) = Bernoulli(sigmoid(V_i h_i + b_i))          binary data, x_j in {0, 1}
                  = Categorical(softmax(V_i h_i + b_i))        multi-level data, x_j one-hot [2]

Sharing W between the D conditionals makes all pre-activations one running sum over the ordering:
``log_prob`` (nats) costs O(D H) per image instead of O(D^2 H), and so does ``sample_cached``.
``log_prob`` and ``loss`` run the paper's own O(D H) forward and backward [1, Algorithm 1] as one
autograd function, in cache-sized blocks of steps (``genzoo.nn.nade_kernel``; no (N, D, H) tensor is
ever stored); ``forward`` gives the same logits, from the same kernel when no gradient is needed and
from the differentiable reference ``hidden_states`` otherwise. ``log_prob_loop`` is the textbook
one-step-at-a-time form, kept as the reference the fast path is measured against.
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
from genzoo.nn.distributions import discrete_log_prob, discrete_sample, num_params
from genzoo.nn.masked import num_inputs, ordering_rank, unflatten_params
from genzoo.nn.nade_kernel import nade_log_prob, nade_logits


class NADE(AutoregressiveModel):
    """NADE over (C, H, W) images; see the module docstring. ``hidden``: H, the units of the shared hidden
    layer (500 in [1] for binarized MNIST)."""

    block: int | None = None  # steps per block of the fast kernel; None: sized to the cache for the batch

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

    def ordered_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(D, N) LongTensor: row t holds subpixel o(t) of every image (the kernel's time-major layout)."""
        return x.flatten(1).index_select(1, self.order).t().contiguous()

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            h = self.hidden_states(x)  # differentiable reference: O(N D H) memory
            logits = torch.einsum("ndh,dkh->ndk", h, self.V[self.order]) + self.b[self.order]
        else:
            logits = nade_logits(self.ordered_inputs(x), self.order, self.W, self.c, self.V, self.b, self.block)
            logits = logits.reshape(self.num_dims, x.shape[0], -1).transpose(0, 1)
        logits = logits[:, self.rank]  # back from ordering steps to flat subpixels
        return unflatten_params(logits, self.image_shape, self.levels)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) of each image (N,), nats: the blocked O(D H) kernel, forward and backward."""
        self.check_images(x)
        self.check_labels(y, x.shape[0])
        return nade_log_prob(self.ordered_inputs(x), self.order, self.W, self.c, self.V, self.b, self.block)

    def log_prob_loop(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) (N,), nats, the textbook way: one step of the ordering at a time, autograd throughout.

        for i: h_i = sigmoid(a); log p(x_i | l_i = V_i h_i + b_i); a += W_i x_i. The reference that
        ``log_prob`` is tested and benchmarked against (same value up to float rounding).
        """
        self.check_images(x)
        flat = x.flatten(1)
        a, total = self.c.expand(x.shape[0], -1), 0.0
        for f in self.order.tolist():
            logits = torch.sigmoid(a) @ self.V[f].t() + self.b[f]
            logits = logits.squeeze(-1) if self.levels == 2 else logits
            total = total + discrete_log_prob(logits, flat[:, f], self.levels)
            a = a + (flat[:, f, None].to(a.dtype) * self.W[f, 0] if self.levels == 2 else self.W[f, flat[:, f]])
        return total

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
