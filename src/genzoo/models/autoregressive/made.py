"""Masked autoencoder for distribution estimation [1]: an MLP whose masks make it autoregressive.

Inputs are the D subpixels (0/1 values for binary data, one-hot otherwise); the outputs are a Bernoulli
logit or ``levels`` softmax logits per subpixel; hidden layers use ReLU. Every unit gets a degree:
an input's is its position in the ordering (1..D), a hidden unit's is drawn in [1, D-1] from a
generator seeded with ``seed``; masks keep hidden connections with m_l(k') >= m_{l-1}(k) and output
connections with d > m_L(k) (``genzoo.nn.masked.made_masks``), so output d sees only inputs before d.
``direct=True`` adds masked input -> output connections.

Ensembles (``num_masks`` = M > 1) hold M (ordering, connectivity) pairs, drawn deterministically from
``seed`` and stored as buffers (they save and load; ``natural_ordering=True`` keeps the raster ordering
in all of them, varying only the connectivity). As in [1], training is per mask: the objective of
training step s is -mean log p_m(x) for member m = s mod M (``training_loss``), a function of the step,
so resumed training continues exactly. The density is the true mixture: ``log_prob`` =
log((1/M) sum_m p_m(x)) in nats, always (a logsumexp over members, not averaged logits), and ``loss``
is its negative mean. ``forward`` and ``ordering`` follow the current member
(``use_mask(m)``); ``sample`` draws a member uniformly per image, then samples in its ordering.
The output layer starts at zero: the initial model is uniform, loss D*log(levels).

[1] M. Germain, K. Gregor, I. Murray, H. Larochelle. MADE: Masked Autoencoder for Distribution
    Estimation. ICML 2015.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.models.base import AutoregressiveModel
from genzoo.nn.distributions import num_params
from genzoo.nn.masked import (
    MaskedLinear,
    expand_mask,
    made_degrees,
    made_masks,
    masked_inputs,
    num_inputs,
    ordering_rank,
    unflatten_params,
)


def _rebuild_masks(module: "MADE", incompatible_keys) -> None:
    module.use_mask(int(module.mask_index))


class MADE(AutoregressiveModel):
    """MADE over (C, H, W) images; see the module docstring.

    ``hidden``: widths of the hidden ReLU layers (one int: one layer); ``num_masks``: the ensemble size M
    (orderings and connectivities, a true mixture at test time); ``natural_ordering``: keep raster order in
    every member; ``seed``: draws the orderings and degrees; ``direct``: masked input -> output connections;
    ``inputs``: how a subpixel enters the net, "onehot" (one column per level; 0/1 for binary data) or
    "scalar" (one column, the level scaled to [-1, 1]); "auto": one-hot up to 32 levels, else scalar;
    ``output_rank``: r > 0 gives each subpixel r output features mapped to its ``levels`` logits by one
    shared (r x levels) matrix plus a per-subpixel bias (still an exact softmax); None: "auto", full
    ``levels`` logits per subpixel up to 32 levels, else r = 16 (so 256-level images keep the net small).
    """

    SMALL_LEVELS = 32  # up to this many levels, one-hot inputs and full per-subpixel outputs by default

    def __init__(
        self,
        image_shape,
        levels: int,
        hidden: int | list[int] = [500],  # noqa: B006 (a list, as JSON gives back)
        num_masks: int = 1,
        natural_ordering: bool = False,
        seed: int = 0,
        direct: bool = False,
        inputs: str = "auto",
        output_rank: int | None = None,
    ):
        super().__init__(image_shape, levels)
        if inputs not in ("auto", "onehot", "scalar"):
            raise ValueError(f"inputs must be auto, onehot or scalar, got {inputs!r}")
        if output_rank is not None and int(output_rank) < 1:
            raise ValueError(f"output_rank must be >= 1 or None, got {output_rank}")
        small = self.levels <= self.SMALL_LEVELS
        self.inputs = ("onehot" if small else "scalar") if inputs == "auto" else inputs
        rank = output_rank if output_rank is not None else (None if small else 16)
        self.output_rank = None if self.levels == 2 or rank is None else int(rank)
        sizes = [int(hidden)] if isinstance(hidden, int) else [int(s) for s in hidden]
        if min(sizes, default=1) < 1 or int(num_masks) < 1:
            raise ValueError(f"hidden sizes and num_masks must be positive, got hidden={hidden}, num_masks={num_masks}")
        self.sizes, self.num_masks = sizes, int(num_masks)
        d = self.num_dims
        self.k_in = 1 if self.inputs == "scalar" else num_inputs(self.levels)
        self.k_out = self.output_rank or num_params(self.levels)
        widths = [d * self.k_in, *sizes, d * self.k_out]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.skip = MaskedLinear(d * self.k_in, d * self.k_out, bias=False) if direct else None
        for p in [*self.layers[-1].parameters(), *(self.skip.parameters() if direct else [])]:
            nn.init.zeros_(p)
        if self.output_rank is not None:  # logits = features (D, r) @ level_map (r, levels) + level_bias (D, levels)
            self.level_map = nn.Parameter(torch.randn(self.output_rank, self.levels) / math.sqrt(self.output_rank))
            self.level_bias = nn.Parameter(torch.zeros(d, self.levels))
        generator = torch.Generator().manual_seed(int(seed))
        orders, degrees = [], []
        for _ in range(self.num_masks):
            order = AutoregressiveModel.ordering(self) if natural_ordering else torch.randperm(d, generator=generator)
            orders.append(order)
            degrees.append(
                torch.cat([torch.zeros(0, dtype=torch.long), *made_degrees(ordering_rank(order), sizes, generator)[1:]])
            )
        self.register_buffer("orders", torch.stack(orders))  # (M, D) flat subpixel indices in generation order
        self.register_buffer("hidden_degrees", torch.stack(degrees))  # (M, sum(hidden))
        self.register_buffer("mask_index", torch.zeros((), dtype=torch.long))  # the current member
        self.use_mask(0)
        # layer masks are not saved: rebuild them from the loaded degrees and index after every load
        self.register_load_state_dict_post_hook(_rebuild_masks)

    def masks(self, m: int) -> list[torch.Tensor]:
        """Float (out, in) masks of member ``m`` for every layer, then the skip layer if ``direct``."""
        degrees = [ordering_rank(self.orders[m]) + 1, *(self.hidden_degrees[m].split(self.sizes) if self.sizes else [])]
        n = len(self.layers)
        # one-hot inputs / per-level outputs: every column of a subpixel shares its degree
        widen = [(self.k_in if i == 0 else 1, self.k_out if i == n - 1 else 1) for i in range(n)]
        widen.append((self.k_in, self.k_out))
        dtype = self.layers[0].weight.dtype
        return [expand_mask(mask, *ks).to(dtype) for mask, ks in zip(made_masks(degrees, self.skip is not None), widen)]

    def use_mask(self, m: int) -> None:
        """Make ensemble member ``m`` current (for forward, ordering, sampling and the training loss)."""
        if not 0 <= int(m) < self.num_masks:
            raise ValueError(f"mask index must be in [0, {self.num_masks}), got {m}")
        layers = [*self.layers, *([self.skip] if self.skip is not None else [])]
        for layer, mask in zip(layers, self.masks(int(m))):
            layer.mask = mask  # a new tensor, not copy_: autograd graphs built with the old mask stay valid
        self.mask_index.fill_(int(m))  # in place: the state dict (and a weight average) keeps tracking it

    def ordering(self) -> torch.Tensor:
        return self.orders[int(self.mask_index)].cpu()

    def _net(self, inputs: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        masks = masks or [None] * (len(self.layers) + 1)
        h = inputs
        for i, layer in enumerate(self.layers):
            h = layer(h, masks[i])
            h = torch.relu(h) if i < len(self.layers) - 1 else h
        if self.skip is not None:
            h = h + self.skip(inputs, masks[-1])
        if self.output_rank is not None:
            h = (h.unflatten(1, (self.num_dims, self.output_rank)) @ self.level_map + self.level_bias).flatten(1)
        return unflatten_params(h, self.image_shape, self.levels)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.inputs == "scalar":
            return x.flatten(1).float() * (2.0 / (self.levels - 1)) - 1.0
        return masked_inputs(x, self.levels)

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Parameters of every subpixel's conditional under the current member."""
        return self._net(self._inputs(x))

    def log_prob_each_mask(self, x: torch.Tensor) -> torch.Tensor:
        """log p_m(x) of every member m, shape (num_masks, N), nats."""
        self.check_images(x)
        inputs, current = self._inputs(x), int(self.mask_index)
        return torch.stack(
            [
                self.pixel_log_prob(self._net(inputs, None if m == current else self.masks(m)), x).flatten(1).sum(1)
                for m in range(self.num_masks)
            ]
        )

    def log_prob(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Exact log-likelihood of the mixture, log((1/M) sum_m p_m(x)), nats per image."""
        return torch.logsumexp(self.log_prob_each_mask(x), 0) - math.log(self.num_masks)

    def training_loss(self, x: torch.Tensor, y, step: int) -> torch.Tensor:
        """-mean log p_m(x) of member m = ``step`` mod M, which becomes the current member (nats)."""
        if self.num_masks > 1:
            self.use_mask(step % self.num_masks)
        return -AutoregressiveModel.log_prob(self, x, y).mean()

    def sample_naive(self, x, known, y, generator):
        """Mixture sampling: member m uniformly per image, then one forward per subpixel in m's ordering."""
        if self.num_masks == 1:
            return super().sample_naive(x, known, y, generator)
        current = int(self.mask_index)
        member = torch.randint(self.num_masks, (x.shape[0],), generator=generator, device=x.device)
        try:
            for m in range(self.num_masks):
                rows = (member == m).nonzero().squeeze(1)
                if rows.numel():
                    self.use_mask(m)
                    x[rows] = super().sample_naive(x[rows], known[rows], None if y is None else y[rows], generator)
        finally:
            self.use_mask(current)
        return x
