"""Generative adversarial networks: DCGAN [2] networks trained as in [1] or as a WGAN-GP [3].

A GAN has ``sample`` and nothing else: no likelihood, no bound. Its generator G maps z ~ N(0, I) to
continuous images in [-1, 1] (tanh); ``sample`` quantizes them to integer levels (the bin each value
falls in). Real images are dequantized before the discriminator D sees them: value v becomes
(v + u) / levels with u ~ U[0, 1), scaled to [-1, 1], so both sides of the game are continuous.

Objectives (formulas and units in ``genzoo.nn.adversarial``):
    "minimax"         D: maximize log D(x) + log(1 - D(G(z)));  G: minimize log(1 - D(G(z)))   [1] eq. 1
    "non-saturating"  the same D;  G: maximize log D(G(z)) (strong gradients early on)          [1] sec. 3
    "wgan-gp"         a critic f:  minimize E f(G(z)) - E f(x) + gp_weight * E (|grad f(x_hat)| - 1)^2,
                      G: maximize E f(G(z));  n_critic=5, Adam lr 1e-4, betas (0, 0.9)            [3] Alg. 1

Training goes through ``train_step`` (the trainer calls it instead of ``loss``): every trainer step is
one discriminator/critic update on that step's batch, and every ``n_critic``-th step also one generator
update, so a run of S steps makes S discriminator and S // n_critic generator updates. The optimizers'
lr and betas are the model's (``lr``/``betas`` options, defaulting to the papers' values), not the
trainer's. ``loss(x)`` is the discriminator's loss without the penalty (for validation only).

Stabilizers: ``spectral_norm`` [5] on D's layers, one-sided ``label_smoothing`` of the real targets [4],
``d_norm`` (batch [2], layer [3] or none). ``num_classes`` makes both networks class-conditional.

[1] I. Goodfellow et al. Generative Adversarial Nets. NeurIPS 2014.
[2] A. Radford, L. Metz, S. Chintala. Unsupervised Representation Learning with Deep Convolutional
    Generative Adversarial Networks. ICLR 2016.
[3] I. Gulrajani et al. Improved Training of Wasserstein GANs. NeurIPS 2017.
[4] T. Salimans et al. Improved Techniques for Training GANs. NeurIPS 2016.
[5] T. Miyato et al. Spectral Normalization for Generative Adversarial Networks. ICLR 2018.
"""

from __future__ import annotations

import torch

from genzoo.models.base import AdversarialModel, Batch
from genzoo.nn.adversarial import (
    OBJECTIVES,
    critic_loss,
    dequantize,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    quantize,
)
from genzoo.nn.dcgan import NORMS, DCGANDiscriminator, DCGANGenerator

# the papers' Adam settings: DCGAN [2] sec. 4, WGAN-GP [3] Algorithm 1
PAPER_OPTIMIZER = {
    "minimax": (2e-4, (0.5, 0.999)),
    "non-saturating": (2e-4, (0.5, 0.999)),
    "wgan-gp": (1e-4, (0.0, 0.9)),
}


