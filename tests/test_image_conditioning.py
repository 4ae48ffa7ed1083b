"""Image-conditioned autoregressive models p(x | y): for every condition y the probabilities of all tiny
images sum to one, outputs never see future subpixels, cached samples equal naive ones, the condition
is validated at the boundary and really changes the distribution, and the model saves and loads."""

import pytest
import torch

import genzoo
from genzoo.checkpoint import load, save_model
from tiny_models import all_images, naive_and_cached_samples

# (name, image_shape, levels, options); condition_shape/levels are added per case below
TINY_CONDITIONAL = [
    ("pixelcnn", (1, 2, 4), 2, {"channels": 8, "num_blocks": 1}, [1, 1, 2], 5),
    ("pixelcnn", (3, 1, 2), 3, {"channels": 12, "num_blocks": 1}, [1, 1, 2], 3),
    ("pixelcnn", (3, 1, 2), 3, {"channels": 12, "num_blocks": 1, "condition_loss": 1.0}, [1, 1, 2], 3),
    ("gated-pixelcnn", (1, 2, 4), 2, {"channels": 8, "num_layers": 2, "kernel_size": 3}, [1, 1, 2], 5),
    ("gated-pixelcnn", (3, 1, 2), 3, {"channels": 6, "num_layers": 2, "kernel_size": 3}, [1, 1, 2], 3),
    ("pixelcnn++", (1, 2, 4), 2, {"channels": 8, "num_resnet": 1, "num_resolutions": 2}, [1, 1, 2], 5),
    (
        "pixelcnn++",
        (3, 1, 2),
        3,
        {"channels": 8, "num_resnet": 1, "num_mixtures": 2, "num_resolutions": 2},
        [1, 1, 2],
        3,
    ),
    (
        "pixelsnail",
        (1, 2, 4),
        2,
        {"channels": 4, "num_blocks": 1, "num_resnet": 1, "key_channels": 4, "value_channels": 4},
        [1, 1, 2],
        5,
    ),
    (
        "pixelsnail",
        (3, 1, 2),
        3,
        {"channels": 6, "num_blocks": 1, "num_resnet": 1, "key_channels": 4, "value_channels": 4},
        [1, 1, 2],
        3,
    ),
]
CASES = [pytest.param(*case, id=f"{case[0]}-{'x'.join(map(str, case[1]))}-L{case[2]}") for case in TINY_CONDITIONAL]
CONDITION_OPTIONS = {"condition_channels": 4, "condition_blocks": 1}


