"""Variational autoencoders: the VAE [1] and the importance-weighted autoencoder (IWAE) [2].

Generative model: z ~ N(0, I), x | z ~ a Bernoulli (2 levels) or softmax over levels for every subpixel,
with logits from a decoder network. With ``stochastic_layers=2`` (the 2-layer model of [2], sec. 5):
z2 ~ N(0, I), z1 | z2 ~ N(mu(z2), diag(sigma^2(z2))), x | z1 as above.
Inference model: q(z1 | x) a diagonal Gaussian from an encoder of the images mapped to [-1, 1]
(and q(z2 | z1) likewise); draws are reparameterized ([1], sec. 2.4).

Options beyond [1, 2] (each composes with the others):
- ``flow="iaf"|"planar"``, ``flow_steps=K``: q(z1 | x) is the Gaussian pushed through K flow steps
  (``genzoo.models.latent.flows``: IAF [4], planar [5]); log q(z1|x) = log N(z0) - sum_k log|det|.
- ``num_classes``: the conditional VAE p(x | y) = ∫ p(z) p(x | z, y) dz [6]: the prior stays N(0, I),
  the one-hot label is appended to the encoder's input (a constant image per class for convolutions)
  and to the decoder's input; ``sample(n, y)`` draws images of class y.
- ``decoder="pixelcnn"``: p(x | z) is a PixelCNN conditioned on z (PixelVAE-style [7],
  ``genzoo.models.latent.decoders``); ``decoder_options`` are its PixelCNN options.

All quantities are per example, in nats:
    elbo(x)                  E_q[log p(x|z)] - KL(q(z|x) || p(z))  <= log p(x); the KL in closed form for
                             one stochastic layer ([1], appendix B), a Monte-Carlo estimate
                             E_q[log q(z|x) - log p(z)] for two layers or a flow posterior
    log_prob_estimate(x, k)  log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q: the k-sample bound of [2],
                             E <= log p(x), rising with k; the evaluator's NLL estimate (k = 5000)
    training_loss(x, y, s)   objective "elbo": -mean(E_q[log p(x|z)] - w * KL) with w = beta times a linear
                             warm-up from 0 to 1 over ``kl_warmup_steps`` training steps [3] (a function
                             of the step s); objective "iwae": -mean of the ``num_samples``-sample bound of
                             [2] (the warm-up weights log p(z) - log q(z|x) inside it)
    loss(x)                  the same objective with w = 1: the plain negative bound (changes no state)

The registry's ``iwae`` is this class with ``objective="iwae"`` and ``num_samples=5``.

[1] D. P. Kingma, M. Welling. Auto-Encoding Variational Bayes. ICLR 2014.
[2] Y. Burda, R. Grosse, R. Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
[3] C. K. Sønderby et al. Ladder Variational Autoencoders. NeurIPS 2016 (KL warm-up).
[4] D. P. Kingma et al. Improved Variational Inference with Inverse Autoregressive Flow. NeurIPS 2016.
[5] D. J. Rezende, S. Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
[6] K. Sohn, H. Lee, X. Yan. Learning Structured Output Representation using Deep Conditional
    Generative Models. NeurIPS 2015.
[7] I. Gulrajani et al. PixelVAE: A Latent Variable Model for Natural Images. ICLR 2017.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genzoo.models.base import LatentVariableModel
from genzoo.models.latent.decoders import DECODERS, PixelCNNDecoder, pick_levels
from genzoo.models.latent.flows import FLOWS, Flow
from genzoo.nn.distributions import discrete_log_prob, num_params, symmetric_inputs
from genzoo.nn.encoders import ACTIVATIONS, ARCHITECTURES, image_decoder, image_encoder, mlp
from genzoo.nn.gaussian import (
    GaussianHead,
    gaussian_log_prob,
    kl_to_standard_normal,
    reparameterize,
    standard_normal_log_prob,
)

OBJECTIVES = ("elbo", "iwae")
DEFAULT_HIDDEN = {"mlp": [200, 200], "conv": [32, 64]}  # [2]'s 1-layer MNIST model; a small conv net
# decoder outputs per chunk of importance samples: ~4 MiB of float32 stays in cache (1.6x faster than
# 64 MiB for the 784-200-200-50 MLP on one CPU core)
_CHUNK_ELEMENTS = 2**20


class VAE(LatentVariableModel):
    """Gaussian latents, discrete pixels; see the module docstring for the model, bounds and units.

    ``latent``: size of z1, the latent code; ``architecture``: "mlp" or "conv" encoder and decoder;
    ``objective``: "elbo" or "iwae" (the k-sample bound of [2]); ``beta``: the weight of the KL term (1:
    the ELBO; < 1 or > 1: a beta-VAE); ``kl_warmup_steps``: steps over which the KL weight rises from 0;
    ``stochastic_layers``: 1 or 2 (z2 above z1, as in [2]);
    ``hidden``: widths of the MLP layers, or channels of the stride-2 conv stages (None: the defaults
    in ``DEFAULT_HIDDEN``); ``num_samples``: samples per example in the training objective (the k of
    IWAE); ``top_latent``/``top_hidden``: size of z2 and widths of the z1 <-> z2 networks (2 layers only);
    ``flow_hidden``: MADE widths of each IAF step; ``flow``, ``flow_steps``, ``num_classes``, ``decoder``,
    ``decoder_options``: see the module docstring; ``activation``: tanh (as in [1, 2]), relu or elu between
    the MLP layers (the conv architecture uses ELU).
    """

    label_use = "optional"
    has_codes = True

    def __init__(
        self,
        image_shape,
        levels: int,
        latent: int = 50,
        hidden: list[int] | None = None,
        architecture: str = "mlp",
        objective: str = "elbo",
        num_samples: int = 1,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        stochastic_layers: int = 1,
        top_latent: int = 50,
        top_hidden: list[int] = [100, 100],  # noqa: B006 (JSON gives lists back)
        flow: str = "none",
        flow_steps: int = 2,
        flow_hidden: list[int] = [64, 64],  # noqa: B006
        num_classes: int | None = None,
        decoder: str = "factorized",
        decoder_options: dict | None = None,
        activation: str = "tanh",
    ):
        super().__init__(image_shape, levels, None if num_classes is None else int(num_classes))
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        hidden = DEFAULT_HIDDEN[architecture] if hidden is None else [int(h) for h in hidden]
        top_hidden = [int(h) for h in top_hidden]
        checks = [
            (min(latent, top_latent) >= 1, "latent and top_latent must be >= 1"),
            (
                len(hidden) >= (architecture == "conv") and min(hidden + top_hidden, default=1) >= 1,
                "hidden sizes must be positive (a conv encoder needs at least one stage)",
            ),
            (num_samples >= 1, "num_samples must be >= 1"),
            (beta >= 0, "beta must be >= 0"),
            (kl_warmup_steps >= 0, "kl_warmup_steps must be >= 0"),
            (stochastic_layers in (1, 2), "stochastic_layers must be 1 or 2"),
            (flow in FLOWS, f"flow must be one of {', '.join(FLOWS)}"),
            (decoder in DECODERS, f"decoder must be one of {', '.join(DECODERS)}"),
            (num_classes is None or int(num_classes) >= 1, "num_classes must be None or >= 1"),
            (activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.latent, self.top_latent, self.layers = int(latent), int(top_latent), int(stochastic_layers)
        self.objective, self.num_samples = objective, int(num_samples)
        self.beta, self.kl_warmup_steps = float(beta), int(kl_warmup_steps)
        self.architecture, self.decoder_type, self.conditional = architecture, decoder, num_classes is not None
        self.flow = None if flow == "none" else Flow(flow, self.latent, int(flow_steps), [int(h) for h in flow_hidden])
        context = 0 if self.flow is None else self.flow.context_features
        labels = int(num_classes or 0)
        c, h, w = self.image_shape
        seen = (
            self.image_shape
            if not labels
            else (c + labels, h, w)
            if architecture == "conv"
            else (self.num_dims + labels,)
        )
        # the encoder's outputs: mu and log_var of q0(z1|x), then the flow's context (GaussianHead keeps
        # the checkpoint keys of the plain VAE; ``posterior`` splits the three parts)
        self.encoder = GaussianHead(image_encoder(architecture, seen, hidden, 2 * self.latent + context, activation))
        if decoder == "pixelcnn":
            self.decoder = PixelCNNDecoder(
                self.latent + labels, self.image_shape, self.levels, architecture, hidden, decoder_options
            )
        else:
            self.decoder = image_decoder(
                architecture, self.latent + labels, hidden, self.image_shape, num_params(self.levels), activation
            )
        if self.layers == 2:
            self.top_encoder = GaussianHead(mlp([self.latent, *top_hidden, 2 * self.top_latent]))
            self.top_decoder = GaussianHead(mlp([self.top_latent, *reversed(top_hidden), 2 * self.latent]))

    # the pieces: q(z1|x), noise, latents with log p(z) - log q(z|x), log p(x|z1)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """(mu, log_var, h): the Gaussian q0(z1 | x[, y]) before any flow, each (N, latent), and the flow's
        context h (N, context features; no columns without a flow)."""
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        u = symmetric_inputs(x, self.levels)
        if y is not None:
            onehot = F.one_hot(y, self.num_classes).float()
            u = (
                torch.cat([u.flatten(1), onehot], 1)
                if self.architecture == "mlp"
                else torch.cat([u, onehot[:, :, None, None].expand(-1, -1, *u.shape[2:])], 1)
            )
        out = self.encoder.net(u).float()
        return out.split([self.latent, self.latent, out.shape[-1] - 2 * self.latent], dim=-1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of q(z1 | x[, y]) (of its base Gaussian q0 when there is a flow), each (N, latent)."""
        mu, log_var, _ = self.posterior(x, y)
        return mu, log_var

    @torch.no_grad()
    def code(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """A deterministic latent code per image, (N, latent): the posterior mean mu(x) of q(z1 | x), or with
        a flow the image of mu under the flow (the flow's point of highest base density)."""
        mu, _, h = self.posterior(x, y)
        return mu if self.flow is None else self.flow(mu, h)[0]

    def _decoder_input(self, z1: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if not self.conditional:
            return z1
        onehot = F.one_hot(y, self.num_classes).float()
        return torch.cat([z1, onehot.expand(*z1.shape[:-1], -1)], -1)

    def decode(self, z1: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of p(x | z1[, y]) for z1 (M, latent): (M, C, H, W), or (M, C, H, W, levels) above 2 levels.

        With the PixelCNN decoder the logits of subpixel i also depend on the subpixels before i of the
        image ``x`` (M, C, H, W) they score (teacher forcing): pass it."""
        inputs = self._decoder_input(z1, self.check_labels(y, z1.shape[0]))
        if self.decoder_type == "factorized":
            return self.decoder(inputs)
        if x is None:
            raise ValueError("the PixelCNN decoder's logits depend on the image: pass x")
        return self.decoder(inputs, x)

    @torch.no_grad()
    def decode_images(
        self,
        z1: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = False,
        naive: bool = False,
    ) -> torch.Tensor:
        """Images (M, C, H, W) from codes z1 (M, latent): every subpixel drawn from p(x | z1[, y]) or, with
        ``mean``, set to the level nearest its conditional mean; in order for the PixelCNN decoder, by its
        cached sampler (``naive=True``: one full decoder pass per subpixel, the slow reference path; the
        same images from the same generator). The factorized decoder takes one pass either way."""
        y = self.check_labels(y, z1.shape[0])
        if self.decoder_type == "factorized":
            return pick_levels(self.decode(z1, y), self.levels, generator, mean)
        return self.decoder.generate(self._decoder_input(z1, y), generator, mean, naive=naive)

    @property
    def has_cached_sampling(self) -> bool:
        """Whether ``sample`` has a fast path that ``naive=True`` turns off (the PixelCNN decoder's)."""
        return self.decoder_type == "pixelcnn"

    @property
    def noise_dims(self) -> int:
        return self.latent + (self.top_latent if self.layers == 2 else 0)

    def _noise(self, s: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal noise (s, n, noise_dims), drawn one sample index at a time so that the numbers
        do not depend on how the s samples are split into chunks."""
        return torch.stack([torch.randn(n, self.noise_dims, generator=generator, device=self.device) for _ in range(s)])

    def _latents(self, mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor, context: torch.Tensor):
        """z1 (s, n, latent) and log p(z) - log q(z | x) (s, n) for noise ``eps`` (s, n, noise_dims)."""
        z1 = reparameterize(mu, log_var, eps[..., : self.latent])
        log_q = gaussian_log_prob(z1, mu, log_var)
        if self.flow is not None:  # log q(z_K|x) = log q0(z_0|x) - sum_k log|det dz_k/dz_{k-1}|
            z1, log_det = self.flow(z1, context)
            log_q = log_q - log_det
        if self.layers == 1:
            return z1, standard_normal_log_prob(z1) - log_q
        mu2, log_var2 = self.top_encoder(z1)
        z2 = reparameterize(mu2, log_var2, eps[..., self.latent :])
        prior_mu, prior_log_var = self.top_decoder(z2)
        log_p = standard_normal_log_prob(z2) + gaussian_log_prob(z1, prior_mu, prior_log_var)
        return z1, log_p - log_q - gaussian_log_prob(z2, mu2, log_var2)

    def _reconstruction(self, x: torch.Tensor, z1: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """log p(x | z1[, y]) per sample and example, (s, n), nats."""
        s, n = z1.shape[:2]
        xs = x.expand(s, *x.shape)
        logits = self.decode(z1.reshape(s * n, -1), None if y is None else y.repeat(s), xs.reshape(s * n, *x.shape[1:]))
        logits = logits.reshape(s, n, *logits.shape[1:])
        if self.levels == 2:  # x*l - softplus(l), with x broadcast over the samples (no (s, n, D) copy of x)
            flat = logits.flatten(2).float()
            return (flat * x.flatten(1).float()).sum(2) - F.softplus(flat).sum(2)
        return discrete_log_prob(logits, xs, self.levels).flatten(2).sum(2)

    # the interface

    def elbo_terms(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction E_q[log p(x|z)], KL(q(z|x) || p(z))) per example, nats; ELBO = first - second.

        The reconstruction term is averaged over ``num_samples`` draws of z; the KL is exact for one
        stochastic layer without a flow, else averaged over the same draws.
        """
        y = self.check_labels(y, x.shape[0])
        mu, log_var, context = self.posterior(x, y)
        z1, log_ratio = self._latents(mu, log_var, self._noise(num_samples, x.shape[0], generator), context)
        reconstruction = self._reconstruction(x, z1, y).mean(0)
        exact_kl = self.layers == 1 and self.flow is None
        kl = kl_to_standard_normal(mu, log_var) if exact_kl else -log_ratio.mean(0)
        return reconstruction, kl

    def elbo(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Evidence lower bound on log p(x) (log p(x | y) when conditional) per example, nats (an unbiased
        estimate of it)."""
        reconstruction, kl = self.elbo_terms(x, y, num_samples, generator)
        return reconstruction - kl

    def log_weights(
        self,
        x: torch.Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        kl_weight: float | torch.Tensor = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for ``num_samples`` draws z_i ~ q, shape (num_samples, N), nats.

        ``kl_weight`` multiplies log p(z) - log q(z|x) (1: the importance weights of [2])."""
        y = self.check_labels(y, x.shape[0])
        mu, log_var, context = self.posterior(x, y)
        z1, log_ratio = self._latents(mu, log_var, self._noise(num_samples, x.shape[0], generator), context)
        return self._reconstruction(x, z1, y) + kl_weight * log_ratio

    @torch.no_grad()
    def log_prob_estimate(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        num_samples: int = 1000,
        *,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Importance-sampling estimate log (1/k) sum_i w_i of log p(x) per example, nats, with q (the flow
        posterior when there is one) as proposal.

        The k samples are processed ``chunk_size`` at a time (None: as many as keep the decoder outputs
        near 4 MiB) and combined with a running log-sum-exp, so k = 5000 is safe in memory and never
        overflows; the result does not depend on ``chunk_size`` (up to float rounding). No gradients.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        n = x.shape[0]
        if chunk_size is None:
            width = num_params(self.levels) + getattr(self.decoder, "activations_per_subpixel", 0)
            chunk_size = max(1, _CHUNK_ELEMENTS // max(1, n * self.num_dims * width))
        y = self.check_labels(y, n)
        mu, log_var, context = self.posterior(x, y)
        total = torch.full((n,), -math.inf, device=self.device, dtype=torch.float64)
        for start in range(0, num_samples, chunk_size):
            eps = self._noise(min(chunk_size, num_samples - start), n, generator)
            z1, log_ratio = self._latents(mu, log_var, eps, context)
            log_w = (self._reconstruction(x, z1, y) + log_ratio).double()
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        return (total - math.log(num_samples)).float()

    def kl_weight(self, step: int) -> float:
        """beta times the warm-up factor min(1, (step + 1) / kl_warmup_steps) of training step ``step``."""
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / self.kl_warmup_steps)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The negative training bound with KL weight 1 (ELBO, or IWAE's k-sample bound), mean nats."""
        return self._objective(x, y, 1.0)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        """The training objective at ``step`` (see the module docstring), mean nats per example."""
        return self._objective(x, y, self.kl_weight(step))

    def _objective(self, x: torch.Tensor, y: torch.Tensor | None, weight: float) -> torch.Tensor:
        if self.objective == "elbo" or self.num_samples == 1:  # IWAE with k = 1 is the ELBO; closed-form KL
            reconstruction, kl = self.elbo_terms(x, y, self.num_samples)
            bound = reconstruction - weight * kl
        else:
            log_w = self.log_weights(x, self.num_samples, kl_weight=weight, y=y)
            bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_samples)
        return -bound.mean()

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None, naive: bool = False
    ) -> torch.Tensor:
        """``n`` images drawn from p(x) (p(x | y) when conditional; ``y`` one label or n) by ancestral
        sampling (pixels drawn, not the decoder's mean). ``naive=True``: the PixelCNN decoder takes one
        full pass per subpixel instead of its cached sampler (see ``decode_images``)."""
        y = self.check_labels(y, n)
        z = torch.randn(
            n, self.top_latent if self.layers == 2 else self.latent, generator=generator, device=self.device
        )
        if self.layers == 2:
            mu, log_var = self.top_decoder(z)
            z = reparameterize(mu, log_var, torch.randn(n, self.latent, generator=generator, device=self.device))
        return self.decode_images(z, y, generator=generator, naive=naive)
