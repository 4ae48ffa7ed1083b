"""Model-specific checks of FVSBN, NADE and MADE beyond the generic autoregressive properties."""

import math

import pytest
import torch

import genzoo
from genzoo.models.base import AutoregressiveModel
from genzoo.nn.masked import MaskedLinear, made_degrees, made_masks, ordering_rank
from tiny_models import all_images, perturbed_model


def build(name, shape, levels, seed=0, **options):
    return perturbed_model(name, shape, levels, options, seed)


def assert_causal(model, shape, levels, trials=2):
    """Changing the subpixel at ordering step j leaves the outputs of steps <= j bitwise unchanged."""
    order = model.ordering().tolist()
    generator, changes = torch.Generator().manual_seed(1), 0
    with torch.no_grad():
        for _ in range(trials):
            x = torch.randint(0, levels, (1, *shape), generator=generator)
            base = model(x).reshape(1, len(order), -1)
            for j, flat in enumerate(order):
                changed = x.clone().reshape(1, -1)
                changed[0, flat] = (changed[0, flat] + 1) % levels
                out = model(changed.reshape(x.shape)).reshape(1, len(order), -1)
                assert torch.equal(out[:, order[: j + 1]], base[:, order[: j + 1]]), f"step {j} leaks"
                changes += not torch.equal(out, base)
    assert changes > 0  # the check is not vacuous: later outputs do depend on earlier subpixels


