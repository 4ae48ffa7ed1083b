"""Tempered sampling, ``sample(n, temperature=T)``: every subpixel drawn from its conditional raised to
1/T and renormalized. Checked against that distribution computed exactly from the model's own
conditionals over every tiny image; cached == naive at T != 1; T = 1 is the model itself."""

import math

import pytest
import torch
from scipy.stats import chisquare

from genzoo.nn.distributions import sampling_temperature, tempered
from tiny_models import all_images, cases, naive_and_cached_samples, normal_weights_model, perturbed_model

# a mixture over several masks is not one product of conditionals: its tempered draws are per mask
SINGLE_ORDER = [c for c in cases() if c.values[3].get("num_masks", 1) == 1] + [
    pytest.param(  # the logistic mixture's tempered draw, on few enough images to enumerate
        "pixelcnn++",
        (1, 2, 2),
        3,
        {"channels": 8, "num_resnet": 1, "num_mixtures": 2, "num_resolutions": 2},
        id="pixelcnn++-1x2x2-L3-mixture",
    )
]


def tempered_log_probs(model, images: torch.Tensor, temperature: float) -> torch.Tensor:
    """log q_T(x) = sum_i log softmax(log p(. | x_<i) / T)[x_i] for every image of the enumeration ``images``.

    The conditional of subpixel i given the earlier ones is read off the images that differ from x at i
    only (subpixel i's output never depends on x_i or later subpixels)."""
    levels = model.levels
    flat = images.flatten(1)
    with torch.no_grad():
        per = model.pixel_log_prob(model(images), images).flatten(1).double()  # log p(x_i | earlier), (M, D)
    powers = levels ** torch.arange(flat.shape[1] - 1, -1, -1)
    code = (flat * powers).sum(1)
    assert torch.equal(code, torch.arange(len(images)))  # all_images enumerates in this order
    out = torch.zeros(len(images), dtype=torch.double)
    for i in range(flat.shape[1]):
        others = (code - flat[:, i] * powers[i]).unsqueeze(1) + torch.arange(levels) * powers[i]
        out += per[:, i] / temperature - torch.logsumexp(per[others, i] / temperature, 1)
    return out


def test_the_reference_at_temperature_one_is_the_models_likelihood():
    model = normal_weights_model("pixelcnn", (1, 2, 2), 3, channels=8, num_blocks=1)
    images = all_images((1, 2, 2), 3)
    with torch.no_grad():
        assert torch.allclose(tempered_log_probs(model, images, 1.0), model.log_prob(images).double(), atol=1e-5)


@pytest.mark.parametrize("name,shape,levels,options", SINGLE_ORDER)
def test_tempered_samples_follow_the_tempered_conditionals(name, shape, levels, options):
    if levels ** math.prod(shape) > 100:
        pytest.skip("too many outcomes for a chi-square test")
    model = perturbed_model(name, shape, levels, options)
    temperature = 0.6
    expected = tempered_log_probs(model, all_images(shape, levels), temperature).exp()
    assert expected.sum().item() == pytest.approx(1.0, abs=1e-6)
    n = 20000
    samples = model.sample(n, generator=torch.Generator().manual_seed(0), temperature=temperature)
    codes = (samples.reshape(n, -1) * levels ** torch.arange(samples[0].numel() - 1, -1, -1)).sum(1)
    counts = torch.bincount(codes, minlength=len(expected)).double()
    expected = expected * n
    keep = expected > 5  # pool the rare outcomes into one cell, as the chi-square test requires
    observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    expected = torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)])
    if expected[-1] < 1e-9:
        observed, expected = observed[:-1], expected[:-1]
    if len(expected) == 1:  # (nearly) a point mass: every draw must be that image
        assert observed[0] == n
        return
    p_value = chisquare(observed.numpy(), expected.numpy() * observed.sum().item() / expected.sum().item()).pvalue
    assert p_value > 1e-3, f"tempered samples do not follow the tempered conditionals (chi-square p = {p_value:.2e})"


@pytest.mark.parametrize("name,shape,levels,options", cases())
def test_cached_sampling_equals_naive_sampling_when_tempered(name, shape, levels, options):
    model = perturbed_model(name, shape, levels, options)
    naive, cached = naive_and_cached_samples(model, 16, 3, temperature=0.7)
    assert torch.equal(naive, cached)


def test_temperature_one_is_the_model_and_lower_is_sharper():
    model = normal_weights_model("pixelcnn", (1, 4, 4), 2, scale=0.1, channels=8, num_blocks=1)
    draw = lambda **kw: model.sample(2000, generator=torch.Generator().manual_seed(5), **kw)  # noqa: E731
    assert torch.equal(draw(), draw(temperature=1.0))
    with torch.no_grad():
        nll = lambda x: -model.log_prob(x).mean().item()  # noqa: E731
    assert nll(draw(temperature=0.3)) < nll(draw()) < nll(draw(temperature=3.0))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_a_temperature_must_be_positive_and_finite(bad):
    model = normal_weights_model("pixelcnn", (1, 2, 2), 2, channels=8, num_blocks=1)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=bad)


def test_the_temperature_holds_only_inside_its_block():
    assert sampling_temperature() == 1.0
    with tempered(0.5):
        assert sampling_temperature() == 0.5
        with tempered(2.0):
            assert sampling_temperature() == 2.0
        assert sampling_temperature() == 0.5
    assert sampling_temperature() == 1.0
    with pytest.raises(RuntimeError), tempered(0.5):
        raise RuntimeError
    assert sampling_temperature() == 1.0


def test_the_tempered_logistic_mixture_draw_is_the_tempered_discrete_distribution():
    from genzoo.nn.logistic_mixture import mixture_log_prob, mixture_sample

    levels, temperature, n = 7, 0.5, 40000
    params = torch.tensor([[1.0, -0.5, -0.6, 0.3, -1.2, -0.8]])  # 2 components: logits, means, log-scales
    log_p = mixture_log_prob(params.expand(levels, -1), torch.arange(levels), levels).double()
    expected = torch.softmax(log_p / temperature, 0) * n
    with tempered(temperature):
        draws = mixture_sample(params.expand(n, -1), levels, torch.Generator().manual_seed(0))
    observed = torch.bincount(draws, minlength=levels).double()
    keep = expected > 5
    observed, expected = observed[keep], expected[keep] * observed[keep].sum() / expected[keep].sum()
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3
