"""Variational autoencoders: the VAE [1] and the importance-weighted autoencoder (IWAE) [2].

Generative model: z ~ N(0, I), x | z ~ a Bernoulli (2 levels) or softmax over levels for every subpixel,
with logits from a decoder network. With ``stochastic_layers=2`` (the 2-layer model of [2], sec. 5):
z2 ~ N(0, I), z1 | z2 ~ N(mu(z2), diag(sigma^2(z2))), x | z1 as above.
Inference model: q(z1 | x) a diagonal Gaussian from an encoder of the images mapped to [-1, 1]
(and q(z2 | z1) likewise); draws are reparameterized ([1], sec. 2.4).

All quantities are per example, in nats:
    elbo(x)                  E_q[log p(x|z)] - KL(q(z|x) || p(z))  <= log p(x); the KL in closed form for
                             one stochastic layer ([1], appendix B), a Monte-Carlo estimate for two
    log_prob_estimate(x, k)  log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q: the k-sample bound of [2],
                             E <= log p(x), rising with k; the evaluator's NLL estimate (k = 5000)
    loss(x)                  objective "elbo": -mean(E_q[log p(x|z)] - w * KL) with w = beta times a linear
                             warm-up from 0 to 1 over ``kl_warmup_steps`` training steps [3]; objective
                             "iwae": -mean of the ``num_samples``-sample bound of [2] (warm-up weights
                             log p(z) - log q(z|x) inside it). KL weights apply in training mode only: in
                             eval mode ``loss`` is the plain negative bound.

[1] D. P. Kingma, M. Welling. Auto-Encoding Variational Bayes. ICLR 2014.
[2] Y. Burda, R. Grosse, R. Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
[3] C. K. Sønderby et al. Ladder Variational Autoencoders. NeurIPS 2016 (KL warm-up).
"""
from __future__ import annotations

import math

import torch

from genzoo.models.base import LatentVariableModel
from genzoo.nn.distributions import discrete_log_prob, discrete_sample, num_params, symmetric_inputs
from genzoo.nn.encoders import ARCHITECTURES, image_decoder, image_encoder, mlp
from genzoo.nn.gaussian import (GaussianHead, gaussian_log_prob, kl_to_standard_normal, reparameterize,
                                standard_normal_log_prob)

OBJECTIVES = ("elbo", "iwae")
DEFAULT_HIDDEN = {"mlp": [200, 200], "conv": [32, 64]}  # [2]'s 1-layer MNIST model; a small conv net
_CHUNK_ELEMENTS = 1 << 24  # decoder outputs held at once by log_prob_estimate (64 MiB of float32)


