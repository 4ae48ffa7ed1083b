"""tanh, computed the faster of two exact ways on the machine: ``torch.tanh`` or 2 sigmoid(2x) - 1.

PyTorch 2.13's CPU ``torch.tanh`` is slow on cores without AVX-512: on the AMD EPYC (AVX2) it took about
5x as long as ``torch.sigmoid`` on the same tensor (one thread, float32: 178 us against 36 us for
2 sigmoid(2x) - 1 on 256 x 200), while on an Intel Xeon with AVX-512 ``torch.tanh`` is the faster, 3x
(9.7 us against 31.5 us on 16 x 28 x 64); ``benchmarks/activation_speed.py`` measures both. So ``tanh``
uses ``torch.tanh`` (and its autograd) except on a CPU whose ATen kernels run below AVX-512
(``torch.backends.cpu.get_cpu_capability()``: a property of the machine, so one machine always takes the
same path and a seed still reproduces a run bit for bit there). The identity tanh(x) = 2 sigmoid(2x) - 1
is exact; in floating point the two differ by at most a few units in the last place of 1 (absolute error
< 3e-7 in float32). The sigmoid form's backward uses tanh's own derivative from the output, 1 - y^2
(``aten::tanh_backward``), so only y is kept for it.
"""

from __future__ import annotations

import torch
from torch import nn

SIGMOID_FORM_ON_CPU = torch.backends.cpu.get_cpu_capability() not in ("AVX512",)  # see the module docstring


def sigmoid_form(x: torch.Tensor) -> bool:
    """Whether ``tanh`` computes x's tanh as 2 sigmoid(2x) - 1 (a CPU tensor on a core without AVX-512)."""
    return SIGMOID_FORM_ON_CPU and x.device.type == "cpu"


def _sigmoid_form(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.sigmoid(x * 2, out=out).mul_(2).sub_(1)


def tanh_(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """tanh(x) written into ``out`` (no autograd), the same values as ``tanh``."""
    return _sigmoid_form(x, out) if sigmoid_form(x) else torch.tanh(x, out=out)


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = _sigmoid_form(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh_by_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1 on any machine; differentiable (tanh's derivative from the output)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Tanh.apply(x)
    return _sigmoid_form(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x), by ``torch.tanh`` or as 2 sigmoid(2x) - 1, whichever this machine runs faster (module
    docstring); differentiable."""
    return tanh_by_sigmoid(x) if sigmoid_form(x) else torch.tanh(x)


class Tanh(nn.Module):
    """``nn.Tanh`` computed by ``tanh`` above (no parameters: checkpoints are unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh(x)
