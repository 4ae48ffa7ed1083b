"""PixelSNAIL: exact causality (RGB order included) and full past context from the Jacobian, a planted
attention leak that the same check catches, the initial loss, and cached sampling equal to naive sampling.
The generic properties (normalization, sampling distribution, ...) are in test_autoregressive.py."""

import math

import pytest
import torch

import genzoo
from genzoo.models.autoregressive.pixelsnail import PixelSNAILStepper
from genzoo.nn.attention import causal_pixel_mask
from genzoo.nn.distributions import symmetric_inputs
from tiny_models import naive_and_cached_samples

SMALL = {"channels": 6, "num_blocks": 2, "num_resnet": 1, "key_channels": 4, "value_channels": 4}


def make_model(shape, levels, **options):
    torch.manual_seed(0)
    model = genzoo.create("pixelsnail", shape, levels, **{**SMALL, **options})
    with torch.no_grad():  # random output layer (it starts at zero) and larger weights: far from uniform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def dependencies(model, per_pixel=False):
    """(D, D) matrix over subpixels in generation order: entry (t, s) is the total |d output_t / d input_s|.

    Categorical: output_t sums the logits of subpixel t. ``per_pixel`` (logistic output): (P, P) over
    pixels, from the raw output of each pixel to every colour of each input pixel.
    """
    c, h, w = model.image_shape
    u = torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    jac = torch.autograd.functional.jacobian(model.network, u)[0].abs()  # (raw, H, W, 1, C, H, W)
    if per_pixel:
        return jac.sum((0, 3, 4)).reshape(h * w, h * w)
    order = model.ordering()
    jac = jac.reshape(c, -1, h * w, c * h * w).sum(1).reshape(c * h * w, c * h * w)
    return jac[order][:, order]


def assert_causal_with_full_past(dep):
    """Zero on and above the diagonal (no future, not itself), nonzero everywhere below it (all the past)."""
    future = torch.ones_like(dep, dtype=torch.bool).triu()
    leaks = (dep[future] != 0).sum().item()
    assert leaks == 0, f"{leaks} output/input pairs see the current or a later subpixel"
    assert (dep[~future] != 0).all(), "some output does not see an earlier subpixel"


def test_attention_mask_is_strictly_causal():
    allowed = causal_pixel_mask(2, 2)
    assert torch.equal(allowed.int(), torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]))


@pytest.mark.parametrize("levels", [2, 4])
def test_jacobian_causal_in_rgb_order_and_full_past(levels):
    model = make_model((3, 4, 4), levels)
    assert_causal_with_full_past(dependencies(model))


def test_logistic_output_reads_strictly_earlier_pixels():
    model = make_model((3, 4, 4), 5, output="logistic", num_mixtures=2, channels=4)
    assert_causal_with_full_past(dependencies(model, per_pixel=True))


def test_planted_leak_is_caught():
    model = make_model((3, 4, 4), 4)
    model.blocks[1].attention.include_current = True  # the current pixel (all its colours) joins the keys
    with pytest.raises(AssertionError, match="see the current or a later subpixel"):
        assert_causal_with_full_past(dependencies(model))


def test_last_pixel_sees_the_first_through_attention():
    """A one-block model whose convolutions reach 2 rows up: only the attention links (7, 7) to (0, 0)."""
    model = make_model((1, 8, 8), 2, num_blocks=1, first_kernel=3)
    dep = dependencies(model)
    assert dep[-1, 0] > 0
    with torch.no_grad():
        model.blocks[0].mix.aux.weight.zero_()  # cut the attention read out of the stream
    dep = dependencies(model)
    assert dep[-1, 0] == 0 and dep[-1, -2] > 0


def test_initial_loss_on_binary_mnist_size_is_uniform():
    torch.manual_seed(0)
    model = genzoo.create("pixelsnail", (1, 28, 28), 2)
    x = torch.randint(0, 2, (4, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss = model.loss(x).item()
    assert loss <= 1.1 * 784 * math.log(2)
    assert loss == pytest.approx(784 * math.log(2), rel=1e-5)  # zero output layer: uniform prediction


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of C = 3"):
        genzoo.create("pixelsnail", (3, 4, 4), 4, channels=8)
    with pytest.raises(ValueError, match="levels > 2"):
        genzoo.create("pixelsnail", (1, 4, 4), 2, output="logistic")
    with pytest.raises(ValueError, match="output must be"):
        genzoo.create("pixelsnail", (1, 4, 4), 2, output="gaussian")
    genzoo.create("pixelsnail", (3, 4, 4), 4, channels=8, output="logistic")  # one colour group: any width


CASES = [
    pytest.param((1, 5, 5), 2, {}, id="binary-1x5x5"),
    pytest.param((3, 3, 3), 4, {}, id="rgb-3x3x3-L4"),
    pytest.param((3, 3, 3), 4, {"output": "logistic", "num_mixtures": 3}, id="rgb-3x3x3-L4-logistic"),
]
BATCH = 8


@pytest.mark.parametrize("shape,levels,options", CASES)
def test_cached_samples_equal_naive_samples(shape, levels, options):
    model = make_model(shape, levels, **options)
    assert model.has_cached_sampling
    for seed in range(2):
        naive, cached = naive_and_cached_samples(model, BATCH, seed)
        assert torch.equal(naive, cached)
        assert 0 < naive.float().mean() < levels - 1


@pytest.mark.parametrize("shape,levels,options", CASES)
def test_cached_completion_equals_naive_completion(shape, levels, options):
    """A known top half, and a scattered mask: known in every image at some subpixels (whole pixels and
    last colours included, so steps are skipped) and in only some images at others."""
    model = make_model(shape, levels, **options)
    generator = torch.Generator().manual_seed(4)
    x = torch.randint(0, levels, (BATCH, *shape), generator=generator)
    top = torch.zeros_like(x, dtype=torch.bool)
    top[:, :, : shape[1] // 2] = True
    everywhere = torch.rand(1, *shape, generator=generator) < 0.4
    scattered = everywhere | (torch.rand(BATCH, *shape, generator=generator) < 0.3)
    for known in (top, scattered.expand_as(x)):
        naive, cached = naive_and_cached_samples(model, BATCH, 5, x=x, known=known)
        assert torch.equal(naive, cached)
        assert torch.equal(cached[known], x[known])


def test_stepper_gives_the_output_of_a_whole_image():
    model = make_model((3, 4, 5), 7)
    x = torch.randint(0, 7, (3, 3, 4, 5), generator=torch.Generator().manual_seed(7))
    stepper = PixelSNAILStepper(model, x)
    with torch.no_grad():
        full = model.network(symmetric_inputs(x, 7))
        for i in range(4):
            for j in range(5):
                torch.testing.assert_close(stepper.raw(i, j), full[:, :, i, j], rtol=1e-5, atol=1e-5)
                stepper.finish(i, j)
