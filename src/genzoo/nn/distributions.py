"""Per-subpixel output distributions over integer levels.

Shapes: images ``x`` are integers in ``[0, levels)``. For ``levels == 2`` the parameters are Bernoulli
logits of the same shape as ``x``; otherwise they are softmax logits with a trailing axis of size
``levels``. All log-probabilities are natural logarithms (nats).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def num_params(levels: int) -> int:
    """Number of output values a network must produce per subpixel."""
    return 1 if levels == 2 else levels


def discrete_log_prob(params: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """log p(x) per subpixel, in nats; same shape as ``x``."""
    if levels == 2:
        return -F.binary_cross_entropy_with_logits(params.float(), x.float(), reduction="none")
    return torch.log_softmax(params.float(), dim=-1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)


def discrete_sample(params: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per subpixel from the distribution with parameters ``params`` (a LongTensor)."""
    if levels == 2:
        return torch.bernoulli(torch.sigmoid(params.float()), generator=generator).long()
    probs = torch.softmax(params.float(), dim=-1)
    flat = torch.multinomial(probs.reshape(-1, levels), 1, generator=generator)
    return flat.reshape(probs.shape[:-1])


def symmetric_inputs(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels mapped linearly onto [-1, 1]: the usual network input for images."""
    return x.float() * (2.0 / (levels - 1)) - 1.0
