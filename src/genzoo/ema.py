"""Exponential moving average (Polyak averaging) of a model's weights.

After every optimizer step ``ema <- d * ema + (1 - d) * w`` for every floating-point entry of the
model's ``state_dict`` (parameters and float buffers); integer and boolean buffers (masks, counters)
are copied. The decay warms up as ``d_t = min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so that
the average of a short run is not dominated by the random initialization.

Evaluation and saved models use the average; the optimizer keeps training the raw weights.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        """Start the average at the model's current weights; create it after moving the model to its device."""
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        live = model.state_dict()  # tensors sharing storage with the parameters: no copy per update
        self.shadow = {k: v.detach().clone() for k, v in live.items()}
        self._floats = [(self.shadow[k], v) for k, v in live.items() if v.is_floating_point()]
        self._others = [(self.shadow[k], v) for k, v in live.items() if not v.is_floating_point()]

    def decay_at(self, num_updates: int) -> float:
        """The decay used for update number ``num_updates`` (1-based)."""
        return min(self.decay, (1.0 + num_updates) / (10.0 + num_updates))

    @torch.no_grad()
    def update(self, num_updates: int) -> None:
        """Fold the model's current weights into the average (call after optimizer step ``num_updates``)."""
        if self._floats:
            shadow, live = zip(*self._floats)
            torch._foreach_lerp_(list(shadow), list(live), 1.0 - self.decay_at(num_updates))
        for shadow, live in self._others:
            shadow.copy_(live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, keyed like the model's ``state_dict``."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = set(self.shadow) - set(state), set(state) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(
                f"EMA state does not match the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for key, value in state.items():
            self.shadow[key].copy_(value)

    @contextmanager
    def applied_to(self, model: nn.Module):
        """Temporarily put the averaged weights into ``model`` (in place, so optimizer and DDP keep theirs)."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(backup)
