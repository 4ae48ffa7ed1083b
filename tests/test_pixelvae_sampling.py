"""Cached sampling of the VAE's PixelCNN decoder: the PixelCNN's cached sampler run with the condition m(z)
gives the same images as one full decoder pass per subpixel, for the same generator (draws and mean
levels), and at every step the logits of a full pass. Images are small, so that a draw flipped by float
rounding between the full convolution and the per-position matmul (a ~1e-7 event per draw) does not
happen."""

import pytest
import torch

import genzoo
from genzoo.models.autoregressive import pixelcnn_sampling
from genzoo.nn.distributions import symmetric_inputs
from tiny_models import naive_and_cached_samples

BATCH = 8
CASES = [
    pytest.param((1, 6, 6), 2, "mlp", id="binary-1x6x6-mlp"),
    pytest.param((3, 4, 4), 4, "mlp", id="rgb-3x4x4-L4-mlp"),
    pytest.param((1, 8, 8), 3, "conv", id="1x8x8-L3-conv"),
]


def make_vae(shape, levels, architecture="mlp", **options):
    torch.manual_seed(0)
    pixelcnn = {"channels": 12, "output_channels": 6, "num_blocks": 2, "first_kernel": 5}
    model = genzoo.create(
        "vae",
        image_shape=shape,
        levels=levels,
        latent=3,
        hidden=[8, 8],
        architecture=architecture,
        decoder="pixelcnn",
        decoder_options=pixelcnn,
        **options,
    )
    with torch.no_grad():  # a random last layer (it starts at zero) and larger weights in the PixelCNN; m(z)
        for p in model.decoder.pixelcnn.parameters():  # keeps its initialization (larger saturates the pixels)
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


@pytest.mark.parametrize("shape,levels,architecture", CASES)
def test_cached_samples_equal_naive_samples(shape, levels, architecture):
    model = make_vae(shape, levels, architecture)
    assert model.has_cached_sampling
    for seed in range(2):
        naive, cached = naive_and_cached_samples(model, BATCH, seed)
        assert naive.shape == (BATCH, *shape) and naive.dtype == torch.long
        assert torch.equal(naive, cached)
        assert 0 < naive.float().mean() < levels - 1  # not a degenerate all-equal image
    other = model.sample(BATCH, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(other, cached)  # the draws do follow the generator


def test_class_conditional_cached_samples_equal_naive_samples():
    model = make_vae((3, 4, 4), 4, num_classes=3)
    y = torch.arange(BATCH) % 3
    naive, cached = naive_and_cached_samples(model, BATCH, 1, y=y)
    assert cached.shape == (BATCH, 3, 4, 4)
    assert torch.equal(naive, cached)
    naive, cached = naive_and_cached_samples(model, BATCH, 1, y=torch.tensor(2))  # one label for all
    assert torch.equal(naive, cached)
    with pytest.raises(ValueError, match="labels"):
        model.sample(BATCH)


@pytest.mark.parametrize("levels", [2, 4])
def test_cached_mean_images_equal_naive_mean_images(levels):
    model = make_vae((3, 4, 4), levels) if levels > 2 else make_vae((1, 6, 6), levels)
    z = torch.randn(BATCH, 3, generator=torch.Generator().manual_seed(3))
    cached = model.decode_images(z, mean=True)
    assert torch.equal(cached, model.decode_images(z, mean=True, naive=True))
    assert cached.shape == (BATCH, *model.image_shape)
    drawn = model.decode_images(z, generator=torch.Generator().manual_seed(4))
    assert torch.equal(drawn, model.decode_images(z, generator=torch.Generator().manual_seed(4), naive=True))


@pytest.mark.parametrize("shape,levels,architecture", CASES[:2])
def test_logits_at_every_step_match_a_full_decoder_pass(shape, levels, architecture):
    model = make_vae(shape, levels, architecture)
    decoder = model.decoder
    z = torch.randn(BATCH, 3, generator=torch.Generator().manual_seed(5))
    x = torch.zeros((BATCH, *shape), dtype=torch.long)
    steps = []
    with torch.no_grad():
        condition = decoder.condition(z)
        out = pixelcnn_sampling.sample_cached(
            decoder.pixelcnn,
            x,
            torch.zeros_like(x, dtype=torch.bool),
            torch.Generator().manual_seed(6),
            condition=condition,
            on_step=lambda index, params: steps.append((index, params.clone())),
        )
        full = decoder(z, out)  # the logits of a subpixel depend only on the subpixels drawn before it
        unconditioned = decoder.pixelcnn.network(symmetric_inputs(out, levels))
    assert len(steps) == model.num_dims
    for (c, i, j), params in steps:
        torch.testing.assert_close(params, full[:, c, i, j], rtol=1e-5, atol=1e-5)  # logits up to ~40
    assert (full - unconditioned).abs().max() > 1e-2  # the condition does change the logits


def test_factorized_decoder_accepts_naive_and_has_no_cached_path():
    torch.manual_seed(0)
    model = genzoo.create("vae", image_shape=(1, 4, 4), levels=2, latent=2, hidden=[8]).eval()
    assert not model.has_cached_sampling
    naive, cached = naive_and_cached_samples(model, BATCH, 0)
    assert torch.equal(naive, cached) and cached.shape == (BATCH, 1, 4, 4)


def test_two_layer_iwae_with_pixelcnn_decoder_samples_both_ways():
    torch.manual_seed(0)
    model = genzoo.create(
        "iwae",
        image_shape=(1, 5, 5),
        levels=2,
        latent=2,
        hidden=[8],
        stochastic_layers=2,
        top_latent=2,
        top_hidden=[8],
        decoder="pixelcnn",
        decoder_options={"channels": 4, "output_channels": 4, "num_blocks": 1},
    ).eval()
    naive, cached = naive_and_cached_samples(model, BATCH, 0)
    assert cached.shape == (BATCH, 1, 5, 5) and torch.equal(naive, cached)