class DCGAN(AdversarialModel):
    """A DCGAN generator/discriminator pair; see the module docstring for objectives and options.

    The registry's ``wgan-gp`` is this class with ``objective="wgan-gp"``, and ``cgan`` this class built
    with the dataset's ``num_classes`` (class-conditional: label embedding in G, projection D).

    ``objective``: "non-saturating" (default), "minimax" or "wgan-gp" (see the module docstring);
    ``num_classes``: class-conditional G and D (None: unconditional); ``gp_weight``: lambda, the weight of
    the WGAN-GP gradient penalty; ``spectral_norm``: spectral normalization of D's layers;
    ``label_smoothing``: one-sided smoothing of the real targets (0: none);
    ``latent``: size of z; ``channels``: width of the largest-resolution conv layer; ``n_critic``:
    discriminator updates per generator update (None: 5 for wgan-gp, else 1); ``d_norm`` "auto": layer
    norm for wgan-gp, none with spectral norm, else batch norm; ``lr``/``betas`` None: the papers' values.
    """

    label_use = "optional"

    def __init__(
        self,
        image_shape,
        levels: int,
        objective: str = "non-saturating",
        latent: int = 64,
        channels: int = 64,
        num_classes: int | None = None,
        n_critic: int | None = None,
        gp_weight: float = 10.0,
        spectral_norm: bool = False,
        label_smoothing: float = 0.0,
        d_norm: str = "auto",
        lr: float | None = None,
        betas: list[float] | None = None,
    ):
        super().__init__(image_shape, levels, num_classes)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if d_norm == "auto":
            d_norm = "layer" if objective == "wgan-gp" else "none" if spectral_norm else "batch"
        checks = [
            (latent >= 1 and channels >= 1, "latent and channels must be >= 1"),
            (n_critic is None or n_critic >= 1, "n_critic must be >= 1"),
            (0.0 <= label_smoothing < 1.0, "label_smoothing must be in [0, 1)"),
            (gp_weight >= 0, "gp_weight must be >= 0"),
            (d_norm in NORMS, f"d_norm must be auto or one of {NORMS}"),
            (num_classes is None or num_classes >= 1, "num_classes must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.conditional = num_classes is not None
        self.objective, self.latent, self.gp_weight = objective, int(latent), float(gp_weight)
        self.n_critic = int(n_critic) if n_critic is not None else (5 if objective == "wgan-gp" else 1)
        self.label_smoothing = float(label_smoothing)
        paper_lr, paper_betas = PAPER_OPTIMIZER[objective]
        self.lr, self.betas = float(lr or paper_lr), tuple(float(b) for b in (betas or paper_betas))
        self.generator = DCGANGenerator(self.image_shape, self.latent, channels, num_classes)
        self.discriminator = DCGANDiscriminator(self.image_shape, channels, num_classes, d_norm, spectral_norm)

    # the trainer's two-player interface

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"generator": list(self.generator.parameters()), "discriminator": list(self.discriminator.parameters())}

    def optimizer_options(self, name: str) -> dict:
        return {"lr": self.lr, "betas": self.betas}

    def train_step(self, batch: Batch, step: int, optimizers, loss_fn=None) -> dict[str, torch.Tensor]:
        """One discriminator update on the batch, plus a generator update every ``n_critic``-th step.

        Returns the scalars to log (nats, or critic units for wgan-gp): d_loss, and g_loss on generator
        steps; wasserstein (the critic's estimate E f(x) - E f(G(z))) and gradient_penalty for wgan-gp.
        """
        x, y = batch.x, batch.y if self.conditional else None  # the trainer checked the data (no host sync here)
        real = dequantize(x, self.levels)
        with torch.no_grad():
            fake = self.generate(x.shape[0], y)
        d_loss, out = self._discriminator_loss(real, fake, y, penalty=True)
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        if (step + 1) % self.n_critic == 0:
            g_loss = generator_loss(self.discriminator(self.generate(x.shape[0], y), y), self.objective)
            optimizers["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
            optimizers["generator"].step()
            out["g_loss"] = g_loss.detach()
        return out

    def _discriminator_loss(self, real, fake, y, penalty: bool) -> tuple[torch.Tensor, dict]:
        real_out, fake_out = self.discriminator(real, y), self.discriminator(fake, y)
        if self.objective != "wgan-gp":
            loss = discriminator_loss(real_out, fake_out, self.label_smoothing)
            return loss, {"d_loss": loss.detach()}
        loss = critic_loss(real_out, fake_out)
        out = {"d_loss": loss.detach(), "wasserstein": -loss.detach()}
        if penalty and self.gp_weight > 0:
            gp = gradient_penalty(lambda v: self.discriminator(v, y), real, fake)
            loss = loss + self.gp_weight * gp
            out.update(d_loss=loss.detach(), gradient_penalty=gp.detach())
        return loss, out

    # the GenerativeModel interface

    def generate(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """G(z) for n draws of z ~ N(0, I): continuous images (n, C, H, W) in [-1, 1]."""
        z = torch.randn(n, self.latent, generator=generator, device=self.device)
        return self.generator(z, y)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The discriminator's loss (without gradient penalty) on ``x`` against as many generated images,
        with both networks in eval mode (batch norm uses its running statistics): it changes no state."""
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        was_training = self.training
        self.eval()
        try:
            fake = self.generate(x.shape[0], y)
            loss, _ = self._discriminator_loss(dequantize(x, self.levels), fake, y, penalty=False)
        finally:
            self.train(was_training)
        return loss

    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` integer images (n, C, H, W) in [0, levels): G(z) quantized, with G in eval mode."""
        y = self.check_labels(y, n)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            images = quantize(self.generate(n, y, generator), self.levels)
        self.train(was_training)
        return images
