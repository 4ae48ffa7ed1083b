"""Cached PixelCNN sampling: the same images as naive sampling for the same seed, and at every step the
logits a full forward pass gives. Images are small, so that a draw flipped by float rounding between
the full convolution and the per-position matmul (a ~1e-7 event per draw) does not happen."""

import pytest
import torch
import torch.nn.functional as F

import genzoo
from genzoo.models.autoregressive.pixelcnn_sampling import PixelCNNStepper, sample_cached
from genzoo.nn.incremental import IncrementalConv2d
from genzoo.nn.masked_conv import MaskedConv2d
from tiny_models import naive_and_cached_samples

CASES = [pytest.param((1, 6, 6), 2, id="binary-1x6x6"), pytest.param((3, 4, 4), 4, id="rgb-3x4x4-L4")]
BATCH = 8


def make_model(shape, levels):
    torch.manual_seed(0)
    model = genzoo.create("pixelcnn", shape, levels, channels=12, num_blocks=2, output_channels=6)
    with torch.no_grad():  # random last layer (it starts at zero) and larger weights: far from uniform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def completion_masks(shape, levels):
    """(x, known) pairs: a known top half, and a scattered mask known for all images at some subpixels
    (skipped steps, whole pixels included) and for only some images at others."""
    generator = torch.Generator().manual_seed(4)
    x = torch.randint(0, levels, (BATCH, *shape), generator=generator)
    top = torch.zeros_like(x, dtype=torch.bool)
    top[:, :, : shape[1] // 2] = True
    everywhere = torch.rand(1, *shape, generator=generator) < 0.4
    some = torch.rand(BATCH, *shape, generator=generator) < 0.3
    return [(x, top), (x, everywhere.expand_as(x) | some)]


@pytest.mark.parametrize("shape,levels", CASES)
def test_cached_samples_equal_naive_samples(shape, levels):
    model = make_model(shape, levels)
    assert model.has_cached_sampling
    for seed in range(2):
        naive, cached = naive_and_cached_samples(model, BATCH, seed)
        assert torch.equal(naive, cached)
        assert 0 < naive.float().mean() < levels - 1  # not a degenerate all-equal image


@pytest.mark.parametrize("shape,levels", CASES)
def test_cached_completion_equals_naive_completion(shape, levels):
    model = make_model(shape, levels)
    for x, known in completion_masks(shape, levels):
        naive, cached = naive_and_cached_samples(model, BATCH, 5, x=x, known=known)
        assert torch.equal(naive, cached)
        assert torch.equal(cached[known], x[known])


@pytest.mark.parametrize("shape,levels", CASES)
def test_logits_at_every_step_match_a_full_forward_pass(shape, levels):
    model = make_model(shape, levels)
    x, known = completion_masks(shape, levels)[1]
    for x, known in [(torch.zeros_like(x), torch.zeros_like(known)), (x, known)]:  # noqa: B020
        steps = []
        out = sample_cached(
            model,
            x.clone(),
            known,
            torch.Generator().manual_seed(6),
            on_step=lambda index, params: steps.append((index, params.clone())),  # noqa: B023 (called at once)
        )
        with torch.no_grad():
            full = model(out)  # the logits of a subpixel depend only on the subpixels drawn before it
        assert len(steps) == int((~known.all(0)).sum())  # one per subpixel not known in every image
        for (c, i, j), params in steps:
            torch.testing.assert_close(params, full[:, c, i, j], rtol=0, atol=1e-5)


def test_stepper_gives_the_logits_of_a_whole_image():
    model = make_model((3, 4, 5), 7)
    x = torch.randint(0, 7, (3, 3, 4, 5), generator=torch.Generator().manual_seed(7))
    stepper = PixelCNNStepper(model, x)
    with torch.no_grad():
        full = model(x)
        for i in range(4):
            for j in range(5):
                torch.testing.assert_close(stepper.logits(i, j), full[:, :, i, j], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernel,mask", [(3, "A"), (5, "B"), (7, "A"), (1, "B")])
def test_incremental_masked_conv_in_raster_order_equals_the_convolution(kernel, mask):
    torch.manual_seed(0)
    conv = MaskedConv2d(6, 9, kernel, mask, color_groups=3)
    layer = IncrementalConv2d(conv, 2, 5, 4)
    assert layer.rows == (1 if kernel == 1 else kernel // 2 + 1)  # rows below the centre are never read
    x = torch.randn(2, 6, 5, 4)
    with torch.no_grad():
        full = conv(x)
        for i in range(5):
            for j in range(4):
                torch.testing.assert_close(layer.step(x[:, :, i, j], i, j), full[:, :, i, j], rtol=0, atol=1e-5)


def test_incremental_plain_conv_once_its_input_is_stored():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 5, 3, padding=1, bias=False)
    layer = IncrementalConv2d(conv, 2, 3, 3)
    x = torch.randn(2, 4, 3, 3)
    for i in range(3):
        for j in range(3):
            layer.store(x[:, :, i, j], i, j)
    with torch.no_grad():
        full = F.conv2d(x, conv.weight, padding=1)
        torch.testing.assert_close(layer.step(x[:, :, 1, 1], 1, 1), full[:, :, 1, 1], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="same-padded"):
        IncrementalConv2d(torch.nn.Conv2d(4, 5, 3), 2, 3, 3)


def test_cached_sampling_refuses_another_ordering():
    model = make_model((1, 3, 3), 2)
    model.ordering = lambda: torch.arange(9).flip(0)
    with pytest.raises(ValueError, match="raster ordering"):
        model.sample(2)
