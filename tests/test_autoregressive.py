"""Properties every explicit-density autoregressive model must have, checked on tiny images.

Each test can fail: a likelihood that does not sum to one, an output that sees a future subpixel
(masking leak, blind spot, wrong RGB order), or a sampler that does not follow the model's own
distribution all make one of these fail.
"""

import math

import pytest
import torch
from scipy.stats import chisquare

from genzoo.checkpoint import load, save_model
from tiny_models import all_images, cases, perturbed_model

build = perturbed_model


def test_every_registered_autoregressive_model_is_covered():
    from genzoo.models.base import AutoregressiveModel
    from genzoo.registry import MODELS, model_class
    from tiny_models import TINY

    for name in MODELS:
        if issubclass(model_class(name), AutoregressiveModel):
            assert name in TINY, f"add a tiny configuration of {name} to tests/tiny_models.py"


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_probabilities_of_all_images_sum_to_one(name, shape, levels, options):
    model = build(name, shape, levels, options)
    with torch.no_grad():
        log_p = model.log_prob(all_images(shape, levels)).double()
    assert torch.isfinite(log_p).all()
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_outputs_never_depend_on_future_subpixels(name, shape, levels, options):
    """Changing the subpixel at step j of the ordering leaves the outputs of steps <= j unchanged."""
    model = build(name, shape, levels, options)
    order = model.ordering().tolist()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randint(0, levels, (1, *shape), generator=generator)
            base = model(x).reshape(1, len(order), -1)
            for j, flat in enumerate(order):
                for value in range(levels):
                    changed = x.clone().reshape(1, -1)
                    if changed[0, flat] == value:
                        continue
                    changed[0, flat] = value
                    out = model(changed.reshape(x.shape)).reshape(1, len(order), -1)
                    seen = [i for i in order[: j + 1]]
                    assert torch.equal(out[:, seen], base[:, seen]), (
                        f"output at ordering step <= {j} changed when subpixel {flat} changed"
                    )


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_samples_follow_the_models_distribution(name, shape, levels, options):
    if levels ** math.prod(shape) > 100:
        pytest.skip("too many outcomes for a chi-square test")
    model = build(name, shape, levels, options)
    images = all_images(shape, levels)
    with torch.no_grad():
        probs = model.log_prob(images).double().exp()
    n = 20000
    samples = model.sample(n, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (n, *shape) and samples.dtype == torch.long
    codes = (samples.reshape(n, -1) * levels ** torch.arange(samples[0].numel() - 1, -1, -1)).sum(1)
    counts = torch.bincount(codes, minlength=len(images)).double()
    expected = probs / probs.sum() * n
    keep = expected > 5  # pool the rare outcomes into one cell, as the chi-square test requires
    observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    expected = torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)])
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    p_value = chisquare(observed.numpy(), expected.numpy()).pvalue
    assert p_value > 1e-3, f"samples do not follow log_prob (chi-square p = {p_value:.2e})"


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_loss_is_mean_negative_log_prob(name, shape, levels, options):
    model = build(name, shape, levels, options)
    x = torch.randint(0, levels, (5, *shape), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert model.loss(x).item() == pytest.approx(-model.log_prob(x).mean().item(), rel=1e-5)


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_save_load_round_trip(tmp_path, name, shape, levels, options):
    model = build(name, shape, levels, options)
    save_model(tmp_path / "model.safetensors", model)
    loaded = load(tmp_path)
    assert loaded.config == model.config
    x = torch.randint(0, levels, (4, *shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model.log_prob(x), loaded.log_prob(x))


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_completion_keeps_known_subpixels(name, shape, levels, options):
    model = build(name, shape, levels, options)
    x = torch.randint(0, levels, (6, *shape), generator=torch.Generator().manual_seed(4))
    known = torch.zeros_like(x, dtype=torch.bool)
    known.reshape(6, -1)[:, : known[0].numel() // 2] = True
    out = model.sample(6, x=x, known=known, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out[known], x[known])
    assert out.min() >= 0 and out.max() < levels


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_bad_input_is_a_clear_error(name, shape, levels, options):
    model = build(name, shape, levels, options)
    with pytest.raises(ValueError, match="expected integer images"):
        model.log_prob(torch.zeros(2, shape[0], shape[1] + 1, shape[2], dtype=torch.long))
    with pytest.raises(ValueError, match="values in"):
        model.log_prob(torch.full((2, *shape), levels, dtype=torch.long))
    with pytest.raises(ValueError, match="expected integer images"):
        model.log_prob(torch.zeros(2, *shape))
