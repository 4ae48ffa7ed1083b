"""Adversarial objectives, the WGAN gradient penalty, and the integer <-> [-1, 1] image maps of GANs.

The discriminator D(x) = sigmoid(l(x)) works on logits l; every loss is a mean over the batch, in nats.

    discriminator (both GAN objectives)  -E log D(x) - E log(1 - D(G(z)))          [1]
                                          = E softplus(-l(x)) + E softplus(l(G(z)))
        with one-sided label smoothing s [4], the real targets are 1 - s instead of 1
    generator, "minimax"                  E log(1 - D(G(z))) = -E softplus(l(G(z)))  [1] (saturates: its
                                          gradient in l is -D, small when D(G(z)) ~ 0, early in training)
    generator, "non-saturating"           -E log D(G(z)) = E softplus(-l(G(z)))      [1] sec. 3 (gradient
                                          -(1 - D): large when D(G(z)) ~ 0)
    critic, "wgan-gp"                     E f(G(z)) - E f(x) + lambda * E (|grad f(x_hat)|_2 - 1)^2   [3]
    generator, "wgan-gp"                  -E f(G(z))

[1] I. Goodfellow et al. Generative Adversarial Nets. NeurIPS 2014.
[2] M. Arjovsky, S. Chintala, L. Bottou. Wasserstein GAN. ICML 2017.
[3] I. Gulrajani et al. Improved Training of Wasserstein GANs. NeurIPS 2017.
[4] T. Salimans et al. Improved Techniques for Training GANs. NeurIPS 2016 (one-sided label smoothing).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

OBJECTIVES = ("minimax", "non-saturating", "wgan-gp")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy of D on real (target 1 - ``smoothing``) and generated (target 0) images, nats."""
    target = 1.0 - smoothing
    real = target * F.softplus(-real_logits) + (1.0 - target) * F.softplus(real_logits)
    return real.mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, objective: str) -> torch.Tensor:
    """The generator's loss from D's logits (or the critic's values) on generated images; see the module doc."""
    if objective == "minimax":
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    if objective == "non-saturating":
        return F.softplus(-fake_logits).mean()  # -log sigmoid(l) = softplus(-l)
    if objective == "wgan-gp":
        return -fake_logits.mean()
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def critic_loss(real_values: torch.Tensor, fake_values: torch.Tensor) -> torch.Tensor:
    """E f(G(z)) - E f(x): minus the critic's estimate of the Wasserstein-1 distance [2]."""
    return fake_values.mean() - real_values.mean()


def interpolate(
    real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] per example ([3], Algorithm 1)."""
    if eps is None:
        eps = torch.rand(real.shape[0], generator=generator, device=real.device, dtype=real.dtype)
    eps = eps.reshape(-1, *([1] * (real.dim() - 1)))
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E (|grad_x f(x_hat)|_2 - 1)^2 on random interpolates of real and generated images (not yet times lambda).

    Differentiable in the critic's parameters (``create_graph``), so it can be added to the critic's loss.
    """
    x_hat = interpolate(real.detach(), fake.detach(), eps, generator).requires_grad_(True)
    values = critic(x_hat)
    (grad,) = torch.autograd.grad(values.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Integer images in [0, levels) -> floats in [-1, 1]: uniform noise within each value's bin, then scaled.

    Value v covers [v, v + 1) / levels of [0, 1], so generated images are continuous like the real ones.
    """
    u = torch.rand(x.shape, generator=generator, device=x.device)
    return (x.float() + u) * (2.0 / levels) - 1.0


def quantize(images: torch.Tensor, levels: int) -> torch.Tensor:
    """Floats in [-1, 1] -> integer images in [0, levels): the bin each value falls in (inverse of dequantize)."""
    return ((images + 1.0) * (levels / 2.0)).floor().long().clamp_(0, levels - 1)
