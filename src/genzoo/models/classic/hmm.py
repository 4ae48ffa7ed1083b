"""Hidden Markov models [1]: exact inference in log space, batched over sequences, CPU or GPU.

    p(o_1..T) = sum_{z_1..T} pi_{z_1} b_{z_1}(o_1) prod_{t>1} A_{z_{t-1} z_t} b_{z_t}(o_t)       (nats)

with K hidden states, start probabilities pi (K,), transitions A (K, K) (rows sum to 1) and an
emission distribution b_k (``emissions.py``: categorical, Bernoulli vector, Gaussian). Every
quantity below is a log probability in nats, for N sequences of equal length T at once:

- ``forward``  log alpha_t(k) = log p(o_1..t, z_t=k)           [1, Sec. III.A, the forward procedure]
- ``backward`` log beta_t(k)  = log p(o_t+1..T | z_t=k)         [1, Sec. III.A, the backward procedure]
- ``HMM.posteriors`` gamma_t(k) = p(z_t=k | o), ``HMM.pair_marginals`` xi_t(i,j) = p(z_t=i, z_t+1=j | o)
  [1, Sec. III.B-C]; ``viterbi``: the most probable state path [1, Sec. III.B]
- ``HMM.fit_em``: Baum-Welch re-estimation over many sequences [1, Sec. III.C and V.B], with optional
  Dirichlet pseudo-counts; ``HMM.loss`` = -mean log p for gradient training (logits are unconstrained).

Log space instead of Rabiner's scaling [1, Sec. V.A]: a step of the recursion is log(exp(v) @ A) with
v shifted by its maximum, a matrix product that neither overflows nor underflows while every
transition probability is above about e^-80 (float32) or e^-700 (float64).

``RowHMM`` turns this into an image density: the rows of an image are the T=H steps.

[1] L. R. Rabiner. A tutorial on hidden Markov models and selected applications in speech
    recognition. Proceedings of the IEEE 77(2), 1989.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import ExplicitDensityModel
from genzoo.models.classic.categorical import safe_log
from genzoo.models.classic.emissions import BernoulliEmission, CategoricalEmission


def log_matmul(log_v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """log(exp(log_v) @ m) for (N, K) log-values and a (K, K) matrix of probabilities, stable: the
    max of each row of log_v is shifted out (a row of -inf, an impossible sequence, stays -inf)."""
    shift = torch.nan_to_num(log_v.detach().amax(-1, keepdim=True), neginf=0.0)
    return torch.log(torch.exp(log_v - shift) @ m) + shift


def forward(log_start: torch.Tensor, log_trans: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """log alpha (N, T, K) from log pi (K,), log A (K, K) and emission log-probabilities (N, T, K)."""
    alphas, trans = [log_start + log_b[:, 0]], log_trans.exp()
    for t in range(1, log_b.shape[1]):
        alphas.append(log_matmul(alphas[-1], trans) + log_b[:, t])
    return torch.stack(alphas, 1)


def backward(log_trans: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """log beta (N, T, K); log beta_T = 0."""
    betas, trans_t = [torch.zeros_like(log_b[:, -1])], log_trans.exp().T
    for t in range(log_b.shape[1] - 2, -1, -1):
        betas.append(log_matmul(log_b[:, t + 1] + betas[-1], trans_t))
    return torch.stack(betas[::-1], 1)


def forward_backward(log_start, log_trans, log_b):
    """(log alpha, log beta, log p(o) (N,)): everything the posteriors need, nats."""
    log_alpha, log_beta = forward(log_start, log_trans, log_b), backward(log_trans, log_b)
    return log_alpha, log_beta, torch.logsumexp(log_alpha[:, -1], -1)


def expected_transitions(log_alpha, log_beta, log_trans, log_b, log_lik) -> torch.Tensor:
    """sum over sequences and t of xi_t(i, j), (K, K), as A * (P^T Q) with one matrix product.

    P stays below 1 / A_ij* (j* the best-explaining next state), so it is finite unless a transition
    probability is below about e^-700 in float64 (EM's precision; its pseudo-counts keep A away from 0).
    """
    k = log_b.shape[-1]
    ahead = (log_b + log_beta)[:, 1:]  # log p(o_t+1..T | z_t+1=j), shifted below by its max over j
    shift = ahead.amax(-1, keepdim=True)
    p = torch.exp(log_alpha[:, :-1] + shift - log_lik[:, None, None]).reshape(-1, k)
    q = torch.exp(ahead - shift).reshape(-1, k)
    return torch.exp(log_trans) * (p.T @ q)


def viterbi(log_start: torch.Tensor, log_trans: torch.Tensor, log_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable state paths (N, T) and their joint log p(o, z) (N,), nats."""
    delta, pointers = log_start + log_b[:, 0], []
    for t in range(1, log_b.shape[1]):
        best, arg = (delta[:, :, None] + log_trans).max(1)
        pointers.append(arg)
        delta = best + log_b[:, t]
    score, last = delta.max(-1)
    path = [last]
    for arg in reversed(pointers):
        path.append(arg.gather(1, path[-1][:, None])[:, 0])
    return torch.stack(path[::-1], 1), score


class HMM(nn.Module):
    """K-state HMM with any emission module of ``emissions.py``: ``start_logits`` (K,) and
    ``transition_logits`` (K, K), both softmax-normalized (rows of A), plus the emission's parameters.

    ``obs`` is (N, T) or (N, T, D) integers for categorical emissions, (N, T, d) floats for Gaussians.
    """

    def __init__(self, emission: nn.Module):
        super().__init__()
        self.emission = emission
        self.states = int(emission.states)
        self.start_logits = nn.Parameter(torch.zeros(self.states))
        self.transition_logits = nn.Parameter(torch.zeros(self.states, self.states))

    def log_start(self) -> torch.Tensor:
        return F.log_softmax(self.start_logits, -1)

    def log_transitions(self) -> torch.Tensor:
        return F.log_softmax(self.transition_logits, -1)

    def _check(self, obs: torch.Tensor) -> None:
        if obs.dim() < 2 or obs.shape[1] < 1:
            raise ValueError(f"expected sequences (N, T, ...) with T >= 1, got shape {tuple(obs.shape)}")

    def _inputs(self, obs: torch.Tensor):
        self._check(obs)
        return self.log_start(), self.log_transitions(), self.emission.log_prob(obs)

    def log_prob(self, obs: torch.Tensor) -> torch.Tensor:
        """log p(o_1..T) of every sequence, (N,), nats (a log density for Gaussian emissions)."""
        with torch.autocast(self.start_logits.device.type, enabled=False):  # low precision breaks sums
            return torch.logsumexp(forward(*self._inputs(obs))[:, -1], -1)

    def loss(self, obs: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood, nats per sequence."""
        return -self.log_prob(obs).mean()

    def posteriors(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(o) (N,), gamma (N, T, K)) by forward-backward; gamma_t sums to 1 over states."""
        log_alpha, log_beta, log_lik = forward_backward(*self._inputs(obs))
        return log_lik, torch.exp(log_alpha + log_beta - log_lik[:, None, None])

    def pair_marginals(self, obs: torch.Tensor) -> torch.Tensor:
        """xi (N, T-1, K, K): p(z_t=i, z_t+1=j | o). Memory N*T*K^2: for inspection; EM sums them instead."""
        log_start, log_trans, log_b = self._inputs(obs)
        log_alpha, log_beta, log_lik = forward_backward(log_start, log_trans, log_b)
        ahead = (log_b + log_beta)[:, 1:, None, :]
        return torch.exp(log_alpha[:, :-1, :, None] + log_trans + ahead - log_lik[:, None, None, None])

    def viterbi(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(most probable state paths (N, T), their log p(o, z) (N,) in nats)."""
        return viterbi(*self._inputs(obs))

    @torch.no_grad()
    def sample(
        self, n: int, length: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (n, length), observations) drawn on the generator's device (else the model's)."""
        device = generator.device if generator is not None else self.start_logits.device
        start, trans = self.log_start().exp().to(device).float(), self.log_transitions().exp().to(device).float()
        states = [torch.multinomial(start.expand(n, -1), 1, replacement=True, generator=generator)[:, 0]]
        for _ in range(length - 1):
            states.append(torch.multinomial(trans[states[-1]], 1, generator=generator)[:, 0])
        states = torch.stack(states, 1)
        return states, self.emission.sample(states, generator)

    def log_prior(self, prior: float) -> torch.Tensor:
        """Log Dirichlet prior of all parameters up to a constant (``prior`` pseudo-counts each)."""
        if prior == 0:
            return self.start_logits.new_zeros(())
        return prior * (self.log_start().sum() + self.log_transitions().sum()) + self.emission.log_prior(prior)

    @torch.no_grad()
    def fit_em(
        self,
        sequences: torch.Tensor,
        iterations: int = 100,
        tol: float = 1e-4,
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
        init: bool = True,
        prior: float = 0.0,
    ) -> dict[str, list[float]]:
        """Baum-Welch (EM) on ``sequences`` (N, T, ...), computed in float64 on the model's device.

        ``init=True`` starts from uniform pi, near-uniform random A (``generator``, a CPU generator)
        and the emission's data-dependent start; ``init=False`` continues from the current parameters.
        ``prior`` adds Dirichlet pseudo-counts to every start, transition and categorical count
        (MAP EM). Stops after ``iterations`` M-steps or once the objective gains less than ``tol``
        nats per sequence. Returns per iteration (entry 0 = the start, last = the returned model) the
        mean ``log_likelihood`` per sequence (nats) and the ``objective`` (plus log prior / N), which
        EM never decreases.
        """
        self._check(sequences)
        n = sequences.shape[0]
        dtype = self.start_logits.dtype
        self.double()
        try:
            if init:
                self._initialize(sequences, generator)
            history: dict[str, list[float]] = {"log_likelihood": [], "objective": []}
            for iteration in range(iterations + 1):
                stats, total = self._e_step(sequences, batch_size)
                history["log_likelihood"].append(total / n)
                history["objective"].append((total + float(self.log_prior(prior))) / n)
                objective = history["objective"]
                if iteration == iterations or (iteration > 0 and objective[-1] - objective[-2] < tol):
                    break
                self._m_step(stats, n, prior)
        finally:
            self.to(dtype)
        return history

    def _initialize(self, sequences, generator):
        noise = torch.rand(self.states, self.states, generator=generator, dtype=torch.float64)
        self.start_logits.zero_()
        self.transition_logits.copy_((1.0 + 0.2 * noise).log())
        sample = sequences[torch.randperm(sequences.shape[0], generator=generator)[:4096]]
        self.emission.initialize(sample.to(self.start_logits.device), generator)

    def _e_step(self, sequences, batch_size):
        """Expected sufficient statistics under the posterior and the total log-likelihood (nats)."""
        log_start, log_trans = self.log_start(), self.log_transitions()
        stats, total = {}, 0.0
        for begin in range(0, sequences.shape[0], batch_size):
            obs = sequences[begin : begin + batch_size].to(self.start_logits.device)
            log_b = self.emission.log_prob(obs)
            log_alpha, log_beta, log_lik = forward_backward(log_start, log_trans, log_b)
            gamma = torch.exp(log_alpha + log_beta - log_lik[:, None, None])
            batch = {
                "start": gamma[:, 0].sum(0),
                "trans": expected_transitions(log_alpha, log_beta, log_trans, log_b, log_lik),
                **self.emission.statistics(obs, gamma),
            }
            stats = {key: stats[key] + value if key in stats else value for key, value in batch.items()}
            total += float(log_lik.sum())
        return stats, total

    def _m_step(self, stats, n, prior):
        """Re-estimation [1, Sec. III.C]: normalized expected counts plus ``prior`` pseudo-counts."""
        start = (stats["start"] + prior) / (n + self.states * prior)
        trans = stats["trans"] + prior
        self.start_logits.copy_(safe_log(start))
        self.transition_logits.copy_(
            safe_log(trans / trans.sum(-1, keepdim=True).clamp_min(torch.finfo(trans.dtype).tiny))
        )
        self.emission.m_step(stats, prior)


class RowHMM(ExplicitDensityModel):
    """An HMM over the H rows of an image: a row is one step, its W*C subpixels one emission.

    Emissions are ``states`` products of W*C categoricals (Bernoulli units for 2 levels), so
    log p(x) is the exact forward-algorithm log-likelihood, nats per image. ``prior`` is the
    Dirichlet pseudo-count of ``fit_em``; gradient training (the core trainer) ignores it.
    """

    fit_methods = ("em",)
    default_fit = "em"

    def __init__(self, image_shape, levels: int, states: int = 64, prior: float = 1.0):
        super().__init__(image_shape, levels)
        if int(states) < 1:
            raise ValueError(f"states must be >= 1, got {states}")
        if float(prior) < 0:
            raise ValueError(f"prior must be >= 0, got {prior}")
        self.states, self.prior = int(states), float(prior)
        c, _, w = self.image_shape
        emission = (
            BernoulliEmission(self.states, w * c)
            if self.levels == 2
            else CategoricalEmission(self.states, w * c, self.levels)
        )
        self.hmm = HMM(emission)

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> sequences (N, H, W*C) on the model's device."""
        return x.to(self.device).permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) of each image by the forward algorithm, (N,), nats."""
        self.check_images(x)
        return self.hmm.log_prob(self.rows(x))

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Ancestral sampling: a state path, then each row from its state. LongTensor (n, C, H, W)."""
        c, h, w = self.image_shape
        if n == 0:
            return torch.zeros(0, *self.image_shape, dtype=torch.long, device=self.device)
        _, rows = self.hmm.sample(n, h, generator)
        return rows.reshape(n, h, w, c).permute(0, 3, 1, 2).to(self.device)

    def fit_em(
        self,
        images: torch.Tensor,
        iterations: int = 100,
        tol: float = 1e-3,
        generator: torch.Generator | None = None,
        batch_size: int = 2048,
        init: bool = True,
        prior: float | None = None,
    ) -> dict[str, list[float]]:
        """Baum-Welch on the training images (see ``HMM.fit_em``); nats per image."""
        self.check_images(images)
        if images.shape[0] == 0:
            raise ValueError("fit_em needs at least one image")
        sequences = self.rows(images.to(torch.uint8) if self.levels <= 256 else images)  # 8x less memory
        return self.hmm.fit_em(
            sequences, iterations, tol, generator, batch_size, init, self.prior if prior is None else float(prior)
        )
