"""PixelCNN++ specifics: the discretized logistic mixture (normalization over any number of levels, the
joint RGB coupling of [1], stability, the sampler), the Bernoulli output for 2 levels, a Jacobian
causality check that catches planted leaks, the initial loss, and cached sampling: the raw output
computed pixel by pixel is the full pass's, and the samples are naive sampling's.
The generic properties (normalization of the model, causality by perturbation, ...) are in
test_autoregressive.py.

[1] Salimans et al., PixelCNN++, ICLR 2017.
"""

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

import genzoo
from genzoo.models.autoregressive import pixelcnn_pp
from genzoo.nn import logistic_mixture as dmol
from genzoo.nn.distributions import symmetric_inputs


def random_params(shape, k, generator, spread=3.0):
    return torch.randn((*shape, 3 * k), generator=generator) * spread


@pytest.mark.parametrize("levels", [3, 7, 256])
@pytest.mark.parametrize("k", [1, 4])
def test_mixture_sums_to_one_over_all_levels(levels, k):
    params = random_params((50,), k, torch.Generator().manual_seed(levels))
    x = torch.arange(levels)
    log_p = dmol.mixture_log_prob(params[:, None].expand(-1, levels, -1), x.expand(50, -1), levels)
    assert torch.isfinite(log_p).all()
    assert torch.allclose(torch.logsumexp(log_p.double(), 1).exp(), torch.ones(50, dtype=torch.float64), atol=1e-5)


def test_bins_sit_at_the_midpoints_between_levels():
    # 3 levels at -1, 0, 1; bin edges at -1/2 and 1/2. A sharp logistic at 0 puts all mass on level 1;
    # one centred on the edge -1/2 splits it evenly between levels 0 and 1 (tails go to the edge levels).
    x = torch.arange(3)
    for mean, expected in [(0.0, [0, 1, 0]), (-0.5, [0.5, 0.5, 0]), (1.7, [0, 0, 1]), (-9.0, [1, 0, 0])]:
        params = torch.tensor([0.0, mean, -7.0]).expand(3, 3)
        p = dmol.mixture_log_prob(params, x, 3).exp()
        assert torch.allclose(p, torch.tensor(expected, dtype=torch.float), atol=1e-4), (mean, p)


def reference_joint_log_prob(raw, x, levels, k):
    """log sum_k pi_k prod_c [F(v+h) - F(v-h)] as written in [1] (float64, no log-space tricks)."""
    raw, v = raw.double(), x.double() * 2 / (levels - 1) - 1
    logits, mu = raw[:k], raw[k : 4 * k].reshape(3, k).clone()
    s = raw[4 * k : 7 * k].reshape(3, k).clamp(dmol.LOG_SCALE_MIN, dmol.LOG_SCALE_MAX).exp()
    a, b, c = torch.tanh(raw[7 * k :]).reshape(3, k)
    mu[1] = mu[1] + a * v[0]
    mu[2] = mu[2] + b * v[0] + c * v[1]
    h = 1.0 / (levels - 1)
    upper = torch.where(x[:, None] == levels - 1, 1.0, torch.sigmoid((v[:, None] + h - mu) / s))
    lower = torch.where(x[:, None] == 0, 0.0, torch.sigmoid((v[:, None] - h - mu) / s))
    return torch.logsumexp(torch.log_softmax(logits, 0) + torch.log(upper - lower).sum(0), 0)


