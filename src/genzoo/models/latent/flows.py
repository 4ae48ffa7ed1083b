"""Normalizing-flow posteriors for VAEs: a diagonal Gaussian pushed through K invertible maps [1].

    z_0 ~ q_0(z_0 | x) = N(mu(x), diag(sigma^2(x))),   z_k = f_k(z_{k-1}; h(x)),  k = 1..K
    log q(z_K | x) = log q_0(z_0 | x) - sum_k log |det dz_k / dz_{k-1}|        (nats)

The flows take a context vector ``h`` (the encoder's extra outputs, ``context_features`` of them) and
return ``(z_K, sum_k log |det|)``; leading axes broadcast (z (S, N, D) with h (N, C) for S samples).

``"iaf"`` -- inverse autoregressive flow [2] (its numerically stable form, eqs. 13-14):
    (m, s) = MADE_k(z_{k-1}, h),  sigma = sigmoid(s),  z_k = sigma * z_{k-1} + (1 - sigma) * m,
    log |det| = sum_d log sigma_d. m_d and s_d depend only on the z_{k-1} entries earlier than d in
    step k's ordering (MADE masks [4], ``genzoo.nn.masked``), so the Jacobian is triangular. The
    ordering is reversed from one step to the next, as in [2].
``"planar"`` -- planar flows [1], with parameters computed from x (amortized, as in [3]):
    z_k = z_{k-1} + u_hat * tanh(w^T z_{k-1} + b),  log |det| = log |1 + (1 - tanh^2(.)) w^T u_hat|,
    where u_hat = u + (softplus(w^T u) - 1 - w^T u) w / |w|^2 makes w^T u_hat >= -1, which keeps each
    map invertible ([1], appendix A.1).

[1] D. J. Rezende, S. Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
[2] D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling. Improved Variational
    Inference with Inverse Autoregressive Flow. NeurIPS 2016.
[3] R. van den Berg, L. Hasenclever, J. M. Tomczak, M. Welling. Sylvester Normalizing Flows for
    Variational Inference. UAI 2018 (amortized flow parameters).
[4] M. Germain, K. Gregor, I. Murray, H. Larochelle. MADE. ICML 2015.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn.masked import MaskedLinear, expand_mask, made_masks, ordering_rank

FLOWS = ("none", "iaf", "planar")
FORGET_BIAS = 2.0  # added to s: sigma starts near sigmoid(2) = 0.88, each IAF step near the identity ([2], sec. 4)


class IAFStep(nn.Module):
    """One IAF step: a MADE over z (plus an unmasked input from h) giving (m, s) per latent dimension."""

    def __init__(self, latent: int, context: int, hidden: list[int], order: torch.Tensor):
        super().__init__()
        self.latent = latent
        self.register_buffer("order", order.clone(), persistent=False)
        widths = [latent, *hidden]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = MaskedLinear(hidden[-1], 2 * latent)
        self.context = nn.Linear(context, hidden[0], bias=False)
        # MADE degrees [4, sec. 4], not drawn at random but cycled through 1..D-1, so that the masks
        # are the same at every rebuild and every allowed dependency exists once widths are >= D-1
        top = max(latent - 1, 1)
        degrees = [ordering_rank(order) + 1, *(torch.arange(size) % top + 1 for size in hidden)]
        masks = made_masks(degrees)
        for layer, mask in zip(self.layers, masks[:-1]):
            layer.mask.copy_(mask.float())
        self.out.mask.copy_(expand_mask(masks[-1], 1, 2))  # rows m_0, s_0, m_1, s_1, ...

    def shift_and_log_scale(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, log sigma), each shaped like z; entry d depends on z only through earlier entries in ``order``."""
        a = self.layers[0](z) + self.context(h)
        for layer in self.layers[1:]:
            a = layer(F.elu(a))
        out = self.out(F.elu(a)).unflatten(-1, (self.latent, 2))
        return out[..., 0], F.logsigmoid(out[..., 1] + FORGET_BIAS)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, log_sigma = self.shift_and_log_scale(z, h)
        sigma = log_sigma.exp()
        return sigma * z + (1.0 - sigma) * m, log_sigma.sum(-1)

    def inverse(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """z_{k-1} from z_k: D sweeps, each fixing one more entry in ``order`` (exact after D sweeps)."""
        previous = torch.zeros_like(z)
        for _ in range(self.latent):
            m, log_sigma = self.shift_and_log_scale(previous, h)
            sigma = log_sigma.exp()
            previous = (z - (1.0 - sigma) * m) / sigma
        return previous


class PlanarStep(nn.Module):
    """One planar map; its parameters (u, w, b) are slices of the context h (no weights of its own)."""

    def __init__(self, latent: int):
        super().__init__()
        self.latent = latent

    def split(self, h: torch.Tensor):
        u, w, b = h.split([self.latent, self.latent, 1], dim=-1)
        wu = (w * u).sum(-1, keepdim=True)
        u_hat = u + (F.softplus(wu) - 1.0 - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(1e-12)
        return u_hat, w, b, F.softplus(wu) - 1.0  # the last: w^T u_hat, >= -1

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u_hat, w, b, wu_hat = self.split(h)
        t = torch.tanh((w * z).sum(-1, keepdim=True) + b)
        log_det = torch.log1p((1.0 - t * t) * wu_hat).squeeze(-1)
        return z + u_hat * t, log_det

    def inverse(self, z: torch.Tensor, h: torch.Tensor, iterations: int = 80) -> torch.Tensor:
        """Solve w^T y + b = a + (w^T u_hat) tanh(a) for a = w^T z + b by bisection (the right-hand side
        is increasing in a), then z = y - u_hat tanh(a)."""
        u_hat, w, b, wu_hat = self.split(h)
        target = (w * z).sum(-1, keepdim=True) + b
        target, wu_hat = torch.broadcast_tensors(target, wu_hat)
        lo, hi = target - wu_hat.abs() - 1.0, target + wu_hat.abs() + 1.0
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            above = mid + wu_hat * torch.tanh(mid) > target
            lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
        return z - u_hat * torch.tanh(0.5 * (lo + hi))


class Flow(nn.Module):
    """K steps of ``kind`` ("iaf" or "planar") over ``latent`` dimensions.

    ``hidden``: MADE widths of every IAF step (the context enters the first hidden layer, so the
    context has ``hidden[0]`` features); planar steps read their K * (2 * latent + 1) parameters
    straight from the context.
    """

    def __init__(self, kind: str, latent: int, steps: int, hidden: list[int]):
        super().__init__()
        if kind not in FLOWS[1:]:
            raise ValueError(f"flow must be one of {', '.join(FLOWS)}, got {kind!r}")
        if steps < 1 or (kind == "iaf" and (not hidden or min(hidden) < 1)):
            raise ValueError("flow_steps must be >= 1 and flow_hidden a non-empty list of positive widths")
        self.kind, self.latent = kind, latent
        if kind == "iaf":
            self.context_features = hidden[0]
            orders = [torch.arange(latent) if k % 2 == 0 else torch.arange(latent).flip(0) for k in range(steps)]
            self.steps = nn.ModuleList(IAFStep(latent, hidden[0], hidden, order) for order in orders)
        else:
            self.context_features = steps * (2 * latent + 1)
            self.steps = nn.ModuleList(PlanarStep(latent) for _ in range(steps))

    def _contexts(self, h: torch.Tensor) -> list[torch.Tensor]:
        if self.kind == "iaf":
            return [h] * len(self.steps)
        return list(h.chunk(len(self.steps), dim=-1))

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_K, sum_k log |det dz_k / dz_{k-1}|) for z_0 = ``z``; the log-det in nats, z's shape less the last
        axis. Computed outside autocast (float32 or wider): log-densities need the precision."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            total = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
            for step, context in zip(self.steps, self._contexts(h.to(z.dtype))):
                z, log_det = step(z, context)
                total = total + log_det
        return z, total

    def inverse(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """z_0 from z_K (for tests and analysis; IAF's inverse is sequential, D passes per step)."""
        for step, context in zip(reversed(self.steps), reversed(self._contexts(h))):
            z = step.inverse(z, context)
        return z