def test_every_made_member_is_causal_and_members_differ():
    model = build("made", (1, 2, 3), 2, hidden=[16, 16], num_masks=3)
    orders = [model.orders[m].tolist() for m in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # order-agnostic: the members use different orderings
    for m in range(3):
        model.use_mask(m)
        assert model.ordering().tolist() == orders[m]
        assert_causal(model, (1, 2, 3), 2)
    with pytest.raises(ValueError, match="mask index"):
        model.use_mask(3)


def test_made_mixture_is_normalized_and_differs_from_each_member():
    model = build("made", (1, 2, 2), 3, hidden=[16], num_masks=3)
    images = all_images((1, 2, 2), 3)
    with torch.no_grad():
        each = model.log_prob_each_mask(images).double()
        mixture = model.log_prob(images).double()
    for m in range(3):  # every member is itself a normalized autoregressive model
        assert torch.logsumexp(each[m], 0).exp().item() == pytest.approx(1.0, abs=1e-4)
        assert (mixture - each[m]).abs().max() > 1e-3
    assert torch.logsumexp(mixture, 0).exp().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(mixture, torch.logsumexp(each, 0) - math.log(3))  # a mixture, not averaged logits


def test_made_training_cycles_masks_and_resumes_exactly():
    model = build("made", (1, 2, 3), 2, hidden=[8], num_masks=3).train()
    x = torch.randint(0, 2, (4, 1, 2, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        each = -model.log_prob_each_mask(x).mean(1)
    for step in range(4):
        loss = model.training_loss(x, None, step)
        assert loss.item() == pytest.approx(each[step % 3].item(), rel=1e-6)
        loss.backward()
    assert int(model.mask_index) == 0  # the member of the last step (3 mod 3)
    resumed = genzoo.create(**{**model.config, "name": "made"})
    resumed.load_state_dict(model.state_dict())
    assert int(resumed.mask_index) == 0 and resumed.ordering().tolist() == model.ordering().tolist()
    assert torch.equal(resumed.train().training_loss(x, None, 4), model.training_loss(x, None, 4))
    assert torch.equal(model.loss(x), model.loss(x)) and int(model.mask_index) == 1  # loss: the mixture, pure
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.layers[0].parameters())


def test_made_options():
    natural = build("made", (3, 1, 2), 3, hidden=[12, 12], num_masks=2, natural_ordering=True, direct=True)
    for m in range(2):
        natural.use_mask(m)
        assert natural.ordering().tolist() == AutoregressiveModel.ordering(natural).tolist()
        assert_causal(natural, (3, 1, 2), 3)
    with torch.no_grad():
        total = torch.logsumexp(natural.log_prob(all_images((3, 1, 2), 3)).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-4)
    a, b = (genzoo.create("made", image_shape=(1, 3, 3), levels=2, hidden=[8], seed=s) for s in (0, 1))
    assert not torch.equal(a.orders, b.orders)
    with pytest.raises(ValueError, match="num_masks"):
        genzoo.create("made", image_shape=(1, 2, 2), levels=2, num_masks=0)


def test_made_degrees_and_mask_shapes():
    d, hidden = 5, [7, 6]
    rank = ordering_rank(torch.randperm(d, generator=torch.Generator().manual_seed(0)))
    degrees = made_degrees(rank, hidden, torch.Generator().manual_seed(0))
    assert sorted(degrees[0].tolist()) == [1, 2, 3, 4, 5]
    assert [len(g) for g in degrees[1:]] == hidden
    assert all(1 <= int(g.min()) and int(g.max()) <= d - 1 for g in degrees[1:])
    masks = made_masks(degrees, direct=True)
    assert [tuple(m.shape) for m in masks] == [(7, 5), (6, 7), (5, 6), (5, 5)]
    # paths input -> output: output d reaches exactly the inputs of smaller degree
    reach = (masks[2].float() @ masks[1].float() @ masks[0].float()) > 0
    assert not (reach & ~masks[3]).any()
    assert all(masks[0].any(1)) and all(masks[1].any(1))  # no hidden unit without inputs


def test_masked_linear_applies_and_blocks_gradient_through_mask():
    layer = MaskedLinear(3, 2)
    layer.mask.copy_(torch.tensor([[1.0, 0, 0], [1, 1, 0]]))
    x = torch.randn(4, 3, requires_grad=True)
    out = layer(x)
    assert torch.allclose(out, x @ (layer.weight * layer.mask).t() + layer.bias)
    out.sum().backward()
    assert (layer.weight.grad[layer.mask == 0] == 0).all() and (x.grad[:, 2] == 0).all()


@pytest.mark.parametrize("shape,levels", [((1, 2, 3), 2), ((3, 1, 2), 3)])
def test_nade_cumulative_sum_equals_direct_computation(shape, levels):
    model = build("nade", shape, levels, hidden=5)
    x = torch.randint(0, levels, (3, *shape), generator=torch.Generator().manual_seed(0))
    flat, order = x.flatten(1), model.ordering().tolist()
    inputs = flat.float().unsqueeze(-1) if levels == 2 else torch.nn.functional.one_hot(flat, levels).float()
    expected = torch.empty(3, len(order), 1 if levels == 2 else levels)
    for i, f in enumerate(order):
        a = model.c + sum((inputs[:, j] @ model.W[j] for j in order[:i]), torch.zeros(3, 5))
        expected[:, f] = torch.sigmoid(a) @ model.V[f].t() + model.b[f]
    with torch.no_grad():
        assert torch.allclose(model(x).reshape(expected.shape), expected, atol=1e-5)


@pytest.mark.parametrize("name,options", [("fvsbn", {}), ("nade", {"hidden": 6}), ("made", {"hidden": [12]})])
def test_rgb_ordering_is_causal(name, options):
    model = build(name, (3, 1, 2), 3, **options)
    assert_causal(model, (3, 1, 2), 3)


def test_nade_cached_sampling_matches_naive():
    model = build("nade", (1, 2, 3), 3, hidden=6)
    fast = model.sample(200, generator=torch.Generator().manual_seed(3))
    slow = model.sample(200, generator=torch.Generator().manual_seed(3), naive=True)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize(
    "name,options",
    [("fvsbn", {}), ("nade", {"hidden": 10}), ("made", {"hidden": [10, 10], "num_masks": 2, "direct": True})],
)
@pytest.mark.parametrize("levels", [2, 5])
def test_initial_loss_is_uniform(name, options, levels):
    model = genzoo.create(name, image_shape=(1, 3, 3), levels=levels, **options)
    x = torch.randint(0, levels, (8, 1, 3, 3))
    assert model.loss(x).item() == pytest.approx(9 * math.log(levels), rel=1e-5)


def test_made_masks_are_rebuilt_on_load_and_survive_weight_averaging():
    model = build("made", (1, 2, 3), 2, hidden=[8], num_masks=3)
    assert not any(k.endswith(".mask") for k in model.state_dict())  # masks derive from saved degrees
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["mask_index"].fill_(2)
    model.load_state_dict(state)
    assert int(model.mask_index) == 2 and model.ordering().tolist() == model.orders[2].tolist()
    assert all(torch.equal(layer.mask, mask) for layer, mask in zip(model.layers, model.masks(2)))
    assert_causal(model, (1, 2, 3), 2)
    ema_module = pytest.importorskip("genzoo.ema")
    model.train()
    ema = ema_module.EMA(model, decay=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randint(0, 2, (4, 1, 2, 3), generator=torch.Generator().manual_seed(0))
    for step in range(1, 5):  # the members cycle while the average is taken
        optimizer.zero_grad()
        model.training_loss(x, None, step + 1).backward()
        optimizer.step()
        ema.update(step)
    with ema.applied_to(model):
        model.eval()
        assert int(model.mask_index) == 2  # the last step's member: 5 mod 3
        assert_causal(model, (1, 2, 3), 2)
        with torch.no_grad():
            total = torch.logsumexp(model.log_prob(all_images((1, 2, 3), 2)).double(), 0).exp().item()
        assert total == pytest.approx(1.0, abs=1e-4)