class VAE(LatentVariableModel):
    """Gaussian latents, discrete pixels; see the module docstring for the model, bounds and units.

    ``hidden``: widths of the MLP layers, or channels of the stride-2 conv stages (None: the defaults
    in ``DEFAULT_HIDDEN``); ``num_samples``: samples per example in the training objective (the k of
    IWAE); ``top_latent``/``top_hidden``: size of z2 and widths of the z1 <-> z2 networks (2 layers only).
    """

    def __init__(self, image_shape, levels: int, latent: int = 50, hidden: list[int] | None = None,
                 architecture: str = "mlp", objective: str = "elbo", num_samples: int = 1, beta: float = 1.0,
                 kl_warmup_steps: int = 0, stochastic_layers: int = 1, top_latent: int = 50,
                 top_hidden: list[int] = [100, 100]):  # noqa: B006 (a list, as JSON gives back)
        super().__init__(image_shape, levels)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        hidden = DEFAULT_HIDDEN[architecture] if hidden is None else [int(h) for h in hidden]
        top_hidden = [int(h) for h in top_hidden]
        checks = [(min(latent, top_latent) >= 1, "latent and top_latent must be >= 1"),
                  (len(hidden) >= (architecture == "conv") and min(hidden + top_hidden, default=1) >= 1,
                   "hidden sizes must be positive (a conv encoder needs at least one stage)"),
                  (num_samples >= 1, "num_samples must be >= 1"), (beta >= 0, "beta must be >= 0"),
                  (kl_warmup_steps >= 0, "kl_warmup_steps must be >= 0"),
                  (stochastic_layers in (1, 2), "stochastic_layers must be 1 or 2")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.latent, self.top_latent, self.layers = int(latent), int(top_latent), int(stochastic_layers)
        self.objective, self.num_samples = objective, int(num_samples)
        self.beta, self.kl_warmup_steps = float(beta), int(kl_warmup_steps)
        self.encoder = GaussianHead(image_encoder(architecture, self.image_shape, hidden, 2 * self.latent))
        self.decoder = image_decoder(architecture, self.latent, hidden, self.image_shape, num_params(self.levels))
        if self.layers == 2:
            self.top_encoder = GaussianHead(mlp([self.latent, *top_hidden, 2 * self.top_latent]))
            self.top_decoder = GaussianHead(mlp([self.top_latent, *reversed(top_hidden), 2 * self.latent]))
        # training steps taken, for the KL warm-up: a buffer, so checkpoints (and resume) carry it
        self.register_buffer("kl_steps", torch.zeros((), dtype=torch.long))

    # the pieces: q(z1|x), noise, latents with log p(z) - log q(z|x), log p(x|z1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of q(z1 | x), each (N, latent)."""
        self.check_images(x)
        return self.encoder(symmetric_inputs(x, self.levels))

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        """Logits of p(x | z1) for z1 (M, latent): (M, C, H, W), or (M, C, H, W, levels) above 2 levels."""
        return self.decoder(z1)

    @property
    def noise_dims(self) -> int:
        return self.latent + (self.top_latent if self.layers == 2 else 0)

    def _noise(self, s: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal noise (s, n, noise_dims), drawn one sample index at a time so that the numbers
        do not depend on how the s samples are split into chunks."""
        return torch.stack([torch.randn(n, self.noise_dims, generator=generator, device=self.device)
                            for _ in range(s)])

    def _latents(self, mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor):
        """z1 (s, n, latent) and log p(z) - log q(z | x) (s, n) for noise ``eps`` (s, n, noise_dims)."""
        z1 = reparameterize(mu, log_var, eps[..., :self.latent])
        log_q = gaussian_log_prob(z1, mu, log_var)
        if self.layers == 1:
            return z1, standard_normal_log_prob(z1) - log_q
        mu2, log_var2 = self.top_encoder(z1)
        z2 = reparameterize(mu2, log_var2, eps[..., self.latent:])
        prior_mu, prior_log_var = self.top_decoder(z2)
        log_p = standard_normal_log_prob(z2) + gaussian_log_prob(z1, prior_mu, prior_log_var)
        return z1, log_p - log_q - gaussian_log_prob(z2, mu2, log_var2)

    def _reconstruction(self, x: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """log p(x | z1) per sample and example, (s, n), nats."""
        s, n = z1.shape[:2]
        logits = self.decode(z1.reshape(s * n, -1))
        logits = logits.reshape(s, n, *logits.shape[1:])
        return discrete_log_prob(logits, x.expand(s, *x.shape), self.levels).flatten(2).sum(2)

    # the interface

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction E_q[log p(x|z)], KL(q(z|x) || p(z))) per example, nats; ELBO = first - second.

        The reconstruction term is averaged over ``num_samples`` draws of z; the KL is exact for one
        stochastic layer and averaged over the same draws for two.
        """
        mu, log_var = self.encode(x)
        z1, log_ratio = self._latents(mu, log_var, self._noise(num_samples, x.shape[0], generator))
        reconstruction = self._reconstruction(x, z1).mean(0)
        kl = kl_to_standard_normal(mu, log_var) if self.layers == 1 else -log_ratio.mean(0)
        return reconstruction, kl

    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Evidence lower bound on log p(x) per example, nats (an unbiased estimate of it)."""
        reconstruction, kl = self.elbo_terms(x, y, num_samples, generator)
        return reconstruction - kl

    def log_weights(self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None = None,
                    kl_weight: float | torch.Tensor = 1.0) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for ``num_samples`` draws z_i ~ q, shape (num_samples, N), nats.

        ``kl_weight`` multiplies log p(z) - log q(z|x) (1: the importance weights of [2])."""
        mu, log_var = self.encode(x)
        z1, log_ratio = self._latents(mu, log_var, self._noise(num_samples, x.shape[0], generator))
        return self._reconstruction(x, z1) + kl_weight * log_ratio

    @torch.no_grad()
    def log_prob_estimate(self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1000, *,
                          generator: torch.Generator | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """Importance-sampling estimate log (1/k) sum_i w_i of log p(x) per example, nats, with q as proposal.

        The k samples are processed ``chunk_size`` at a time (None: as many as keep the decoder outputs
        near 64 MiB) and combined with a running log-sum-exp, so k = 5000 is safe in memory and never
        overflows; the result does not depend on ``chunk_size`` (up to float rounding). No gradients.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        n = x.shape[0]
        if chunk_size is None:
            chunk_size = max(1, _CHUNK_ELEMENTS // max(1, n * self.num_dims * num_params(self.levels)))
        mu, log_var = self.encode(x)
        total = torch.full((n,), -math.inf, device=self.device, dtype=torch.float64)
        for start in range(0, num_samples, chunk_size):
            eps = self._noise(min(chunk_size, num_samples - start), n, generator)
            z1, log_ratio = self._latents(mu, log_var, eps)
            log_w = (self._reconstruction(x, z1) + log_ratio).double()
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        return (total - math.log(num_samples)).float()

    def kl_weight(self) -> torch.Tensor:
        """beta times the warm-up factor min(1, (steps + 1) / kl_warmup_steps) of the next training step."""
        if self.kl_warmup_steps == 0:
            return torch.tensor(self.beta, device=self.device)
        ramp = ((self.kl_steps.float() + 1.0) / self.kl_warmup_steps).clamp(max=1.0)
        return self.beta * ramp

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The training objective, mean nats per example (see the module docstring).

        A call in training mode with gradients enabled counts as one training step of the KL warm-up.
        """
        weight = self.kl_weight() if self.training else 1.0
        if self.objective == "elbo" or self.num_samples == 1:  # IWAE with k = 1 is the ELBO; closed-form KL
            reconstruction, kl = self.elbo_terms(x, y, self.num_samples)
            bound = reconstruction - weight * kl
        else:
            log_w = self.log_weights(x, self.num_samples, kl_weight=weight)
            bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_samples)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.kl_steps += 1
        return -bound.mean()

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images drawn from p(x) by ancestral sampling (pixels drawn, not the decoder's mean)."""
        self.check_labels(y, n)
        z = torch.randn(n, self.top_latent if self.layers == 2 else self.latent, generator=generator,
                        device=self.device)
        if self.layers == 2:
            mu, log_var = self.top_decoder(z)
            z = reparameterize(mu, log_var, torch.randn(n, self.latent, generator=generator, device=self.device))
        return discrete_sample(self.decode(z), self.levels, generator)


class IWAE(VAE):
    """The VAE trained on the k-sample importance-weighted bound of [2]; k = ``num_samples`` (5 by default)."""

    def __init__(self, image_shape, levels: int, latent: int = 50, hidden: list[int] | None = None,
                 architecture: str = "mlp", objective: str = "iwae", num_samples: int = 5, beta: float = 1.0,
                 kl_warmup_steps: int = 0, stochastic_layers: int = 1, top_latent: int = 50,
                 top_hidden: list[int] = [100, 100]):  # noqa: B006
        super().__init__(image_shape, levels, latent, hidden, architecture, objective, num_samples, beta,
                         kl_warmup_steps, stochastic_layers, top_latent, top_hidden)
