"""Products of independent categoricals over the C*H*W subpixels: the arithmetic shared by the
mixture (one product per component) and naive Bayes (one product per class).

A table ``log_theta`` of shape (K, D, L) holds log theta_{k,i,v} = log p(x_i = v | k), in nats, for
K products, D = C*H*W subpixels and L levels.
"""

from __future__ import annotations

import torch


def flat_images(x: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Integer images (N, C, H, W) -> LongTensor (N, D) on ``device``."""
    return x.reshape(x.shape[0], -1).to(device=device, dtype=torch.long)


def log_likelihood_table(x: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """sum_i log theta_{k,i,x_i} for every image and every product: (N, D) ints -> (N, K), nats.

    One (N, D) @ (D, K) product per level: memory stays O(N*D + N*K) whatever the number of levels.
    """
    out = log_theta.new_zeros(x.shape[0], log_theta.shape[0])
    for v in range(log_theta.shape[-1]):
        out = out + (x == v).to(log_theta.dtype) @ log_theta[:, :, v].T
    return out


def level_counts(x: torch.Tensor, weights: torch.Tensor, levels: int) -> torch.Tensor:
    """sum_n weights[n, k] [x_{n,i} = v]: (N, D) ints and (N, K) weights -> (K, D, L) soft counts."""
    return torch.stack([weights.T @ (x == v).to(weights.dtype) for v in range(levels)], dim=-1)


def safe_log(p: torch.Tensor) -> torch.Tensor:
    """log p with zeros floored at the smallest normal number (about -708 nats in float64), never -inf:
    a -inf would turn 0 * -inf into NaN in ``log_likelihood_table``."""
    return p.clamp_min(torch.finfo(p.dtype).tiny).log()


def sample_table(log_theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row and subpixel from (n, D, L) log-probabilities -> LongTensor (n, D)."""
    n, d, levels = log_theta.shape
    if n == 0:
        return torch.zeros(0, d, dtype=torch.long, device=log_theta.device)
    probs = torch.softmax(log_theta.float(), dim=-1).reshape(-1, levels)
    return torch.multinomial(probs, 1, generator=generator).reshape(n, d)