@pytest.mark.parametrize("levels", [4, 9])
def test_rgb_chain_rule_is_the_joint_of_the_paper_and_sums_to_one(levels):
    k = 3
    raw = torch.randn(2, dmol.raw_size(3, k), 1, 1, generator=torch.Generator().manual_seed(0))
    raw[:, 4 * k : 7 * k] = raw[:, 4 * k : 7 * k].clamp(-2.5, 0)  # scales that make the float64 reference exact
    grid = torch.tensor(list(itertools.product(range(levels), repeat=3)))  # every (R, G, B)
    for i in range(2):
        x = grid[:, :, None, None]
        params = dmol.conditional_params(raw[i : i + 1].expand(len(grid), -1, -1, -1), x, levels, k)
        log_p = dmol.mixture_log_prob(params, x, levels).sum((1, 2, 3)).double()
        reference = torch.stack([reference_joint_log_prob(raw[i, :, 0, 0], xi, levels, k) for xi in grid])
        assert torch.allclose(log_p, reference, atol=1e-4)
        assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-5)


def test_coupling_reads_only_earlier_channels():
    raw = torch.randn(1, dmol.raw_size(3, 2), 1, 1)
    x = torch.tensor([1, 2, 3]).reshape(1, 3, 1, 1)
    base = dmol.conditional_params(raw, x, 5, 2)
    for channel in range(3):
        changed = x.clone()
        changed[0, channel] = 0
        out = dmol.conditional_params(raw, changed, 5, 2)
        assert torch.equal(out[:, : channel + 1], base[:, : channel + 1])
        assert channel == 2 or not torch.equal(out[:, channel + 1 :], base[:, channel + 1 :])


def test_extreme_parameters_stay_finite():
    levels, k = 256, 3
    values = [-1e30, -1e4, -50.0, -7.5, 0.0, 1e-3, 50.0, 1e4, 1e30]
    grid = torch.tensor(list(itertools.product(values, repeat=3)))  # (logit, mean, log-scale) per component
    params = torch.cat(
        [
            grid[:, :1].repeat(1, k) * torch.tensor([1.0, 0.0, -1.0]),
            grid[:, 1:2].repeat(1, k),
            grid[:, 2:].repeat(1, k),
        ],
        1,
    ).requires_grad_()
    for x in (0, 1, 127, 254, 255):
        log_p = dmol.mixture_log_prob(params, torch.full((len(grid),), x), levels)
        assert torch.isfinite(log_p).all() and (log_p <= 1e-6).all()
        (grad,) = torch.autograd.grad(log_p.sum(), params)
        assert torch.isfinite(grad).all()
    draws = dmol.mixture_sample(params.detach(), levels, torch.Generator().manual_seed(0))
    assert draws.min() >= 0 and draws.max() < levels
    sane = (grid.abs() < 1e29).all(1)  # with finite-looking parameters the levels still sum to one
    x = torch.arange(levels)
    kept = params.detach()[sane][:, None].expand(-1, levels, -1)
    log_p = dmol.mixture_log_prob(kept, x.expand(len(kept), -1), levels)
    assert torch.allclose(torch.logsumexp(log_p.double(), 1).exp(), torch.ones(1, dtype=torch.float64), atol=1e-4)


def test_sampler_follows_the_mixture_and_uses_documented_randomness():
    levels, n = 6, 30000
    params = torch.tensor([0.3, -1.0, 0.5, -0.6, 0.2, 0.9, -1.5, -2.0, -0.7])
    generator = torch.Generator().manual_seed(0)
    draws = dmol.mixture_sample(params.expand(n, -1), levels, generator)
    probs = dmol.mixture_log_prob(params.expand(levels, -1), torch.arange(levels), levels).double().exp()
    expected = probs / probs.sum() * n
    assert chisquare(torch.bincount(draws, minlength=levels).double().numpy(), expected.numpy()).pvalue > 1e-3
    reference = torch.Generator().manual_seed(0)
    torch.rand((n, 2), generator=reference)  # exactly one rand((..., 2)) per call
    assert torch.equal(generator.get_state(), reference.get_state())


def make_model(shape, levels, seed=0, noise=0.5, **options):
    torch.manual_seed(seed)
    options = {"channels": 8, "num_resnet": 1, "num_mixtures": 2, "num_resolutions": 2, **options}
    model = genzoo.create("pixelcnn++", shape, levels, **options)
    with torch.no_grad():  # leave the zero initialization of the output layer behind
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    return model.eval()


