"""Gated PixelCNN: the receptive field has no blind spot and no leak (Jacobian), RGB order, class
conditioning, a sane initial loss, and cached sampling that draws exactly what naive sampling draws."""

import math

import pytest
import torch
from scipy.stats import chisquare

import genzoo
from genzoo.nn import gated
from tiny_models import all_images


def build(shape, levels, seed=0, **options):
    torch.manual_seed(seed)
    model = genzoo.create("gated-pixelcnn", image_shape=shape, levels=levels, **options)
    with torch.no_grad():  # away from the initialization (zero label embedding) so every path matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def dependencies(model, y=None, tries=3):
    """D[i, j]: the output at ordering step i depends on the input subpixel at step j: the autograd
    Jacobian of the network on float inputs is nonzero for one of a few random inputs (one input alone
    can hide a dependency behind ReLUs that are off)."""
    shape = model.image_shape
    d = math.prod(shape)
    generator = torch.Generator().manual_seed(0)

    def params(t):
        out = model.network(t, y)
        return out.unsqueeze(-1) if out.dim() == 4 else out  # (1, C, H, W, K)

    dep = torch.zeros(d, d, dtype=torch.bool)
    for _ in range(tries):
        inputs = torch.rand(1, *shape, generator=generator) * 2 - 1
        jac = torch.autograd.functional.jacobian(params, inputs)  # (1, C, H, W, K, 1, C, H, W)
        dep |= jac.reshape(d, -1, d).abs().sum(1) != 0
    order = model.ordering()
    return dep[order][:, order]


