"""genzoo's tanh (2 sigmoid(2x) - 1) is torch.tanh to rounding, with tanh's gradient."""

import torch

from genzoo.nn.activations import Tanh, tanh


def test_tanh_matches_torch_tanh_and_its_gradient():
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
    with torch.no_grad():  # no autograd node, the same values
        assert torch.equal(tanh(x), Tanh()(x))
