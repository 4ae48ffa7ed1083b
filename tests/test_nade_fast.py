"""NADE's blocked O(D H) kernel (genzoo.nn.nade_kernel) against the reference implementations.

The reference is the model's own differentiable cumulative-sum form (``hidden_states``) with autograd;
the kernel must give the same log-likelihood and the same gradients (float64, 1e-10) for every block
size, binary and multi-level data, odd D and colour orderings, and its logits must stay bitwise
independent of the current and later subpixels when the steps are split over several blocks.
"""

import pytest
import torch
import torch.nn.functional as F

import genzoo
from genzoo.nn import nade_kernel

CASES = [((1, 3, 3), 2), ((1, 1, 7), 2), ((3, 1, 3), 4), ((2, 2, 3), 3), ((1, 2, 3), 256)]
BLOCKS = [1, 2, 3, 4, 100]


def build(shape, levels, hidden=5, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = genzoo.create("nade", image_shape=shape, levels=levels, hidden=hidden).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model


def images(shape, levels, n=7, seed=1):
    return torch.randint(0, levels, (n, *shape), generator=torch.Generator().manual_seed(seed))


def reference_log_prob(model, x):
    """log p(x) in the parameters' dtype from the cumulative-sum form, differentiable by autograd."""
    logits = torch.einsum("ndh,dkh->ndk", model.hidden_states(x), model.V[model.order]) + model.b[model.order]
    xo = x.flatten(1)[:, model.order]
    if model.levels == 2:
        bce = F.binary_cross_entropy_with_logits(logits[..., 0], xo.to(logits.dtype), reduction="none")
        return -bce.sum(1)
    return torch.log_softmax(logits, -1).gather(-1, xo[..., None]).squeeze(-1).sum(1)


def gradients(value, model):
    return dict(zip(["W", "c", "V", "b"], torch.autograd.grad(value, [model.W, model.c, model.V, model.b])))


@pytest.mark.parametrize("shape,levels", CASES)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("weights", ["mean", "weighted"])
def test_gradients_equal_autograd_of_the_reference(shape, levels, block, weights):
    model = build(shape, levels)
    model.block = block
    x = images(shape, levels)
    # "mean" is the loss (the gradients computed during the forward pass, scaled); "weighted" gives
    # every image its own weight and takes the plain reverse pass over recomputed blocks
    w = torch.full((7,), -1 / 7, dtype=torch.float64) if weights == "mean" else torch.linspace(-2, 3, 7).double()
    fast = model.log_prob(x)
    expected = reference_log_prob(model, x)
    assert torch.allclose(fast, expected, rtol=0, atol=1e-10)
    got, want = gradients((fast * w).sum(), model), gradients((expected * w).sum(), model)
    for name in want:
        assert got[name].shape == want[name].shape
        assert torch.allclose(got[name], want[name], rtol=0, atol=1e-10), name


@pytest.mark.parametrize("shape,levels", [((1, 1, 5), 2), ((3, 1, 2), 3)])
def test_gradcheck(shape, levels):
    model = build(shape, levels, hidden=3)
    xo = model.ordered_inputs(images(shape, levels, n=3))
    params = [p.detach().clone().requires_grad_() for p in (model.W, model.c, model.V, model.b)]
    for block in (2, 3):
        assert torch.autograd.gradcheck(
            lambda W, c, V, b, k=block: nade_kernel.nade_log_prob(xo, model.order, W, c, V, b, k), params
        )


@pytest.mark.parametrize("shape,levels", CASES[:4])
def test_loss_matches_the_textbook_loop(shape, levels):
    model = build(shape, levels, dtype=torch.float32)
    x = images(shape, levels)
    assert torch.allclose(model.log_prob(x), model.log_prob_loop(x), atol=1e-4)
    model.block = 2
    loss_fast, loss_loop = model.loss(x), -model.log_prob_loop(x).mean()
    got, want = gradients(loss_fast, model), gradients(loss_loop, model)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-4), name


@pytest.mark.parametrize("shape,levels", CASES)
def test_forward_without_grad_equals_the_differentiable_reference(shape, levels):
    model = build(shape, levels)
    x = images(shape, levels)
    reference = model(x)  # parameters require grad: the cumulative-sum form
    for block in BLOCKS:
        model.block = block
        with torch.no_grad():
            assert torch.allclose(model(x), reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape,levels", [((1, 2, 4), 2), ((3, 1, 3), 3)])
@pytest.mark.parametrize("block", [2, 3])
def test_blocked_logits_never_see_current_or_later_subpixels(shape, levels, block):
    """Perturb the subpixel at step j: the logits of steps <= j stay bitwise equal, across block edges."""
    model = build(shape, levels, dtype=torch.float32)
    model.block = block
    order = model.ordering().tolist()
    changed_later = False
    with torch.no_grad():
        for seed in range(3):
            x = images(shape, levels, n=2, seed=seed)
            base = model(x).reshape(2, len(order), -1)
            for j, flat in enumerate(order):
                for shift in range(1, levels):
                    other = x.clone().reshape(2, -1)
                    other[:, flat] = (other[:, flat] + shift) % levels
                    out = model(other.reshape(x.shape)).reshape(2, len(order), -1)
                    assert torch.equal(out[:, order[: j + 1]], base[:, order[: j + 1]]), f"step {j} leaks"
                    changed_later |= not torch.equal(out, base)
    assert changed_later


def test_scratch_reuse_across_batch_sizes_and_dtypes():
    model = build((1, 3, 3), 2, dtype=torch.float32)
    model.block = 2
    small, big = images((1, 3, 3), 2, n=3), images((1, 3, 3), 2, n=11, seed=5)
    first = model.log_prob(small).detach()
    model.log_prob(big).sum().backward()
    model.double()
    model.log_prob(big.flip(0))
    model.float()
    assert torch.equal(model.log_prob(small).detach(), first)


def test_parameters_and_checkpoint_names_are_unchanged():
    model = genzoo.create("nade", image_shape=(1, 2, 3), levels=3, hidden=4)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {"W": (6, 3, 4), "c": (4,), "V": (6, 3, 4), "b": (6, 3)}


def test_no_grad_log_prob_and_default_block():
    model = build((1, 2, 3), 2, dtype=torch.float32)
    x = images((1, 2, 3), 2)
    with torch.no_grad():
        value = model.log_prob(x)
    assert not value.requires_grad
    assert torch.allclose(value, reference_log_prob(model, x).detach(), atol=1e-5)
    assert nade_kernel.default_block(256, 500, 784) == nade_kernel.BLOCK_ELEMENTS // (256 * 500)
    assert nade_kernel.default_block(10_000, 500, 784) == 1 and nade_kernel.default_block(1, 1, 6) == 6
