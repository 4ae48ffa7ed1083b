"""Deep belief net: RBMs stacked and trained greedily, one layer at a time [1]; log p(x) bounded as in [2].

With ``hidden = (H1, ..., HL)`` the model is a directed sigmoid belief net v <- h1 <- ... <- h(L-1) under
an undirected top RBM over (h(L-1), hL):

    p(v, h1, ..., hL) = p(v | h1) p(h1 | h2) ... p(h(L-2) | h(L-1)) p_top(h(L-1), hL)

Layer k is an ``RBM`` (genzoo.models.energy.rbm; reused, no math copied): its visible conditional is the
directed p(h(k-1) | hk) and its hidden conditional the recognition distribution q(hk | h(k-1)). Layer 1
sees the images (Bernoulli or softmax visible units), layer k > 1 the binary hidden states below.

Training [1] through the one trainer: ``training_loss(x, y, step)`` is the CD/PCD surrogate of the layer
that the schedule trains at ``step``, whose input is a sampled upward pass x -> h1 -> ... through the
layers below: layer k trains for steps [k, k+1) * ``steps_per_layer``, the top layer from then on; a full
run needs ``total_steps`` steps. The schedule is a function of the step, so a resumed run continues
exactly; the ``current_layer`` buffer records the layer last trained (``loss`` scores it). When a layer
k > 1 starts, its visible and AIS base-rate biases are set from the upward samples of that batch
(RBM.init_biases).
Frozen and not-yet-trained layers take no part in the autograd graph: their ``.grad`` stays None, which
every torch optimizer skips, so they stay bit-for-bit unchanged (a zero gradient would not guarantee it:
momentum, Adam's moments and weight decay would still move them). DDP without find_unused_parameters needs
a gradient for every parameter at every step, so train a DBN in one process (RBMs are cheap).

Likelihood [2], nats: with h sampled upward from q and Z the top RBM's partition function,

    log p(x) >= E_q[ sum_k log p(h(k-1) | hk) + H(q(hk | h(k-1))) + log p*_top(h(L-1)) ] - log Z

(``log_prob_lower_bound`` / ``elbo``: a Monte Carlo estimate, the entropies exact), and the importance-
sampling estimate with q as proposal (``log_prob_estimate``, a stochastic lower bound that rises to
log p(x) as the samples grow). log Z comes from the top RBM: ``compute_partition()`` (exact when small,
else AIS [2, 3]); a one-layer DBN is an RBM and its bound is its exact log p(x). ``sample``: block Gibbs in
the top RBM, then one ancestral pass down through the directed layers.

[1] G. E. Hinton, S. Osindero, Y.-W. Teh, "A fast learning algorithm for deep belief nets", Neural Computation 18, 2006.
[2] R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief networks", ICML 2008.
[3] R. M. Neal, "Annealed importance sampling", Statistics and Computing 11, 2001.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import LatentVariableModel
from genzoo.models.energy.rbm import RBM, uniform

_CHUNK_ELEMENTS = 2**22  # rows x units of one chunk of importance samples (~16 MiB of float32 per tensor)


class DBN(LatentVariableModel):
    """Greedily trained deep belief net over ``len(hidden)`` RBMs; see the module docstring.

    ``hidden``: units per layer, bottom up (default: [2]'s MNIST DBN, 500 then 2000; an int: one layer).
    ``cd_steps`` is one int or one per layer; ``persistent``, ``num_chains``, ``burn_in`` (Gibbs sweeps in
    the top RBM when sampling) and ``init_std`` go to every RBM. ``bound_samples``: draws of h per image
    for ``elbo``. ``steps_per_layer``: training steps of each layer in turn (see ``total_steps``).
    """

    selects_by_validation = False  # validated on a layer's CD surrogate, no measure of fit

    def __init__(
        self,
        image_shape,
        levels: int,
        hidden: int | list[int] = [500, 2000],  # noqa: B006 (a list, as JSON gives back)
        cd_steps: int | list[int] = 1,
        persistent: bool = False,
        num_chains: int = 100,
        burn_in: int = 1000,
        init_std: float = 0.01,
        steps_per_layer: int = 10_000,
        bound_samples: int = 10,
    ):
        super().__init__(image_shape, levels)
        hidden = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
        cd_steps = [int(cd_steps)] * len(hidden) if isinstance(cd_steps, int) else [int(c) for c in cd_steps]
        if not hidden or len(cd_steps) != len(hidden):
            raise ValueError(
                f"hidden must list >= 1 layer sizes and cd_steps be one int or one per layer, "
                f"got hidden={hidden!r}, cd_steps={cd_steps!r}"
            )
        for name, value in (("steps_per_layer", steps_per_layer), ("bound_samples", bound_samples)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.hidden, self.steps_per_layer, self.bound_samples = hidden, int(steps_per_layer), int(bound_samples)
        shapes = [self.image_shape] + [(1, 1, h) for h in hidden[:-1]]
        self.layers = nn.ModuleList(
            RBM(
                shape,
                self.levels if k == 0 else 2,
                hidden=h,
                cd_steps=cd,
                persistent=persistent,
                num_chains=num_chains,
                burn_in=burn_in,
                init_std=init_std,
            )
            for k, (shape, h, cd) in enumerate(zip(shapes, hidden, cd_steps))
        )
        self.register_buffer("current_layer", torch.zeros((), dtype=torch.int64))  # the layer last trained
        self._current: int | None = None  # host copy of current_layer: no device sync per step
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_current", None))

    @property
    def top(self) -> RBM:
        return self.layers[-1]

    @property
    def total_steps(self) -> int:
        """Training steps until the top layer has had its ``steps_per_layer`` (it goes on training after)."""
        return len(self.layers) * self.steps_per_layer

    # -- training ------------------------------------------------------------------------------------
    def layer_at(self, step: int) -> int:
        """The layer the schedule trains at training step ``step`` (0-based)."""
        return min(step // self.steps_per_layer, len(self.layers) - 1)

    def _sample_up(self, k: int, states: torch.Tensor, generator=None):
        """q(h(k+1) | states of layer k's visible units): (logits, binary draw as long), each (N, H)."""
        rbm = self.layers[k]
        logits = rbm._encode(states) @ rbm.weight.t() + rbm.hidden_bias
        return logits, (uniform(logits.shape, logits.device, generator) < torch.sigmoid(logits)).long()

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """CD surrogate of ``current_layer`` on upward samples (its value is no likelihood; see RBM.loss)."""
        return self._layer_surrogate(x, int(self.current_layer), None)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        """The surrogate of the layer the schedule trains at ``step`` (CD or PCD, as configured)."""
        k = self.layer_at(step)
        if self._current is None:
            self._current = int(self.current_layer)
        if k != self._current:
            self.current_layer.fill_(k)
            self._current = k
        return self._layer_surrogate(x, k, step, starts=k > 0 and step == k * self.steps_per_layer)

    def _layer_surrogate(self, x: torch.Tensor, k: int, step: int | None, starts: bool = False) -> torch.Tensor:
        self.check_images(x)
        states = x.reshape(x.shape[0], -1)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):  # lower layers: frozen, float32
            for j in range(k):
                states = self._sample_up(j, states)[1]
        rbm = self.layers[k]
        states = states.reshape(x.shape[0], *rbm.image_shape)
        if starts:
            rbm.init_biases(states)
        return rbm.loss(states) if step is None else rbm.training_loss(states, None, step - k * self.steps_per_layer)

    def init_from_data(self, train) -> None:
        """Set the first RBM's visible (and base-rate) biases from the data marginals (RBM.init_from_data)."""
        self.layers[0].init_from_data(train)

    # -- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        burn_in: int | None = None,
    ) -> torch.Tensor:
        """``n`` images (LongTensor (n, C, H, W)): ``burn_in`` block Gibbs sweeps in the top RBM (default: the
        constructor's), then h(k-1) ~ p(h(k-1) | hk) down to the pixels."""
        states = self.top.sample(n, generator=generator, burn_in=burn_in).reshape(n, -1)
        for rbm in reversed(self.layers[:-1]):
            states = rbm._sample_visible(states.to(rbm.weight.dtype) @ rbm.weight + rbm.visible_bias, generator)
        return states.reshape(n, *self.image_shape)

    # -- likelihood bounds ---------------------------------------------------------------------------
    def _log_terms(self, x: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One upward draw per row of ``x``: (log p(x, h1..h(L-1)) with hL summed out, log q(h | x), the summed
        entropies H(q(hk | h(k-1)))), each (N,) float64 nats. Needs the top RBM's log Z."""
        states = x.reshape(x.shape[0], -1).long()
        log_p = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        log_q, entropy = torch.zeros_like(log_p), torch.zeros_like(log_p)
        for k, rbm in enumerate(self.layers[:-1]):
            logits, h = self._sample_up(k, states, generator)
            log_q -= F.binary_cross_entropy_with_logits(logits, h.to(logits.dtype), reduction="none").sum(1).double()
            entropy += (F.softplus(logits) - torch.sigmoid(logits) * logits).sum(1).double()
            a = h.to(rbm.weight.dtype) @ rbm.weight + rbm.visible_bias  # p(states | h), activations of RBM k
            log_p += ((rbm._encode(states) * a).sum(1) - rbm._visible_log_norm(a)).double()
            states = h
        log_p += self.top.log_prob(states.reshape(x.shape[0], *self.top.image_shape))  # log p*_top - log Z
        return log_p, log_q, entropy

    def _chunks(self, x: torch.Tensor, num_samples: int):
        """Yield x repeated for successive chunks of the ``num_samples`` draws, as (draws, x repeated)."""
        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self.check_images(x)
        width = max([self.layers[0].weight.shape[1]] + self.hidden)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, x.shape[0] * width))
        for start in range(0, num_samples, chunk):
            count = min(chunk, num_samples - start)
            yield count, x.repeat(count, *([1] * (x.dim() - 1)))

    @torch.no_grad()
    def log_prob_lower_bound(
        self, x: torch.Tensor, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[2]'s variational lower bound on log p(x) per image (N,), float64 nats: the expectation over q
        estimated from ``num_samples`` upward draws (default ``bound_samples``), the entropies exact.
        Equals the exact log p(x) of a one-layer DBN (an RBM). Uses the stored log Z of the top RBM."""
        num_samples = self.bound_samples if num_samples is None else num_samples
        total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for count, rows in self._chunks(x, num_samples):
            log_p, _, entropy = self._log_terms(rows, generator)
            total += (log_p + entropy).view(count, x.shape[0]).sum(0)
        return total / num_samples

    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``log_prob_lower_bound(x)`` with the constructor's ``bound_samples`` (nats per image)."""
        return self.log_prob_lower_bound(x)

    @torch.no_grad()
    def log_prob_estimate(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        num_samples: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """log (1/k) sum_i p(x, h_i) / q(h_i | x) over k = ``num_samples`` upward draws h_i ~ q, per image,
        float64 nats [2]: a stochastic lower bound on log p(x) that rises to it as k grows."""
        total = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        for count, rows in self._chunks(x, num_samples):
            log_p, log_q, _ = self._log_terms(rows, generator)
            total = torch.logaddexp(total, torch.logsumexp((log_p - log_q).view(count, x.shape[0]), 0))
        return total - math.log(num_samples)

    # -- the top RBM's partition function ------------------------------------------------------------
    def compute_partition(self, **options) -> dict:
        """log Z of the top RBM, stored in it (RBM.compute_partition: exact when small, else AIS)."""
        return self.top.compute_partition(**options)

    @property
    def has_partition(self) -> bool:
        return self.top.has_partition

    def prepare_for_evaluation(self, progress: bool = False) -> None:
        if not self.has_partition:
            self.compute_partition(progress=progress)

    def partition_details(self) -> dict | None:
        return self.top.partition_details()

    @property
    def partition_info(self) -> str:
        return self.top.partition_info
