"""Restricted Boltzmann machine: Bernoulli hidden units, Bernoulli or softmax visible units.

    E(v, h) = -b.v - c.h - h.W v                      p(v) = exp(-F(v)) / Z
    F(v)    = -b.v - sum_j softplus(c_j + W_j.v)       free energy, nats

Binary images (levels == 2) have one Bernoulli visible unit per subpixel. With more levels each
subpixel is one softmax unit: v holds its one-hot vector, and b and W have one entry per
(subpixel, level), so p(v | h) is a categorical distribution per subpixel.

Training [1, 2]: ``training_loss(x, y, step)`` = mean F(x) - mean F(v_model), where v_model comes
from ``cd_steps`` block Gibbs sweeps (no gradient) started at the data (CD-k, [1]) or at persistent
chains kept in the ``chains`` buffer, which it advances (PCD, [2]; in checkpoints, so a resumed run
continues the same chains). Its gradient is the CD/PCD estimate of the negative log-likelihood
gradient; its VALUE is not a likelihood (it is near zero and may be negative). ``loss(x)`` is the
same surrogate with CD started at the data and the chains left alone (it changes no state).

Likelihood [3, 4]: ``log_prob(x) = -F(x) - log Z`` (nats) needs log Z, computed once after training
and stored in buffers (saved with the model): ``compute_partition()``, or ``set_partition()`` with the
result of ``log_partition_exact()`` (enumerating the smaller layer) or ``log_partition_ais()``. The
stored value is tied to the weights it was computed for: after the weights change, ``log_prob``
refuses to use it.

[1] G. E. Hinton, "Training products of experts by minimizing contrastive divergence", Neural Computation 14, 2002.
[2] T. Tieleman, "Training restricted Boltzmann machines using approximations to the likelihood gradient", ICML 2008.
[3] R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief networks", ICML 2008.
[4] R. M. Neal, "Annealed importance sampling", Statistics and Computing 11, 2001.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.errors import TrainingError
from genzoo.models.base import EnergyModel
from genzoo.models.energy.partition import PAPER_NUM_BETAS, ais_betas, enumerate_logsumexp, log_mean_exp_stats

METHODS = {1: "exact", 2: "ais"}  # codes of the partition_method buffer; 0: none


class PartitionFunctionError(RuntimeError):
    """log p(x) was asked for while log Z is unknown, or was computed for other weights."""


def uniform(shape, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(0, 1) draws on ``device`` from ``generator`` (which may live on another device) or torch's global RNG."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


class RBM(EnergyModel):
    """RBM with ``hidden`` binary hidden units; see the module docstring for training and likelihoods.

    ``hidden``: hidden units; ``persistent``: PCD (chains kept across updates, [2]) instead of CD from
    the data; ``cd_steps``: Gibbs sweeps k of CD-k / PCD; ``cd_ramp_steps`` > 0 raises k linearly from 1 to
    ``cd_steps`` over that many training steps (as Salakhutdinov's RBM code raises k during learning);
    ``num_chains``: PCD chains; ``burn_in``: Gibbs sweeps when sampling; ``init_std``: weight init scale.
    """

    def __init__(
        self,
        image_shape,
        levels: int,
        hidden: int = 500,
        cd_steps: int = 1,
        persistent: bool = False,
        num_chains: int = 100,
        burn_in: int = 1000,
        init_std: float = 0.01,
        cd_ramp_steps: int = 0,
    ):
        super().__init__(image_shape, levels)
        for name, value, low in (
            ("hidden", hidden, 1),
            ("cd_steps", cd_steps, 1),
            ("num_chains", num_chains, 1),
            ("burn_in", burn_in, 0),
            ("cd_ramp_steps", cd_ramp_steps, 0),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not init_std >= 0:
            raise ValueError(f"init_std must be >= 0, got {init_std!r}")
        self.hidden, self.cd_steps, self.persistent = int(hidden), int(cd_steps), bool(persistent)
        self.num_chains, self.burn_in, self.cd_ramp_steps = int(num_chains), int(burn_in), int(cd_ramp_steps)
        num_visible = self.num_dims * (1 if self.levels == 2 else self.levels)
        self.weight = nn.Parameter(torch.randn(self.hidden, num_visible) * init_std)  # W: (hidden, visible units)
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(self.hidden))
        # visible biases of the AIS base-rate RBM (W = 0, c = 0); zeros = uniform until init_biases
        self.register_buffer("base_rate_bias", torch.zeros(num_visible))
        # PCD chains as integer levels (not floats, so an EMA copies rather than averages them)
        chain_dtype = torch.uint8 if self.levels <= 256 else torch.int32
        self.register_buffer(
            "chains", torch.zeros(self.num_chains if self.persistent else 0, self.num_dims, dtype=chain_dtype)
        )
        self.register_buffer("chains_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("log_z", torch.full((), math.nan, dtype=torch.float64))
        self.register_buffer("log_z_stderr", torch.full((), math.nan, dtype=torch.float64))
        self.register_buffer("log_z_interval", torch.full((2,), math.nan, dtype=torch.float64))  # +-3 sigma
        self.register_buffer("partition_method", torch.zeros((), dtype=torch.int8))
        self.register_buffer("partition_fingerprint", torch.zeros(9, dtype=torch.float64))
        self.last_ais: dict | None = None  # details of the latest log_partition_ais run (not saved)

    # -- units ---------------------------------------------------------------------------------------
    def _encode(self, levels: torch.Tensor, dtype=None) -> torch.Tensor:
        """Integer levels (N, ...) -> visible unit states (N, V): the bits, or one-hot per subpixel."""
        levels = levels.reshape(levels.shape[0], -1).long()
        dtype = dtype or self.weight.dtype
        return levels.to(dtype) if self.levels == 2 else F.one_hot(levels, self.levels).flatten(1).to(dtype)

    def _visible_log_norm(self, a: torch.Tensor) -> torch.Tensor:
        """sum_i log sum_{states s of unit i} exp(a_i . s) for visible activations a (N, V): (N,)."""
        if self.levels == 2:
            return F.softplus(a).sum(1)
        return torch.logsumexp(a.unflatten(1, (self.num_dims, self.levels)), -1).sum(1)

    def _sample_visible(self, a: torch.Tensor, generator=None) -> torch.Tensor:
        """Draw v ~ p(v | activations a (N, V)) as integer levels (N, D)."""
        if self.levels == 2:
            return (uniform(a.shape, a.device, generator) < torch.sigmoid(a)).long()
        cdf = torch.softmax(a.unflatten(1, (self.num_dims, self.levels)), -1).cumsum(-1)
        u = uniform((a.shape[0], self.num_dims, 1), a.device, generator)
        return (cdf < u).sum(-1).clamp_(max=self.levels - 1)

    def _params(self, dtype=None):
        dtype = dtype or self.weight.dtype
        return tuple(p.detach().to(dtype) for p in (self.weight, self.visible_bias, self.hidden_bias))

    def _free_energy(self, v: torch.Tensor, params=None) -> torch.Tensor:
        w, b, c = params if params is not None else (self.weight, self.visible_bias, self.hidden_bias)
        return -(v @ b) - F.softplus(v @ w.t() + c).sum(1)

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of integer images x (N, C, H, W), nats: log p(x) = -F(x) - log Z."""
        self.check_images(x)
        return self._free_energy(self._encode(x))

    def _gibbs_step(self, v: torch.Tensor, generator=None) -> torch.Tensor:
        """One block Gibbs sweep h ~ p(h | v), v ~ p(v | h) on integer levels (N, D)."""
        w, b, c = self._params()
        p_h = torch.sigmoid(self._encode(v) @ w.t() + c)
        h = (uniform(p_h.shape, p_h.device, generator) < p_h).to(w.dtype)
        return self._sample_visible(h @ w + b, generator)

    # -- training ------------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """CD-k surrogate from the data (see the module docstring): its gradient is the CD update, its value
        no likelihood. Changes no state."""
        return self._surrogate(x, persistent=False, sweeps=self.cd_steps)

    def cd_steps_at(self, step: int) -> int:
        """The Gibbs sweeps k of training step ``step`` (0-based): ``cd_steps``, or its ramp from 1."""
        if self.cd_ramp_steps == 0:
            return self.cd_steps
        return min(self.cd_steps, 1 + (self.cd_steps - 1) * step // self.cd_ramp_steps)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        """The CD-k or (with ``persistent``) PCD surrogate of a training step; PCD advances the chains."""
        return self._surrogate(x, persistent=self.persistent, sweeps=self.cd_steps_at(step))

    def _surrogate(self, x: torch.Tensor, persistent: bool, sweeps: int) -> torch.Tensor:
        self.check_images(x)
        with torch.autocast(x.device.type, enabled=False):  # free-energy differences need float32
            with torch.no_grad():
                v = self._persistent_chains() if persistent else x.reshape(x.shape[0], -1)
                for _ in range(sweeps):
                    v = self._gibbs_step(v)
                if persistent:
                    self.chains.copy_(v)
            return self._free_energy(self._encode(x)).mean() - self._free_energy(self._encode(v)).mean()

    def _persistent_chains(self) -> torch.Tensor:
        if not bool(self.chains_ready):  # start from the visible-bias-only model (the data marginals after init_biases)
            bias = self.visible_bias.detach().expand(self.num_chains, -1)
            self.chains.copy_(self._sample_visible(bias))
            self.chains_ready.fill_(True)
        return self.chains.long()

    def init_from_data(self, train) -> None:
        """The trainer's hook at the start of a fresh run: ``init_biases`` from the train split."""
        self.init_biases(train.full_batch(torch.Generator().manual_seed(0))[0])

    @torch.no_grad()
    def init_biases(self, images: torch.Tensor, smoothing: float = 1.0) -> "RBM":
        """Set the visible biases, and the AIS base-rate biases, to the data's per-subpixel log-frequencies.

        The usual start [Hinton's practical guide; 3]: b_i = log(p_i / (1 - p_i)) for bits, b_ik = log p_ik
        for softmax units, with p the frequencies of each level in ``images`` (integer images (N, C, H, W),
        e.g. the whole training split) plus ``smoothing`` pseudo-images spread evenly over the levels, so
        that a level never seen still gets a finite bias. Call it on a fresh model, before training.
        """
        self.check_images(images)
        counts = torch.zeros(self.num_dims * self.levels, dtype=torch.float64)
        offsets = torch.arange(self.num_dims) * self.levels
        for chunk in images.split(4096):
            counts += torch.bincount(
                (chunk.reshape(chunk.shape[0], -1).long().cpu() + offsets).flatten(), minlength=counts.numel()
            ).double()
        log_p = (
            (counts.view(self.num_dims, self.levels) + smoothing / self.levels) / (images.shape[0] + smoothing)
        ).log()
        bias = log_p[:, 1] - log_p[:, 0] if self.levels == 2 else log_p.flatten()
        self.visible_bias.copy_(bias)
        self.base_rate_bias.copy_(bias)
        self.chains_ready.fill_(False)
        return self

    # -- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        burn_in: int | None = None,
        x: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` images (LongTensor (n, C, H, W)): the visible state after ``burn_in`` (default: the
        constructor's) block Gibbs sweeps from independent uniformly random levels.

        Completion: with images ``x`` (n, C, H, W) and a boolean ``known`` mask, the known subpixels are
        clamped to ``x`` after every sweep, so the others are drawn from p(unknown | known) as the chain mixes.
        """
        v = (uniform((n, self.num_dims), self.device, generator) * self.levels).long().clamp_(max=self.levels - 1)
        if x is not None:
            self.check_images(x)
            if x.shape[0] != n:
                raise ValueError(f"x holds {x.shape[0]} images but n={n}")
            x = x.to(self.device).reshape(n, -1).long()
            known = (
                torch.as_tensor(known, dtype=torch.bool, device=self.device).expand(n, *self.image_shape).reshape(n, -1)
            )
            v = torch.where(known, x, v)
        for _ in range(self.burn_in if burn_in is None else burn_in):
            v = self._gibbs_step(v, generator)
            if x is not None:
                v = torch.where(known, x, v)
        return v.reshape(n, *self.image_shape)

    # -- partition function --------------------------------------------------------------------------
    @torch.no_grad()
    def log_partition_exact(self, side: str = "auto", max_configurations: int = 2**20) -> float:
        """log Z in nats by enumerating one layer and summing the other analytically (float64).

        ``side``: "visible", "hidden", or "auto" (the layer with fewer joint states: 2**hidden against
        levels**subpixels). Refuses (ValueError) when that layer has more than ``max_configurations`` states.
        """
        sizes = {"visible": self.levels**self.num_dims, "hidden": 2**self.hidden}
        side = min(sizes, key=sizes.get) if side == "auto" else side
        if side not in sizes:
            raise ValueError(f"side must be 'auto', 'visible' or 'hidden', got {side!r}")
        if sizes[side] > max_configurations:
            raise ValueError(
                f"exact log Z would enumerate {sizes[side]} states of the {side} layer "
                f"(limit {max_configurations}); use log_partition_ais()"
            )
        params = self._params(torch.float64)
        w, b, c = params
        chunk = max(1, 2**22 // max(w.shape))
        if side == "visible":
            term = lambda v: -self._free_energy(self._encode(v, torch.float64), params)
            return enumerate_logsumexp(term, self.num_dims, self.levels, chunk, w.device)
        term = lambda h: h.double() @ c + self._visible_log_norm(h.double() @ w + b)
        return enumerate_logsumexp(term, self.hidden, 2, chunk, w.device)

    @torch.no_grad()
    def log_partition_ais(
        self,
        num_chains: int = 100,
        num_betas: int = PAPER_NUM_BETAS,
        base_rate_visible_bias: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> tuple[float, float]:
        """AIS estimate of log Z [3, 4]: (log Z, its standard error), nats; details in ``self.last_ais``.

        Anneals from the base-rate RBM A (W = 0, c = 0, visible biases ``base_rate_visible_bias``, by
        default the ``base_rate_bias`` buffer set by init_biases) to this RBM B through
        p_beta(v) ~ exp((1 - beta) b_A.v + beta b.v) prod_j (1 + exp(beta (c_j + W_j.v))) on the schedule
        ``ais_betas(num_betas)`` ([3]'s 14,500 by default), with one block Gibbs sweep at each beta and
        ``num_chains`` independent runs in parallel on the model's device. log Z = log Z_A + log mean(w),
        its standard error by the delta method; ``last_ais["interval"]`` is [3]'s log(Z +- 3 sigma).
        The estimate is a stochastic lower bound in expectation (Jensen): more betas raise it.
        """
        w, b, c = self._params()
        base = self.base_rate_bias if base_rate_visible_bias is None else torch.as_tensor(base_rate_visible_bias)
        base = base.to(w).reshape(-1)
        if base.numel() != b.numel():
            raise ValueError(f"base_rate_visible_bias must have {b.numel()} entries, got {base.numel()}")
        betas = ais_betas(num_betas).tolist()
        v = self._sample_visible(base.expand(num_chains, -1), generator)  # exact draws from A
        log_w = torch.zeros(num_chains, dtype=torch.float64, device=w.device)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(betas) - 1, desc=f"AIS log Z ({num_chains} chains)", unit="beta", leave=False,
                   disable=not progress, mininterval=1.0)  # fmt: skip
        for k in range(1, len(betas)):
            bar.update(1)
            previous, beta = betas[k - 1], betas[k]
            units = self._encode(v)
            x = units @ w.t() + c
            # log p*_k(v) - log p*_{k-1}(v); the tempering terms in float64 (14,500 small differences add up)
            xd = x.double()
            log_w += (beta - previous) * (units @ (b - base)).double() + (
                F.softplus(beta * xd) - F.softplus(previous * xd)
            ).sum(1)
            if k < len(betas) - 1:  # a Gibbs sweep leaving p_k invariant
                h = (uniform(x.shape, x.device, generator) < torch.sigmoid(beta * x)).to(w.dtype)
                v = self._sample_visible(beta * (h @ w + b) + (1 - beta) * base, generator)
        bar.close()
        log_z_base = float(self._visible_log_norm(base[None].double())) + self.hidden * math.log(2.0)
        log_ratio, stderr, (low, high) = log_mean_exp_stats(log_w)
        self.last_ais = {
            "log_z": log_z_base + log_ratio,
            "log_z_stderr": stderr,
            "num_chains": num_chains,
            "num_betas": len(betas) - 1,
            "log_z_base": log_z_base,
            "interval": (log_z_base + low, log_z_base + high),
            "log_weights": log_w.cpu(),
        }
        return log_z_base + log_ratio, stderr

    def compute_partition(self, method: str = "auto", max_configurations: int = 2**20, **ais_options) -> dict:
        """Compute log Z and store it (set_partition): exact when a layer has at most ``max_configurations``
        states and ``method`` is "auto" or "exact", else AIS with ``ais_options``. Returns partition_details()."""
        if method not in ("auto", "exact", "ais"):
            raise ValueError(f"method must be 'auto', 'exact' or 'ais', got {method!r}")
        smallest = min(self.levels**self.num_dims, 2**self.hidden)
        if method == "exact" or (method == "auto" and smallest <= max_configurations):
            self.set_partition(self.log_partition_exact(max_configurations=max_configurations), 0.0, "exact")
        else:
            log_z, stderr = self.log_partition_ais(**ais_options)
            self.set_partition(log_z, stderr, "ais", self.last_ais["interval"])
        return self.partition_details()

    @torch.no_grad()
    def set_partition(self, log_z: float, stderr: float = 0.0, method: str = "exact", interval=None) -> None:
        """Store log Z (nats), its standard error and how it was obtained ("exact" | "ais") for these weights."""
        codes = {name: code for code, name in METHODS.items()}
        if method not in codes:
            raise ValueError(f"method must be 'exact' or 'ais', got {method!r}")
        if not math.isfinite(log_z):
            raise TrainingError(f"log Z must be finite, got {log_z}: the model diverged")
        if interval is None:
            interval = (log_z - 3 * stderr, log_z + 3 * stderr) if method == "ais" else (log_z, log_z)
        self.log_z.fill_(log_z)
        self.log_z_stderr.fill_(stderr)
        self.log_z_interval.copy_(torch.tensor([float(v) for v in interval], dtype=torch.float64))
        self.partition_method.fill_(codes[method])
        self.partition_fingerprint.copy_(self._fingerprint())

    def _fingerprint(self) -> torch.Tensor:
        """Sum, sum of squares and a ramp-weighted sum of each parameter (float64): changes with the weights."""
        out = []
        for p in (self.weight, self.visible_bias, self.hidden_bias):
            q = p.detach().double().flatten()
            ramp = torch.linspace(-1.0, 1.0, q.numel(), dtype=torch.float64, device=q.device)
            out += [q.sum(), q.square().sum(), (q * ramp).sum()]
        return torch.stack(out)

    def _partition_is_current(self) -> bool:
        return bool(torch.allclose(self._fingerprint(), self.partition_fingerprint, rtol=1e-9, atol=1e-9))

    @property
    def has_partition(self) -> bool:
        """Whether log_prob can run: a log Z is stored and was computed for the present weights."""
        return int(self.partition_method) != 0 and self._partition_is_current()

    def partition_details(self) -> dict | None:
        """{"method", "log_z", "log_z_stderr", "log_z_interval" (+-3 sigma), "current"} or None if never computed."""
        code = int(self.partition_method)
        if code == 0:
            return None
        return {
            "method": METHODS[code],
            "log_z": float(self.log_z),
            "log_z_stderr": float(self.log_z_stderr),
            "log_z_interval": [float(v) for v in self.log_z_interval],
            "current": self._partition_is_current(),
        }

    @property
    def partition_info(self) -> str:
        """'exact' or 'AIS estimate +- stderr', with the value of log Z, for labelling reported NLLs."""
        d = self.partition_details()
        if d is None:
            return "no partition function computed"
        text = (
            f"exact: log Z = {d['log_z']:.4f} nats"
            if d["method"] == "exact"
            else f"AIS estimate: log Z = {d['log_z']:.4f} +- {d['log_z_stderr']:.4f} nats "
            f"(+-3 sigma: [{d['log_z_interval'][0]:.4f}, {d['log_z_interval'][1]:.4f}])"
        )
        return text if d["current"] else text + " (stale: the weights changed since)"

    # -- likelihood ----------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) = -F(x) - log Z of integer images (N, C, H, W), nats (float64), with the stored log Z."""
        self.check_images(x)
        if int(self.partition_method) == 0:
            raise PartitionFunctionError(
                "this RBM has no log partition function yet: call model.compute_partition() (exact when a layer "
                "is small, else AIS), or set_partition() with log_partition_exact() / log_partition_ais()"
            )
        if not self._partition_is_current():
            raise PartitionFunctionError(
                "the stored log Z was computed for other weights (the model was trained or edited since): "
                "call model.compute_partition() again"
            )
        with torch.autocast(x.device.type, enabled=False):
            return -self._free_energy(self._encode(x)).double() - self.log_z