def build(name, shape, levels, options, condition_shape, condition_levels, seed=0):
    torch.manual_seed(seed)
    model = genzoo.create(
        name,
        image_shape=shape,
        levels=levels,
        condition_shape=condition_shape,
        condition_levels=condition_levels,
        **CONDITION_OPTIONS,
        **options,
    )
    with torch.no_grad():  # away from the zero-initialized projections, so the condition matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def conditions(condition_shape, condition_levels, n, seed=0):
    return torch.randint(0, condition_levels, (n, *condition_shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,shape,levels,options,cshape,clevels", CASES)
def test_probabilities_sum_to_one_for_every_condition(name, shape, levels, options, cshape, clevels):
    model = build(name, shape, levels, options, cshape, clevels)
    images = all_images(shape, levels)
    totals, log_ps = [], []
    with torch.no_grad():
        lowest, highest = torch.zeros(1, *cshape, dtype=torch.long), torch.full((1, *cshape), clevels - 1)
        for y in torch.cat([lowest, highest, conditions(cshape, clevels, 1)]):
            log_p = model.log_prob(images, y.expand(len(images), *cshape)).double()
            assert torch.isfinite(log_p).all()
            totals.append(torch.logsumexp(log_p, 0).exp().item())
            log_ps.append(log_p)
    assert totals == pytest.approx([1.0] * 3, abs=1e-4)
    assert not torch.allclose(log_ps[0], log_ps[1], atol=1e-3)  # the condition changes the distribution


@pytest.mark.parametrize("name,shape,levels,options,cshape,clevels", CASES)
def test_outputs_never_depend_on_future_subpixels_given_the_condition(name, shape, levels, options, cshape, clevels):
    model = build(name, shape, levels, options, cshape, clevels)
    order = model.ordering().tolist()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for trial in range(2):
            x = torch.randint(0, levels, (1, *shape), generator=generator)
            y = conditions(cshape, clevels, 1, seed=trial)
            base = model(x, y).reshape(1, len(order), -1)
            for j, flat in enumerate(order):
                for value in range(levels):
                    changed = x.clone().reshape(1, -1)
                    if changed[0, flat] == value:
                        continue
                    changed[0, flat] = value
                    out = model(changed.reshape(x.shape), y).reshape(1, len(order), -1)
                    seen = order[: j + 1]
                    assert torch.equal(out[:, seen], base[:, seen]), f"step <= {j} saw subpixel {flat}"


@pytest.mark.parametrize("name,shape,levels,options,cshape,clevels", CASES)
def test_cached_samples_equal_naive_samples_given_the_condition(name, shape, levels, options, cshape, clevels):
    model = build(name, shape, levels, options, cshape, clevels)
    assert model.has_cached_sampling
    y = conditions(cshape, clevels, 8, seed=3)
    naive, cached = naive_and_cached_samples(model, 8, 0, y=y)
    assert torch.equal(naive, cached)
    x = torch.randint(0, levels, (8, *shape), generator=torch.Generator().manual_seed(4))
    known = torch.zeros_like(x, dtype=torch.bool)
    known.reshape(8, -1)[:, :3] = True
    naive, cached = naive_and_cached_samples(model, 8, 1, y=y, x=x, known=known)
    assert torch.equal(naive, cached) and torch.equal(cached[known], x[known])


def test_cached_samples_equal_naive_samples_on_larger_images():
    """A 2x super-resolution shape (8x8 from 4x4) through all four samplers: more layers, more positions."""
    shape, cshape = (1, 8, 8), [1, 4, 4]
    configs = {
        "pixelcnn": {"channels": 8, "num_blocks": 2},
        "gated-pixelcnn": {"channels": 8, "num_layers": 3, "kernel_size": 3},
        "pixelcnn++": {"channels": 8, "num_resnet": 1, "num_resolutions": 3, "num_mixtures": 2},
        "pixelsnail": {"channels": 4, "num_blocks": 2, "num_resnet": 1, "key_channels": 4, "value_channels": 4},
    }
    y = conditions(cshape, 17, 4, seed=5)
    for name, options in configs.items():
        model = build(name, shape, 17, options, cshape, 17)
        naive, cached = naive_and_cached_samples(model, 4, 2, y=y)
        assert torch.equal(naive, cached), name


@pytest.mark.parametrize("name,shape,levels,options,cshape,clevels", CASES[::2])
def test_condition_is_validated_at_the_boundary(name, shape, levels, options, cshape, clevels):
    model = build(name, shape, levels, options, cshape, clevels)
    x = torch.zeros(2, *shape, dtype=torch.long)
    with pytest.raises(ValueError, match="image-conditioned"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="condition images"):
        model.log_prob(x, torch.zeros(2, cshape[0], cshape[1] + 1, cshape[2], dtype=torch.long))
    with pytest.raises(ValueError, match="values in"):
        model.log_prob(x, torch.full((2, *cshape), clevels, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype"):
        model.log_prob(x, torch.zeros(2, *cshape))
    with pytest.raises(ValueError, match="image-conditioned"):
        model.sample(2)
    one = torch.zeros(*cshape, dtype=torch.uint8)  # one condition for every image: accepted, repeated
    assert model.sample(3, one).shape == (3, *shape)
    assert model.log_prob(x, one[None]).shape == (2,)


def test_bad_condition_options_are_clear_errors():
    with pytest.raises(ValueError, match="both"):
        genzoo.create("pixelcnn", (1, 4, 4), 2, channels=8, num_blocks=1, condition_shape=[1, 2, 2])
    with pytest.raises(ValueError, match="divide"):
        genzoo.create("pixelcnn", (1, 4, 4), 2, channels=8, condition_shape=[1, 3, 3], condition_levels=2)
    with pytest.raises(ValueError, match="not both"):
        genzoo.create("gated-pixelcnn", (1, 4, 4), 2, num_classes=3, condition_shape=[1, 2, 2], condition_levels=2)
    with pytest.raises(ValueError, match="condition_loss"):
        genzoo.create("pixelcnn", (1, 4, 4), 2, channels=8, num_blocks=1, condition_loss=1.0)


@pytest.mark.parametrize("levels", [2, 3])
def test_condition_loss_adds_the_conditioning_networks_own_prediction(levels):
    """Dahl et al.'s auxiliary term: training objective = -log p(x | y) + w * the head's independent NLL;
    the head changes neither log p(x | y) nor any sample."""
    from genzoo.nn.distributions import discrete_log_prob

    model = build("pixelcnn", (1, 2, 4), levels, {"channels": 8, "num_blocks": 1, "condition_loss": 0.5}, [1, 1, 2], 5)
    x = torch.randint(0, levels, (6, 1, 2, 4), generator=torch.Generator().manual_seed(1))
    y = conditions([1, 1, 2], 5, 6)
    head = model.parameter_layout(model.condition_head(model.condition_features(y)))
    expected = model.loss(x, y) - 0.5 * discrete_log_prob(head, x, levels).flatten(1).sum(1).mean()
    objective = model.training_loss(x, y, 0)
    assert torch.allclose(objective, expected, atol=1e-5)
    objective.backward()
    assert model.condition_head.weight.grad.abs().sum() > 0
    with torch.no_grad():
        before = model.log_prob(x, y), model.sample(4, y[:4], generator=torch.Generator().manual_seed(0))
        model.condition_head.weight.add_(1.0)
        after = model.log_prob(x, y), model.sample(4, y[:4], generator=torch.Generator().manual_seed(0))
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


@pytest.mark.parametrize("name,shape,levels,options,cshape,clevels", CASES[::2])
def test_conditional_model_saves_and_loads(tmp_path, name, shape, levels, options, cshape, clevels):
    model = build(name, shape, levels, options, cshape, clevels)
    save_model(tmp_path / "model.safetensors", model)
    loaded = load(tmp_path)
    assert loaded.config == model.config and loaded.condition_shape == tuple(cshape)
    x = torch.randint(0, levels, (4, *shape), generator=torch.Generator().manual_seed(3))
    y = conditions(cshape, clevels, 4)
    with torch.no_grad():
        assert torch.equal(model.log_prob(x, y), loaded.log_prob(x, y))


def test_initial_conditional_model_is_the_unconditional_one():
    """Zero-initialized projections: before training the condition changes nothing (a safe start)."""
    torch.manual_seed(0)
    model = genzoo.create(
        "pixelcnn", (1, 4, 4), 2, channels=8, num_blocks=1, condition_shape=[1, 2, 2], condition_levels=5
    )
    x = torch.randint(0, 2, (3, 1, 4, 4))
    with torch.no_grad():
        a = model.log_prob(x, conditions([1, 2, 2], 5, 3, 0))
        b = model.log_prob(x, conditions([1, 2, 2], 5, 3, 1))
    assert torch.equal(a, b)
