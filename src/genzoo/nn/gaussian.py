"""Diagonal Gaussians for latent-variable models: densities, KL, reparameterized draws, in nats.

A diagonal Gaussian is given by its mean ``mu`` and log-variance ``log_var`` (same shape, last axis the
latent dimensions). Log-densities sum over the last axis. Everything is computed in float32 or wider,
so it is safe under bf16 autocast.

[1] Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (reparameterization, appendix B KL).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last axis, nats."""
    z = z.float()
    return -0.5 * (z.square() + _LOG_2PI).sum(-1)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(log_var))), summed over the last axis, nats (broadcasts over leading axes)."""
    z, mu, log_var = z.float(), mu.float(), log_var.float()
    return -0.5 * ((z - mu).square() * torch.exp(-log_var) + log_var + _LOG_2PI).sum(-1)


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) in closed form ([1], appendix B), summed over the last axis, nats."""
    mu, log_var = mu.float(), log_var.float()
    return 0.5 * (mu.square() + torch.exp(log_var) - 1.0 - log_var).sum(-1)


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps: a draw from the Gaussian that is differentiable in (mu, log_var) ([1], sec. 2.4)."""
    return mu.float() + torch.exp(0.5 * log_var.float()) * eps


class GaussianHead(nn.Module):
    """A network whose 2*L outputs are read as (mu, log_var) of a diagonal Gaussian over L dimensions."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.net(h).float().chunk(2, dim=-1)
        return mu, log_var
