"""A finite mixture of products of categoricals (Bernoulli for binary images).

    log p(x) = logsumexp_k [ log pi_k + sum_i log theta_{k,i,x_i} ]      (exact, nats)

over the D = C*H*W subpixels. Every component is an "independent pixels" model; the mixture is the
simplest latent-variable model whose likelihood is still exact, because the latent variable z in
{1..K} can be summed out. Two ways to fit it:

- ``fit_em``: expectation-maximization [1] in batches on the model's device, with a symmetric Dirichlet
  prior (``prior`` pseudo-counts per level and per component: Laplace smoothing at 1.0) so that no
  probability is ever exactly 0. EM then maximizes the log posterior, and never decreases it.
- the core trainer (``genzoo train bernoulli-mixture``): the parameters are unconstrained logits, and
  ``loss`` is the mean negative log-likelihood, so any gradient optimizer works too (no prior there).

[1] A. P. Dempster, N. M. Laird, D. B. Rubin. Maximum likelihood from incomplete data via the EM
    algorithm. JRSS B, 1977.
[2] D. Arthur, S. Vassilvitskii. k-means++: the advantages of careful seeding. SODA 2007.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import ExplicitDensityModel
from genzoo.models.classic.categorical import flat_images, level_counts, log_likelihood_table, safe_log, sample_table


class DiscreteMixture(ExplicitDensityModel):
    """Mixture of ``components`` products of categoricals over integer images with ``levels`` values.

    ``prior`` is the Dirichlet pseudo-count that ``fit_em`` adds to every (component, subpixel, level)
    count and to every component's weight (1.0 = Laplace smoothing, 0 = maximum likelihood); gradient
    training ignores it. Parameters: ``mixing_logits`` (K,) and ``logits`` (K, D, levels), both
    normalized by a softmax, so every value of them is a valid distribution.
    """

    fit_methods = ("em",)
    default_fit = "em"

    def __init__(self, image_shape, levels: int, components: int = 100, prior: float = 1.0):
        super().__init__(image_shape, levels)
        if int(components) < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        if float(prior) < 0:
            raise ValueError(f"prior must be >= 0, got {prior}")
        self.components, self.prior = int(components), float(prior)
        self.mixing_logits = nn.Parameter(torch.zeros(self.components))
        # small random logits break the symmetry between components for gradient training
        self.logits = nn.Parameter(0.1 * torch.randn(self.components, self.num_dims, self.levels))

    def log_mixing(self) -> torch.Tensor:
        """log pi_k, (K,), nats."""
        return F.log_softmax(self.mixing_logits.float(), dim=0)

    def log_theta(self) -> torch.Tensor:
        """log theta_{k,i,v}, (K, D, levels), nats."""
        return F.log_softmax(self.logits.float(), dim=-1)

    def joint_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log p(x | z=k) for every image and component, (N, K), nats."""
        self.check_images(x)
        return log_likelihood_table(flat_images(x, self.device), self.log_theta()) + self.log_mixing()

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) of each image, (N,), nats."""
        return torch.logsumexp(self.joint_log_prob(x), dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior p(z=k | x), (N, K): soft cluster assignments."""
        return torch.softmax(self.joint_log_prob(x), dim=1)

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Ancestral sampling: a component k ~ pi, then every subpixel from theta_k. LongTensor (n, C, H, W)."""
        device = generator.device if generator is not None else self.device  # draw where the generator lives
        if n == 0:
            return torch.zeros(0, *self.image_shape, dtype=torch.long, device=self.device)
        k = torch.multinomial(self.log_mixing().exp().to(device), n, replacement=True, generator=generator)
        x = sample_table(self.log_theta().to(device)[k], generator)
        return x.reshape(n, *self.image_shape).to(self.device)

    @torch.no_grad()
    def fit_em(
        self,
        images: torch.Tensor,
        iterations: int = 100,
        tol: float = 1e-4,
        generator: torch.Generator | None = None,
        batch_size: int = 4096,
        init: bool = True,
        prior: float | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> dict[str, list[float]]:
        """Fit by EM on ``images`` (N, C, H, W) and store the result in the parameters.

        ``init=True`` starts each component at a training image (k-means++ seeding, drawn with ``generator``, a
        CPU generator) blended half-and-half with the smoothed pixel marginals; ``init=False`` continues from
        the current parameters. Stops after ``iterations`` M-steps, or once the objective gains less than
        ``tol`` nats per image. ``prior`` overrides ``self.prior``. Returns, per iteration (entry 0 = start,
        last entry = the returned model), the mean train ``log_likelihood`` (nats/image) and the ``objective``
        EM maximizes, the log-likelihood plus the log Dirichlet prior (up to a constant), per image: it never
        decreases; with ``prior=0`` the two coincide.
        """
        self.check_images(images)
        prior = self.prior if prior is None else float(prior)
        x = images.reshape(images.shape[0], -1)
        n = x.shape[0]
        if n == 0:
            raise ValueError("fit_em needs at least one image")
        if init:
            log_theta, log_pi = self._initial_parameters(x, generator, batch_size, dtype)
        else:
            log_theta, log_pi = self.log_theta().to(dtype), self.log_mixing().to(dtype)
        history: dict[str, list[float]] = {"log_likelihood": [], "objective": []}
        for iteration in range(iterations + 1):
            counts, totals, total_ll = self._e_step(x, log_theta, log_pi, batch_size)
            penalty = prior * (log_theta.sum() + log_pi.sum()) if prior > 0 else 0.0
            history["log_likelihood"].append(total_ll / n)
            history["objective"].append(float(total_ll + penalty) / n)
            objective = history["objective"]
            if iteration == iterations or (iteration > 0 and objective[-1] - objective[-2] < tol):
                break
            log_theta, log_pi = self._m_step(counts, totals, n, prior)
        self.logits.copy_(log_theta.to(self.logits.dtype))
        self.mixing_logits.copy_(log_pi.to(self.mixing_logits.dtype))
        return history

    def _initial_parameters(self, x, generator, batch_size, dtype):
        n, levels = x.shape[0], self.levels
        marginal = torch.zeros(x.shape[1], levels, dtype=dtype, device=self.device)
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].to(self.device, torch.long)
            marginal += torch.stack([(xb == v).sum(0) for v in range(levels)], dim=-1).to(dtype)
        marginal = (marginal + 1.0) / (n + levels)
        pick = self._spread_out_images(x, generator)
        seeds = F.one_hot(x[pick].to(self.device, torch.long), levels).to(dtype)
        theta = 0.5 * seeds + 0.5 * marginal
        log_pi = torch.full((self.components,), -math.log(self.components), dtype=dtype, device=self.device)
        return theta.log(), log_pi

    def _spread_out_images(self, x, generator, pool_size: int = 10000) -> torch.Tensor:
        """Indices of K training images chosen by k-means++ seeding [2] (squared distance of levels)
        among a random pool: spread-out starts make EM far less likely to stall on a saddle."""
        n = x.shape[0]
        pool = torch.randperm(n, generator=generator)[:pool_size].to(x.device)
        values = x[pool].to(self.device, torch.float32)
        chosen = [int(torch.randint(0, len(pool), (1,), generator=generator))]
        nearest = torch.full((len(pool),), float("inf"), device=self.device)
        for _ in range(self.components - 1):
            nearest = torch.minimum(nearest, (values - values[chosen[-1]]).square().sum(1))
            weights = (nearest + 1e-6).cpu()  # all-identical images still give a valid distribution
            chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
        return pool[torch.tensor(chosen, device=pool.device)]

    def _e_step(self, x, log_theta, log_pi, batch_size):
        """Expected counts under the posterior p(z | x) and the total log-likelihood (nats)."""
        counts = torch.zeros_like(log_theta)
        totals = torch.zeros_like(log_pi)
        total_ll = torch.zeros((), dtype=log_theta.dtype, device=log_theta.device)
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(self.device, torch.long)
            joint = log_likelihood_table(xb, log_theta) + log_pi
            ll = torch.logsumexp(joint, dim=1)
            resp = (joint - ll[:, None]).exp()
            counts += level_counts(xb, resp, self.levels)
            totals += resp.sum(0)
            total_ll += ll.sum()
        return counts, totals, float(total_ll)

    def _m_step(self, counts, totals, n, prior):
        """MAP estimates under symmetric Dirichlet priors with ``prior`` pseudo-counts."""
        tiny = torch.finfo(counts.dtype).tiny  # with prior 0 an empty component gets theta 0, pi 0
        theta = (counts + prior) / (totals[:, None, None] + self.levels * prior).clamp_min(tiny)
        pi = (totals + prior) / (n + self.components * prior)
        return safe_log(theta), safe_log(pi)
