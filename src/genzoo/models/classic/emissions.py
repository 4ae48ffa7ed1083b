"""Emission distributions p(o_t | z_t = k) for the hidden Markov models in ``hmm.py``.

Each is a small ``nn.Module`` over K hidden states with the same surface:

    log_prob(obs)                -> (N, T, K)  log p(o_{n,t} | z=k), nats (a log DENSITY for Gaussians)
    statistics(obs, gamma)       -> dict of tensors: expected sufficient statistics under the state
                                    posteriors gamma (N, T, K); dicts of several batches add up key by key
    m_step(stats, prior)         -> None: set the parameters to the maximizer given the statistics
    log_prior(prior)             -> the log prior density m_step's maximizer includes (up to a constant)
    sample(states, generator)    -> observations for integer states (N, T)
    initialize(obs, generator)   -> None: a data-dependent start for EM

Parameters are unconstrained (softmax logits, log scales, a Cholesky factor with a log diagonal), so
every value is a valid distribution and ``-log p`` can be minimized by gradient descent as well.
Observations: categorical (N, T, D) integers in [0, levels) (a product of D categoricals per step;
D=1 is a plain categorical and levels=2 a Bernoulli vector), Gaussian (N, T, d) floats.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.classic.categorical import level_counts, log_likelihood_table, safe_log


def spread_out_rows(
    values: torch.Tensor, k: int, generator: torch.Generator | None, pool_size: int = 10000
) -> torch.Tensor:
    """``k`` rows of ``values`` (M, d) picked by k-means++ seeding (Arthur & Vassilvitskii 2007) among a
    random pool: well-separated starting points make EM less likely to stall on a saddle."""
    pool = values[torch.randperm(values.shape[0], generator=generator)[:pool_size].to(values.device)].double()
    chosen = [int(torch.randint(0, pool.shape[0], (1,), generator=generator))]
    nearest = torch.full((pool.shape[0],), float("inf"), dtype=pool.dtype, device=pool.device)
    for _ in range(k - 1):
        nearest = torch.minimum(nearest, (pool - pool[chosen[-1]]).square().sum(1))
        chosen.append(int(torch.multinomial((nearest + 1e-12).cpu(), 1, generator=generator)))
    return pool[torch.tensor(chosen, device=pool.device)].to(values.dtype)


class CategoricalEmission(nn.Module):
    """A product of ``dims`` categoricals with ``levels`` values per step: log theta_{k,i,v} (K, D, L)
    as softmax ``logits``. ``m_step`` adds ``prior`` Dirichlet pseudo-counts (1.0 = Laplace)."""

    def __init__(self, states: int, dims: int = 1, levels: int = 2):
        super().__init__()
        self.states, self.dims, self.levels = int(states), int(dims), int(levels)
        self.logits = nn.Parameter(0.1 * torch.randn(self.states, self.dims, self.levels))

    def log_theta(self) -> torch.Tensor:
        return F.log_softmax(self.logits, dim=-1)

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dim() == 2:  # (N, T) symbols: one categorical per step
            obs = obs[..., None]
        if obs.shape[-1] != self.dims:
            raise ValueError(f"expected {self.dims} symbols per step, got observations of shape {tuple(obs.shape)}")
        return obs.reshape(-1, self.dims).to(self.logits.device, torch.long)

    def log_prob(self, obs: torch.Tensor) -> torch.Tensor:
        return log_likelihood_table(self._flat(obs), self.log_theta()).reshape(*obs.shape[:2], self.states)

    def statistics(self, obs: torch.Tensor, gamma: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"counts": level_counts(self._flat(obs), gamma.reshape(-1, self.states), self.levels)}

    def log_prior(self, prior: float) -> torch.Tensor:
        """log Dirichlet(prior + 1) density of theta up to a constant: what ``m_step``'s MAP maximizes."""
        return prior * self.log_theta().sum()

    @torch.no_grad()
    def m_step(self, stats: dict[str, torch.Tensor], prior: float = 0.0) -> None:
        counts = stats["counts"] + prior
        self.logits.copy_(safe_log(counts / counts.sum(-1, keepdim=True).clamp_min(torch.finfo(counts.dtype).tiny)))

    @torch.no_grad()
    def sample(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Symbols (N, T, D) for states (N, T), drawn on the generator's device."""
        probs = self.log_theta().exp().to(states.device)[states.reshape(-1)].reshape(-1, self.levels)
        draws = torch.multinomial(probs.float(), 1, generator=generator)
        return draws.reshape(*states.shape, self.dims)

    @torch.no_grad()
    def initialize(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Each state starts at a k-means++-spread observation blended half-and-half with the smoothed
        marginals (the mixture's start, ``mixture.py``)."""
        x = self._flat(obs)
        counts = torch.stack([(x == v).sum(0) for v in range(self.levels)], -1).to(self.logits.dtype)
        marginal = (counts + 1.0) / (x.shape[0] + self.levels)
        pool = x[torch.randperm(x.shape[0], generator=generator)[:10000].to(x.device)]  # one-hot only of a pool
        one_hot = F.one_hot(pool, self.levels).to(self.logits.dtype).flatten(1)
        seeds = spread_out_rows(one_hot, self.states, generator).reshape(self.states, self.dims, self.levels)
        self.logits.copy_((0.5 * seeds + 0.5 * marginal).log())


class BernoulliEmission(CategoricalEmission):
    """A vector of ``dims`` independent binary units per step: the categorical product with 2 levels."""

    def __init__(self, states: int, dims: int):
        super().__init__(states, dims, levels=2)


class GaussianEmission(nn.Module):
    """A Gaussian per state over d-dimensional vectors: ``means`` (K, d) and either a diagonal
    (``log_scale`` (K, d): log standard deviations) or a full covariance Sigma_k = L_k L_k^T
    (``scale_tril`` (K, d, d): lower triangle of L_k with log of its diagonal on the diagonal).
    ``m_step`` adds ``min_covar`` to every variance so that no state collapses onto one point."""

    def __init__(self, states: int, dims: int = 1, covariance: str = "diag", min_covar: float = 1e-3):
        super().__init__()
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        self.states, self.dims, self.covariance, self.min_covar = int(states), int(dims), covariance, float(min_covar)
        self.means = nn.Parameter(torch.randn(self.states, self.dims))
        if covariance == "diag":
            self.log_scale = nn.Parameter(torch.zeros(self.states, self.dims))
        else:
            self.scale_tril = nn.Parameter(torch.zeros(self.states, self.dims, self.dims))

    def cholesky(self) -> torch.Tensor:
        """L_k (K, d, d) with Sigma_k = L_k L_k^T."""
        if self.covariance == "diag":
            return torch.diag_embed(self.log_scale.exp())
        raw = self.scale_tril.tril(-1)
        return raw + torch.diag_embed(self.scale_tril.diagonal(dim1=-2, dim2=-1).exp())

    def covariances(self) -> torch.Tensor:
        """Sigma_k (K, d, d)."""
        chol = self.cholesky()
        return chol @ chol.transpose(-1, -2)

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dim() == 2:
            obs = obs[..., None]
        if obs.shape[-1] != self.dims:
            raise ValueError(f"expected {self.dims}-dimensional observations, got shape {tuple(obs.shape)}")
        return obs.reshape(-1, self.dims).to(self.means.device, self.means.dtype)

    def log_prob(self, obs: torch.Tensor) -> torch.Tensor:
        x = self._flat(obs)
        if self.covariance == "diag":
            z = (x[:, None, :] - self.means) * torch.exp(-self.log_scale)  # (NT, K, d)
            half_log_det = self.log_scale.sum(-1)
        else:
            diff = (x[None] - self.means[:, None, :]).transpose(-1, -2)  # (K, d, NT)
            z = torch.linalg.solve_triangular(self.cholesky(), diff, upper=False).permute(2, 0, 1)
            half_log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).sum(-1)
        out = -0.5 * z.square().sum(-1) - half_log_det - 0.5 * self.dims * math.log(2 * math.pi)
        return out.reshape(*obs.shape[:2], self.states)

    def statistics(self, obs: torch.Tensor, gamma: torch.Tensor) -> dict[str, torch.Tensor]:
        x, g = self._flat(obs), gamma.reshape(-1, self.states).to(self.means.dtype)
        second = g.T @ x.square() if self.covariance == "diag" else torch.einsum("nk,ni,nj->kij", g, x, x)
        return {"weight": g.sum(0), "first": g.T @ x, "second": second}

    def log_prior(self, prior: float) -> torch.Tensor:
        return self.means.new_zeros(())  # maximum likelihood (min_covar only keeps it away from singular)

    @torch.no_grad()
    def m_step(self, stats: dict[str, torch.Tensor], prior: float = 0.0) -> None:
        """Weighted means and covariances (Rabiner 1989, Sec. IV.A, one component); ``prior`` is unused."""
        weight = stats["weight"].clamp_min(torch.finfo(stats["weight"].dtype).tiny)
        mean = stats["first"] / weight[:, None]
        if self.covariance == "diag":
            var = stats["second"] / weight[:, None] - mean.square()
            self.log_scale.copy_(0.5 * (var.clamp_min(0) + self.min_covar).log())
        else:
            cov = stats["second"] / weight[:, None, None] - mean[:, :, None] * mean[:, None, :]
            cov = 0.5 * (cov + cov.transpose(-1, -2)) + self.min_covar * torch.eye(
                self.dims, dtype=cov.dtype, device=cov.device
            )
            self._set_covariances(cov)
        self.means.copy_(mean)

    def _set_covariances(self, cov: torch.Tensor) -> None:
        chol = torch.linalg.cholesky(cov)
        self.scale_tril.copy_(chol.tril(-1) + torch.diag_embed(chol.diagonal(dim1=-2, dim2=-1).log()))

    @torch.no_grad()
    def sample(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Vectors (N, T, d) for states (N, T), drawn on the generator's device."""
        flat = states.reshape(-1)
        noise = torch.randn(flat.shape[0], self.dims, generator=generator, device=states.device, dtype=self.means.dtype)
        chol, means = self.cholesky().to(states.device), self.means.to(states.device)
        x = means[flat] + (chol[flat] @ noise[:, :, None])[..., 0]
        return x.reshape(*states.shape, self.dims)

    @torch.no_grad()
    def initialize(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Means at k-means++-spread observations, every covariance the data's (diagonal) covariance."""
        x = self._flat(obs)
        self.means.copy_(spread_out_rows(x, self.states, generator))
        var = x.var(0, unbiased=False) + self.min_covar
        if self.covariance == "diag":
            self.log_scale.copy_(0.5 * var.log().expand(self.states, -1))
        else:
            self._set_covariances(torch.diag_embed(var).expand(self.states, -1, -1).clone())
