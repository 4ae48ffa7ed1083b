"""genzoo's tanh (torch.tanh, or 2 sigmoid(2x) - 1 on CPUs below AVX-512) is torch.tanh to rounding, with
tanh's gradient; so is the sigmoid form itself, wherever it runs."""

import pytest
import torch

from genzoo.nn.activations import Tanh, tanh_by_sigmoid
from genzoo.nn.activations import tanh as genzoo_tanh


@pytest.mark.parametrize("tanh", [genzoo_tanh, tanh_by_sigmoid])
def test_tanh_matches_torch_tanh_and_its_gradient(tanh):
    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, 1e-8, -1e-8, 88.0, -88.0])])
    for dtype, tolerance in ((torch.float32, 3e-7), (torch.float64, 1e-15)):
        xs = x.to(dtype).requires_grad_()
        ours, reference = tanh(xs), torch.tanh(xs)
        assert (ours - reference).abs().max() <= tolerance
        assert ours.abs().max() <= 1
        (g_ours,) = torch.autograd.grad(ours.sum(), xs)
        (g_reference,) = torch.autograd.grad(reference.sum(), xs)
        assert torch.allclose(g_ours, g_reference, atol=4 * tolerance, rtol=0)
    assert torch.autograd.gradcheck(tanh, torch.randn(20, dtype=torch.float64, requires_grad=True))
    with_node = tanh_by_sigmoid(x.clone().requires_grad_()).detach()
    with torch.no_grad():  # no autograd node, the same values
        assert torch.equal(tanh_by_sigmoid(x), with_node)
        assert torch.equal(Tanh()(x), genzoo_tanh(x))
