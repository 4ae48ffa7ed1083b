"""Partition functions of undirected models: exact enumeration and annealed importance sampling.

[1] R. M. Neal, "Annealed importance sampling", Statistics and Computing 11, 2001.
[2] R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief networks", ICML 2008.

All logarithms are natural: log Z and its standard error are in nats.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

# The schedule of [2]: inverse temperatures spaced 1e-3 on [0, 0.5], 1e-4 on [0.5, 0.9] and 1e-5 on
# [0.9, 1], that is 500 + 4,000 + 10,000 = 14,500 intermediate distributions.
PAPER_SEGMENTS = ((0.5, 500), (0.9, 4_000), (1.0, 10_000))
PAPER_NUM_BETAS = 14_500


def ais_betas(num_betas: int = PAPER_NUM_BETAS) -> torch.Tensor:
    """Inverse temperatures 0 = beta_0 < beta_1 < ... < beta_K = 1 with K = ``num_betas`` (float64, K + 1 values).

    The segments [0, .5], [.5, .9], [.9, 1] of [2] get the paper's shares 500 : 4,000 : 10,000 of the K
    steps, each spaced uniformly, so ``num_betas=14_500`` is exactly the paper's schedule and smaller K
    keep its shape (dense near beta = 1, where the distributions change fastest).
    """
    if num_betas < len(PAPER_SEGMENTS):
        raise ValueError(f"num_betas must be >= {len(PAPER_SEGMENTS)}, got {num_betas}")
    counts = [max(1, round(num_betas * n / PAPER_NUM_BETAS)) for _, n in PAPER_SEGMENTS[:-1]]
    counts.append(num_betas - sum(counts))
    pieces, start = [torch.zeros(1, dtype=torch.float64)], 0.0
    for (end, _), n in zip(PAPER_SEGMENTS, counts):
        pieces.append(torch.linspace(start, end, n + 1, dtype=torch.float64)[1:])
        start = end
    return torch.cat(pieces)


def log_mean_exp_stats(log_w: torch.Tensor) -> tuple[float, float, tuple[float, float]]:
    """(log r, stderr of log r, the +-3 sigma interval of log r) for r = mean(exp(log_w)), in nats.

    AIS [1] estimates Z_B / Z_A by r = mean of the importance weights w = exp(log_w), computed here
    relative to max(log_w) so that nothing overflows. With sigma = std(w) / sqrt(M) over M runs, the
    standard error of log r is sigma / r (delta method), and [2]'s interval is [log(r - 3 sigma),
    log(r + 3 sigma)]; its lower end is -inf when r <= 3 sigma (the estimate is then unreliable).
    """
    log_w = log_w.detach().double().flatten().cpu()
    if log_w.numel() == 0 or not torch.isfinite(log_w).all():
        raise ValueError("log importance weights must be a non-empty tensor of finite values")
    top = log_w.max()
    w = (log_w - top).exp()
    mean = float(w.mean())
    sigma = float(w.std(unbiased=True)) / math.sqrt(w.numel()) if w.numel() > 1 else math.nan
    log_r = float(top) + math.log(mean)
    low = float(top) + math.log(mean - 3 * sigma) if mean > 3 * sigma else -math.inf
    high = float(top) + math.log(mean + 3 * sigma) if math.isfinite(sigma) else math.nan
    return log_r, sigma / mean, (low, high)


def configurations(num_units: int, levels: int, start: int, stop: int, device=None) -> torch.Tensor:
    """Rows ``start .. stop-1`` of all ``levels ** num_units`` joint states, a LongTensor (stop - start, num_units).

    Row i is the base-``levels`` expansion of i, first unit most significant.
    """
    index = torch.arange(start, stop, device=device)
    powers = levels ** torch.arange(num_units - 1, -1, -1, device=device)
    return torch.div(index[:, None], powers, rounding_mode="floor") % levels


def enumerate_logsumexp(
    term: Callable[[torch.Tensor], torch.Tensor], num_units: int, levels: int, chunk: int, device=None
) -> float:
    """log sum over all ``levels ** num_units`` states s of exp(term(s)), in batches of ``chunk`` states.

    ``term`` maps a LongTensor of states (B, num_units) to log-weights (B,).
    """
    total = levels**num_units
    parts = [
        torch.logsumexp(term(configurations(num_units, levels, start, min(start + chunk, total), device)), 0)
        for start in range(0, total, chunk)
    ]
    return float(torch.logsumexp(torch.stack(parts), 0))
