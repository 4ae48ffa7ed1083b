"""Discretized logistic mixture likelihood (PixelCNN++ [1]) over integer levels, and its sampler.

Level x in {0, ..., L-1} is seen at v = 2x/(L-1) - 1 in [-1, 1] and owns the bin [v - h, v + h],
h = 1/(L-1) (edges at the midpoints between neighbouring levels); the lowest level also owns the left
tail and the highest the right tail, so the L probabilities sum to one exactly. For L = 4::

    level     0              1            2            3
    centre   -1            -1/3          1/3           1
    bin      (-inf, -2/3]  (-2/3, 0]     (0, 2/3]      (2/3, inf)

    P(x) = sum_k pi_k [F_k(v + h) - F_k(v - h)],   F_k(t) = sigmoid((t - mu_k) / s_k)   ([1], eq. 2)

Stability: instead of [1]'s sigmoid difference with a mid-bin log-pdf fallback for when it underflows,
the exact identity sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))) gives

    log P_k(x) = logsigmoid(a) + logsigmoid(-b) + log(-expm1(-2h/s)),   a = (v+h-mu)/s, b = (v-h-mu)/s

in log space: never log(0) or NaN for finite parameters, and with no approximation the distribution stays
exactly normalized (the fallback of [1] is an approximation). Log-scales are clamped to [-7, 7] ([1]
clamps at -7; the upper bound keeps 2h/s from underflowing).

Colour ([1], section 2.2). For C channels a pixel's joint is one mixture over all channels,
``sum_k pi_k prod_c P(x_c | mu_ck, s_ck)``, and the means of later channels move linearly with the
earlier channels' values: mu_G += a x_R, mu_B += b x_R + c x_G (coefficients tanh-squashed; for C != 3
one coefficient per pair c' < c). ``conditional_params`` factorises this joint by the chain rule into one
1-D mixture per subpixel: channel c gets the coupled means and, as mixture logits, the posterior
log pi_k + sum_{c'<c} log P_k(x_c'), so that p(R) p(G | R) p(B | R, G) is exactly the joint of [1] and a
sampler (or completion) may stop or start at any subpixel.

Raw network output per pixel (dim 1, ``raw_size`` values), with K mixtures:
    [K mixture logits | C*K means | C*K log-scales | C(C-1)/2*K coefficients], channel-major.
Per-subpixel parameters (``conditional_params``): (..., 3K) = [logits | means | log-scales].

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with
    Discretized Logistic Mixture Likelihood and Other Modifications. ICLR 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genzoo.nn.distributions import sampling_temperature, symmetric_inputs

LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 7.0
_BOUND = 1e4  # standardized bin edges beyond this are as good as infinite (exp(-1e4) == 0)


def num_pairs(channels: int) -> int:
    """Coupling coefficients per mixture component: one for each pair of channels c' < c."""
    return channels * (channels - 1) // 2


def raw_size(channels: int, mixtures: int) -> int:
    """Values a network must output per pixel: 10 K for RGB as in [1], 3 K for one channel."""
    return mixtures * (1 + 2 * channels + num_pairs(channels))