def test_two_levels_use_a_bernoulli_output():
    model = make_model((3, 1, 2), 2)
    assert model.output.out_channels == 3 + 3  # one logit per channel + the R->G, R->B, G->B couplings
    x = torch.tensor(list(itertools.product(range(2), repeat=6))).reshape(-1, 3, 1, 2)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == x.shape
        assert torch.allclose(
            model.pixel_log_prob(logits, x), -F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none")
        )
        assert torch.logsumexp(model.log_prob(x).double(), 0).exp().item() == pytest.approx(1.0, abs=1e-5)


def test_rgb_samples_follow_the_joint():
    model = make_model((3, 1, 1), 4, num_mixtures=3)
    images = torch.tensor(list(itertools.product(range(4), repeat=3))).reshape(-1, 3, 1, 1)
    with torch.no_grad():
        probs = model.log_prob(images).double().exp()
    n = 20000
    samples = model.sample(n, generator=torch.Generator().manual_seed(0)).reshape(n, 3)
    counts = torch.bincount((samples * torch.tensor([16, 4, 1])).sum(1), minlength=64).double()
    keep = probs * n > 5
    observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    expected = torch.cat([probs[keep] * n, (probs[~keep] * n).sum(0, keepdim=True)])
    assert chisquare(observed.numpy(), expected.numpy() * observed.sum().item() / expected.sum().item()).pvalue > 1e-3


