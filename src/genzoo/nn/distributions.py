"""Per-subpixel output distributions over integer levels.

Shapes: images ``x`` are integers in ``[0, levels)``. For ``levels == 2`` the parameters are Bernoulli
logits of the same shape as ``x``; otherwise they are softmax logits with a trailing axis of size
``levels``. All log-probabilities are natural logarithms (nats).

Sampling temperature: inside ``with tempered(T):`` every draw comes from its subpixel's conditional raised
to the power 1/T and renormalized, p_T(v) ∝ p(v)^(1/T) (exactly: the logits divided by T). T = 1 is the
model; T < 1 sharpens each conditional toward its mode. Outside such a block draws are the model's own.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

_TEMPERATURE = contextvars.ContextVar("genzoo_sampling_temperature", default=1.0)


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float; ValueError unless it is finite and > 0."""
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"the sampling temperature must be a finite number > 0, not {temperature}")
    return temperature


@contextlib.contextmanager
def tempered(temperature: float) -> Iterator[None]:
    """Draws inside the block come from p(v)^(1/temperature), renormalized per subpixel."""
    token = _TEMPERATURE.set(check_temperature(temperature))
    try:
        yield
    finally:
        _TEMPERATURE.reset(token)


def sampling_temperature() -> float:
    """The temperature of the enclosing ``tempered`` block (1.0 outside any)."""
    return _TEMPERATURE.get()


def num_params(levels: int) -> int:
    """Number of output values a network must produce per subpixel."""
    return 1 if levels == 2 else levels


def discrete_log_prob(params: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """log p(x) per subpixel, in nats; same shape as ``x``."""
    if levels == 2:
        return -F.binary_cross_entropy_with_logits(params.float(), x.float(), reduction="none")
    return torch.log_softmax(params.float(), dim=-1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)


def discrete_sample(params: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per subpixel from the distribution with parameters ``params`` (a LongTensor), at the
    enclosing ``tempered`` block's temperature."""
    temperature = _TEMPERATURE.get()
    if temperature != 1.0:
        params = params.float() / temperature
    if levels == 2:
        return torch.bernoulli(torch.sigmoid(params.float()), generator=generator).long()
    probs = torch.softmax(params.float(), dim=-1)
    flat = torch.multinomial(probs.reshape(-1, levels), 1, generator=generator)
    return flat.reshape(probs.shape[:-1])


def symmetric_inputs(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels mapped linearly onto [-1, 1]: the usual network input for images."""
    return x.float() * (2.0 / (levels - 1)) - 1.0