def couple_channels(values: torch.Tensor, coefficients: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """values[..., c, :] + sum_{c'<c} coefficient(c, c') * v[..., c'] for every channel c.

    values (..., C, K), coefficients (..., C(C-1)/2, K) in pair order (1,0), (2,0), (2,1), ...,
    v (..., C) the scaled channel values. Channel 0 is returned untouched (no arithmetic at all), and
    channel c only ever reads v[..., :c].
    """
    out, pair = [values[..., 0, :]], 0
    for c in range(1, values.shape[-2]):
        total = values[..., c, :]
        for earlier in range(c):
            total = total + coefficients[..., pair, :] * v[..., earlier, None]
            pair += 1
        out.append(total)
    return torch.stack(out, -2)


def component_log_probs(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, levels: int) -> torch.Tensor:
    """log P_k(x) of the integer levels ``x`` (...) under every component (..., K), nats."""
    half = 1.0 / (levels - 1)
    log_scales = log_scales.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
    inv_scale = torch.exp(-log_scales)
    centred = symmetric_inputs(x, levels).unsqueeze(-1) - means
    upper = (inv_scale * (centred + half)).clamp(-_BOUND, _BOUND)
    lower = (inv_scale * (centred - half)).clamp(-_BOUND, _BOUND)
    log_cdf_upper = F.logsigmoid(upper)  # level 0: everything left of its upper edge
    log_sf_lower = F.logsigmoid(-lower)  # level L-1: everything right of its lower edge
    inner = log_cdf_upper + log_sf_lower + torch.log(-torch.expm1(-2 * half * inv_scale))
    xk = x.unsqueeze(-1)
    return torch.where(xk == 0, log_cdf_upper, torch.where(xk == levels - 1, log_sf_lower, inner))


def mixture_log_prob(params: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """log p(x) of each subpixel under its 1-D mixture ``params`` (..., 3K); shape of ``x``, nats."""
    logits, means, log_scales = params.float().chunk(3, dim=-1)
    weighted = torch.log_softmax(logits, -1) + component_log_probs(x, means, log_scales, levels)
    return torch.logsumexp(weighted, -1)


def mixture_sample(params: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One integer draw per subpixel from its 1-D mixture ``params`` (..., 3K): LongTensor (...).

    Randomness, in this order: a single ``torch.rand((*params.shape[:-1], 2))``; [..., 0] picks the
    component by inverting the categorical CDF, [..., 1] = q gives the logistic draw
    mu + s log(q / (1 - q)), which is discretized to the level whose bin holds it (tails to the edges).
    At a temperature T != 1 (``distributions.tempered``) the draw is exact too: from the softmax of the
    ``levels`` discrete log-probabilities divided by T (one ``torch.multinomial`` per subpixel).
    """
    temperature = sampling_temperature()
    if temperature != 1.0:
        grid = torch.arange(levels, device=params.device).view(levels, *[1] * (params.dim() - 1))
        log_probs = mixture_log_prob(params.unsqueeze(0).expand(levels, *params.shape), grid, levels)
        probs = torch.softmax(log_probs.movedim(0, -1) / temperature, dim=-1)
        return torch.multinomial(probs.reshape(-1, levels), 1, generator=generator).reshape(params.shape[:-1])
    logits, means, log_scales = params.float().chunk(3, dim=-1)
    u = torch.rand((*params.shape[:-1], 2), generator=generator, device=params.device)
    cdf = torch.softmax(logits, -1).cumsum(-1)
    k = (cdf < u[..., :1] * cdf[..., -1:]).sum(-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    mean = means.gather(-1, k).squeeze(-1)
    scale = log_scales.gather(-1, k).squeeze(-1).clamp(LOG_SCALE_MIN, LOG_SCALE_MAX).exp()
    q = u[..., 1]
    value = mean + scale * (torch.log(q) - torch.log1p(-q))
    return torch.round((value + 1) * (levels - 1) / 2).clamp(0, levels - 1).long()


def conditional_params(raw: torch.Tensor, x: torch.Tensor, levels: int, mixtures: int) -> torch.Tensor:
    """Per-subpixel 1-D mixtures (N, C, H, W, 3K) from the raw output (N, raw_size, H, W) and the image.

    Subpixel (c, h, w) reads ``x`` only at channels < c of the same pixel (coupled means, posterior
    mixture logits); the raw output must itself depend on earlier pixels only.
    """
    n, _, height, width = raw.shape
    c, k = x.shape[1], mixtures
    raw = raw.float().permute(0, 2, 3, 1)  # (N, H, W, raw_size)
    logits = torch.log_softmax(raw[..., :k], -1)
    means = raw[..., k : k + c * k].unflatten(-1, (c, k))
    log_scales = raw[..., k + c * k : k + 2 * c * k].unflatten(-1, (c, k)).clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
    coefficients = torch.tanh(raw[..., k + 2 * c * k :].unflatten(-1, (num_pairs(c), k)))
    x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
    means = couple_channels(means, coefficients, symmetric_inputs(x, levels))
    posterior = [logits]  # channel c: log pi_k + sum_{c' < c} log P_k(x_c')
    for ch in range(1, c):
        posterior.append(
            posterior[-1]
            + component_log_probs(x[..., ch - 1], means[..., ch - 1, :], log_scales[..., ch - 1, :], levels)
        )
    params = torch.cat([torch.stack(posterior, -2), means, log_scales], -1)  # (N, H, W, C, 3K)
    return params.permute(0, 3, 1, 2, 4)