def dependence(model) -> torch.Tensor:
    """(P, P) over pixels in raster order: does the raw output at pixel i depend on input pixel j?"""
    net = copy.deepcopy(model).double()
    c, h, w = net.image_shape
    v = torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    v.requires_grad_()
    out = net.network(v)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dep = torch.zeros(h * w, h * w, dtype=torch.bool)
    for i in range(h * w):
        (grad,) = torch.autograd.grad((out * weights)[0, :, i // w, i % w].sum(), v, retain_graph=True)
        dep[i] = grad[0].abs().sum(0).flatten() > 0
    return dep


def sees_the_future(model) -> bool:
    return bool(torch.triu(dependence(model)).any())  # diagonal included: a pixel may not see itself


def test_jacobian_every_pixel_sees_exactly_the_pixels_before_it():
    model = make_model((3, 6, 5), 5, num_resnet=2)
    dep = dependence(model)
    assert torch.equal(dep, torch.tril(torch.ones_like(dep), -1))  # no leak, and no blind spot either


@pytest.mark.parametrize(
    "leak",
    ["u stream not shifted down", "ul stream not shifted right", "ul kernel reaching right", "u kernel reaching down"],
)
def test_the_causality_check_catches_a_planted_leak(leak, monkeypatch):
    model = make_model((1, 6, 5), 3)
    assert not sees_the_future(model)
    if leak == "u stream not shifted down":
        model.input_u.register_forward_hook(lambda conv, v, out: F.pad(out, (0, 0, 0, 1))[:, :, 1:])  # shifted up
    elif leak == "ul stream not shifted right":
        monkeypatch.setattr(pixelcnn_pp, "right_shift", lambda t: t)
    elif leak == "ul kernel reaching right":
        model.down[1][0][1].conv_in.pad = (0, 1, 1, 0)
    else:
        model.up[0][0][0].conv_out.pad = (1, 1, 0, 1)
    assert sees_the_future(model)


@pytest.mark.parametrize("shape,levels", [((1, 28, 28), 2), ((3, 8, 8), 256)])
def test_initial_loss_is_near_uniform(shape, levels):
    torch.manual_seed(0)
    model = genzoo.create("pixelcnn++", shape, levels).eval()  # default architecture
    x = torch.randint(0, levels, (2, *shape))
    uniform = math.prod(shape) * math.log(levels)
    with torch.no_grad():
        loss = model.loss(x).item()
        features = model.network(torch.rand(2, *shape) * 2 - 1)
        model.output.reset_parameters()
        random_head = model.loss(x).item()
    assert loss <= 1.1 * uniform
    if levels == 2:
        assert loss == pytest.approx(uniform, rel=1e-6)
    assert torch.isfinite(features).all()
    assert random_head < 1.5 * uniform  # the streams stay O(1): a random head is still near uniform


STEPPING_CASES = [  # odd sizes (stride 2 rounds up), RGB, 1 to 3 resolutions, 2 and more levels
    pytest.param((1, 5, 4), 2, {}, id="binary-1x5x4"),
    pytest.param((3, 4, 5), 256, {"num_resolutions": 3}, id="rgb-3x4x5-L256-3res"),
    pytest.param((3, 3, 3), 5, {"weight_norm": True, "num_resolutions": 1}, id="rgb-3x3x3-L5-weightnorm-1res"),
    pytest.param((1, 7, 7), 3, {"num_resolutions": 3, "num_resnet": 2}, id="1x7x7-L3-3res-2resnets"),
    pytest.param((3, 5, 6), 2, {"num_resolutions": 3}, id="binary-rgb-3x5x6-3res"),
    pytest.param((1, 1, 1), 4, {"num_resolutions": 3}, id="1x1x1-L4"),
]


@pytest.mark.parametrize("shape,levels,options", STEPPING_CASES)
def test_raw_output_computed_pixel_by_pixel_is_the_full_pass(shape, levels, options):
    model = make_model(shape, levels, noise=0.1, **options)  # activations O(1), as in a trained model
    x = torch.randint(0, levels, (3, *shape), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = model.network(symmetric_inputs(x, levels))
        steps = list(model.raw_by_pixel(x))
    assert [(r, c) for r, c, _ in steps] == list(itertools.product(range(shape[1]), range(shape[2])))
    assert full.abs().max() > 0.1
    for r, c, raw in steps:
        assert raw.shape == (3, full.shape[1], 1, 1)
        assert torch.allclose(raw[:, :, 0, 0], full[:, :, r, c], rtol=1e-5, atol=1e-5), (r, c)


@pytest.mark.parametrize("shape,levels,options", STEPPING_CASES)
def test_cached_sampling_reproduces_naive_sampling(shape, levels, options):
    model = make_model(shape, levels, **options)
    fast = model.sample(4, generator=torch.Generator().manual_seed(7))
    slow = model.sample(4, generator=torch.Generator().manual_seed(7), naive=True)
    assert torch.equal(fast, slow)
    x = torch.randint(0, levels, (4, *shape), generator=torch.Generator().manual_seed(8))
    known = torch.rand(x.shape, generator=torch.Generator().manual_seed(9)) < 0.5
    known[:, :, 0, 0] = True  # a pixel known in every image: skipped
    fast = model.sample(4, x=x, known=known, generator=torch.Generator().manual_seed(7))
    slow = model.sample(4, x=x, known=known, generator=torch.Generator().manual_seed(7), naive=True)
    assert torch.equal(fast, slow) and torch.equal(fast[known], x[known])


def test_odd_and_tiny_sizes_and_bad_options():
    for shape in [(1, 1, 1), (3, 3, 7), (1, 9, 2)]:
        model = make_model(shape, 4, num_resolutions=3)
        assert model(torch.zeros(2, *shape, dtype=torch.long)).shape == (2, *shape, 3 * 2)
    with pytest.raises(ValueError, match="num_resolutions"):
        genzoo.create("pixelcnn++", (1, 4, 4), 2, num_resolutions=0)
    with pytest.raises(ValueError, match="dropout"):
        genzoo.create("pixelcnn++", (1, 4, 4), 2, dropout=1.0)
    with pytest.raises(ValueError, match="channels"):
        genzoo.create("pixelcnn++", (1, 4, 4), 2, channels=0)