def receptive_field(shape, kernel_size, num_layers):
    """The dependencies the design promises: earlier channels of the pixel, L*(k//2) pixels to the
    left, and L*(k//2)+1 rows above spanning c - L*(k//2) .. c + L*(k//2); in ordering-step indices."""
    channels, height, width = shape
    reach = num_layers * (kernel_size // 2)
    steps = [(r, c, ch) for r in range(height) for c in range(width) for ch in range(channels)]
    expected = torch.zeros(len(steps), len(steps), dtype=torch.bool)
    for i, (r, c, ch) in enumerate(steps):
        for j, (r2, c2, ch2) in enumerate(steps):
            expected[i, j] = (
                ((r2, c2) == (r, c) and ch2 < ch)
                or (r2 == r and c - reach <= c2 < c)
                or (r - 1 - reach <= r2 < r and abs(c2 - c) <= reach)
            )
    return expected


def problems(dep, expected):
    """'leak' when an output sees a subpixel at or after it (or outside the promised field), 'blind spot'
    when it misses an earlier one inside the field."""
    found = []
    if (dep & ~expected).any() or dep.triu().any():
        found.append("leak")
    if (expected & ~dep).any():
        found.append("blind spot")
    return found


def step(shape, r, c, ch=0):
    return (r * shape[2] + c) * shape[0] + ch


# (a) no blind spot ------------------------------------------------------------------------------


def test_receptive_field_has_exactly_the_promised_shape():
    shape, k, layers = (1, 7, 7), 3, 2
    model = build(shape, 2, channels=8, num_layers=layers, kernel_size=k)
    dep = dependencies(model)
    assert problems(dep, receptive_field(shape, k, layers)) == []
    here = step(shape, 3, 3)
    for r, c in [(3, 2), (2, 3), (2, 4), (2, 5), (1, 5), (0, 1), (0, 5)]:  # above-right: the PixelCNN blind spot
        assert dep[here, step(shape, r, c)], (r, c)
    for r, c in [(3, 3), (3, 4), (4, 0), (6, 6), (2, 6), (3, 0)]:  # itself, the future; out of reach
        assert not dep[here, step(shape, r, c)], (r, c)


def test_enough_layers_see_every_earlier_pixel_and_nothing_else():
    model = build((1, 7, 7), 2, channels=8, num_layers=3, kernel_size=5)  # reach 6: the whole image
    dep = dependencies(model)
    assert torch.equal(dep, torch.ones_like(dep).tril(-1))


# (b) the checker catches a broken model -------------------------------------------------------------


def test_unshifted_vertical_stack_is_caught_as_a_leak(monkeypatch):
    monkeypatch.setattr(gated, "shift_down", lambda v: v)  # row r would see row r, right of the pixel too
    shape = (1, 7, 7)
    model = build(shape, 2, channels=8, num_layers=2, kernel_size=3)
    assert "leak" in problems(dependencies(model), receptive_field(shape, 3, 2))


def test_mask_b_in_the_first_layer_is_caught_as_a_leak():
    shape = (1, 7, 7)
    model = build(shape, 2, channels=8, num_layers=2, kernel_size=3)
    model.layers[0].horizontal.mask.fill_(1.0)  # the current pixel reaches its own prediction
    assert "leak" in problems(dependencies(model), receptive_field(shape, 3, 2))


def test_vertical_kernels_without_their_right_half_are_caught_as_a_blind_spot():
    shape = (1, 7, 7)
    model = build(shape, 2, channels=8, num_layers=2, kernel_size=3)
    with torch.no_grad():
        for layer in model.layers:  # like the plain PixelCNN: nothing from above-right of the pixel
            layer.vertical.weight[..., 2:] = 0
    dep = dependencies(model)
    assert problems(dep, receptive_field(shape, 3, 2)) == ["blind spot"]
    assert not dep[step(shape, 3, 3), step(shape, 2, 4)]


# (c) RGB ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,layers", [((3, 5, 5), 2), ((3, 4, 4), 3)])
def test_rgb_order_within_and_across_pixels(shape, layers):
    model = build(shape, 4, channels=24, num_layers=layers, kernel_size=3)  # 8 units a colour: some ReLUs on
    dep = dependencies(model, tries=4)
    assert problems(dep, receptive_field(shape, 3, layers)) == []
    r_, g_, b_ = (step(shape, 2, 2, ch) for ch in range(3))
    assert not dep[r_, [r_, g_, b_]].any() and dep[g_, r_] and not dep[g_, [g_, b_]].any()
    assert dep[b_, r_] and dep[b_, g_] and not dep[b_, b_]
    assert dep[r_, step(shape, 2, 1, 2)] and dep[r_, step(shape, 1, 3, 2)]  # all channels of earlier pixels


def test_channels_must_divide_into_colour_groups():
    with pytest.raises(ValueError, match="multiple of the 3 image channels"):
        genzoo.create("gated-pixelcnn", image_shape=(3, 4, 4), levels=4, channels=8)
    with pytest.raises(ValueError, match="kernel_size"):
        genzoo.create("gated-pixelcnn", image_shape=(1, 4, 4), levels=2, kernel_size=4)


# (d) class-conditional ----------------------------------------------------------------------------------


def test_class_conditional_model_is_normalized_per_class_and_uses_labels():
    shape, classes = (1, 2, 3), 3
    model = build(shape, 2, channels=8, num_layers=2, kernel_size=3, num_classes=classes)
    assert model.conditional
    images = all_images(shape, 2)
    with torch.no_grad():
        log_p = torch.stack([model.log_prob(images, torch.full((len(images),), k)) for k in range(classes)])
    assert torch.logsumexp(log_p.double(), 1).exp().tolist() == pytest.approx([1.0] * classes, abs=1e-4)
    assert (log_p[0] - log_p[1]).abs().max() > 1e-2
    dep = dependencies(model, y=torch.tensor([1]))
    assert problems(dep, receptive_field(shape, 3, 2)) == []
    with pytest.raises(ValueError, match="class-conditional"):
        model.log_prob(images)

    samples = model.sample(20000, y=1, generator=torch.Generator().manual_seed(0))
    codes = (samples.reshape(len(samples), -1) * 2 ** torch.arange(5, -1, -1)).sum(1)
    counts = torch.bincount(codes, minlength=len(images)).double()
    expected = log_p[1].double().exp() * len(samples)
    assert chisquare(counts.numpy(), (expected / expected.sum() * len(samples)).numpy()).pvalue > 1e-3

    assert model.sample(4, y=torch.tensor([0, 1, 2, 0])).shape == (4, *shape)
    for bad in [None, 3, -1, torch.tensor([0, 1])]:
        with pytest.raises(ValueError):
            model.sample(4, y=bad)


# (e) initial loss -----------------------------------------------------------------------------------------


def test_initial_loss_is_near_uniform_on_binarized_mnist_size():
    torch.manual_seed(0)
    model = genzoo.create("gated-pixelcnn", image_shape=(1, 28, 28), levels=2)
    x = torch.randint(0, 2, (2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for batch in (x, torch.zeros_like(x), torch.ones_like(x)):
            assert model.loss(batch).item() <= 1.1 * 784 * math.log(2)


# cached sampling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,levels,options",
    [
        ((1, 6, 6), 2, {"channels": 8, "num_layers": 3, "kernel_size": 3}),
        ((3, 4, 4), 4, {"channels": 6, "num_layers": 2, "kernel_size": 3}),
        ((1, 5, 5), 2, {"channels": 8, "num_layers": 2, "kernel_size": 5, "num_classes": 4}),
    ],
    ids=["binary", "rgb-4-levels", "class-conditional"],
)
def test_cached_sampling_draws_exactly_what_naive_sampling_draws(shape, levels, options):
    model = build(shape, levels, **options)
    assert model.has_cached_sampling
    y = torch.arange(8) % 4 if "num_classes" in options else None
    cached = model.sample(8, y=y, generator=torch.Generator().manual_seed(7))
    naive = model.sample(8, y=y, generator=torch.Generator().manual_seed(7), naive=True)
    assert torch.equal(cached, naive)


@pytest.mark.parametrize("shared", [True, False], ids=["mask-shared-by-the-batch", "mask-per-image"])
def test_cached_completion_matches_naive(shared):
    shape = (3, 4, 4)
    model = build(shape, 4, channels=6, num_layers=2, kernel_size=3)
    generator = torch.Generator().manual_seed(3)
    x = torch.randint(0, 4, (6, *shape), generator=generator)
    known = torch.rand((1 if shared else 6, *shape), generator=generator) < 0.5
    known[:, :, :2] = True  # a kept top half, then scattered known subpixels (whole pixels sometimes)
    known = known.expand_as(x)
    cached = model.sample(6, x=x, known=known, generator=torch.Generator().manual_seed(8))
    naive = model.sample(6, x=x, known=known, generator=torch.Generator().manual_seed(8), naive=True)
    assert torch.equal(cached, naive)
    assert torch.equal(cached[known], x[known])
