"""The VAE's options beyond the plain model, checked by properties that can fail: flow posteriors (exact
log-determinants, invertibility, autoregressive structure, normalized densities), the conditional VAE
(p(x | y) normalized for every y, labelled samples), the PixelCNN decoder (causality given z, exact
log p(x | z)), and bounds below log p(x) computed by quadrature over a 1- or 2-dimensional latent;
then the deterministic auto-encoder baseline.
"""

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

import genzoo
from ddp_worker import tiny_dataset
from genzoo.checkpoint import save_model
from genzoo.data.base import ImageSplit
from genzoo.evaluate import evaluate_bound, evaluate_model
from genzoo.models.latent.flows import Flow
from genzoo.nn.distributions import discrete_log_prob
from genzoo.nn.gaussian import standard_normal_log_prob

TINY = (1, 2, 2)
SMALL_PIXELCNN = {"channels": 4, "output_channels": 4, "num_blocks": 1, "first_kernel": 3}


def perturb(module, scale=0.5, seed=0):
    """Move a module away from its initialization (e.g. the zero last layer of a PixelCNN)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


def build(levels=2, shape=TINY, seed=0, scale=0.5, **options):
    torch.manual_seed(seed)
    options = {"latent": 1, "hidden": [8], **options}
    return perturb(genzoo.create("vae", image_shape=shape, levels=levels, **options), scale, seed + 1).eval()


def all_images(levels, shape=TINY):
    grid = torch.tensor(list(itertools.product(range(levels), repeat=math.prod(shape))))
    return grid.reshape(-1, *shape)


def latent_grid(dims, lo, hi, n):
    """Points (n**dims, dims) of a regular grid and log of the cell volume."""
    axis = torch.linspace(lo, hi, n, dtype=torch.float64)
    points = torch.cartesian_prod(*[axis] * dims).reshape(-1, dims)
    return points, dims * math.log((hi - lo) / (n - 1))


@torch.no_grad()
def exact_log_prob(model, x, y=None, lo=-9.0, hi=9.0, n=None):
    """log p(x [| y]) in nats by quadrature over z (1 or 2 dimensions; one stochastic layer), float64."""
    z, log_cell = latent_grid(model.latent, lo, hi, n or (1201 if model.latent == 1 else 241))
    g, m = len(z), len(x)
    zz, xx = z.float().repeat_interleave(m, 0), x.repeat(g, 1, 1, 1)
    yy = None if y is None else y.repeat(g)
    log_px = discrete_log_prob(model.decode(zz, yy, xx), xx, model.levels).flatten(1).sum(1).reshape(g, m)
    return torch.logsumexp(log_px.double() + standard_normal_log_prob(z)[:, None], 0) + log_cell


def check_bounds(model, x, y=None, reps=100):
    """ELBO < k-sample estimates < log p(x), averaged over repeated draws, per the exact quadrature."""
    exact = exact_log_prob(model, x, y).float()
    g = torch.Generator().manual_seed(0)
    many, labels = x.repeat(reps, 1, 1, 1), None if y is None else y.repeat(reps)
    with torch.no_grad():
        mean = lambda values: values.reshape(reps, -1).mean(0)  # noqa: E731 (per image, over repeated draws)
        elbo = mean(model.elbo(many, labels, generator=g))
        k10 = mean(model.log_prob_estimate(many, labels, num_samples=10, generator=g))
        k500 = (
            model.log_prob_estimate(
                x.repeat(4, 1, 1, 1), None if y is None else y.repeat(4), num_samples=500, generator=g
            )
            .reshape(4, -1)
            .mean(0)
        )
    gap = (exact - elbo).mean()
    assert gap > 0.05, "the test model's posterior should be imperfect"
    assert elbo.mean() + 0.2 * gap < k10.mean() < k500.mean() <= exact.mean() + 0.01
    assert (exact - k500).mean() < 0.7 * gap  # more samples close most of the gap
    return exact


# flows


def flow_and_context(kind, latent=3, steps=3, seed=0):
    torch.manual_seed(seed)
    flow = perturb(Flow(kind, latent, steps, [6, 6]), 0.4, seed).double()
    return flow, torch.randn(flow.context_features, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["iaf", "planar"])
def test_flow_log_det_is_the_jacobian_log_det(kind):
    for seed in range(3):
        flow, h = flow_and_context(kind, seed=seed)
        z = torch.randn(3, dtype=torch.float64)
        _, log_det = flow(z, h)
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v, h)[0], z)  # noqa: B023 (called at once)
        sign, expected = torch.linalg.slogdet(jacobian)
        assert sign > 0 and log_det.item() == pytest.approx(expected.item(), abs=1e-9)


@pytest.mark.parametrize("kind", ["iaf", "planar"])
def test_flow_is_invertible_and_broadcasts_over_samples(kind):
    flow, _ = flow_and_context(kind)
    h = torch.randn(5, flow.context_features, dtype=torch.float64) * 2  # one context per example
    z = torch.randn(4, 5, 3, dtype=torch.float64) * 3  # 4 samples of 5 examples
    out, log_det = flow(z, h)
    assert out.shape == z.shape and log_det.shape == (4, 5)
    torch.testing.assert_close(flow.inverse(out, h), z, atol=1e-9, rtol=0)
    single, single_log_det = flow(z[2, 1], h[1])
    torch.testing.assert_close(single, out[2, 1]) and torch.testing.assert_close(single_log_det, log_det[2, 1])


def test_iaf_steps_are_autoregressive_in_alternating_orders():
    flow, h = flow_and_context("iaf", latent=4, steps=2)
    z = torch.randn(4, dtype=torch.float64)
    for k, step in enumerate(flow.steps):
        jacobian = torch.autograd.functional.jacobian(lambda v: step(v, h)[0], z)  # noqa: B023
        strict = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)  # output i on input j > i
        future = strict if k % 2 == 0 else strict.t()
        assert torch.all(jacobian[future] == 0), f"step {k} sees later dimensions"
        assert torch.all(jacobian[~future & ~torch.eye(4, dtype=torch.bool)] != 0), "connections missing"
    full = torch.autograd.functional.jacobian(lambda v: flow(v, h)[0], z)
    assert torch.all(full != 0)  # two steps in opposite orders mix every dimension


@pytest.mark.parametrize("kind", ["iaf", "planar"])
def test_flow_density_integrates_to_one(kind):
    """exp(log N(f^-1(z)) - log|det|) summed over a 2-D grid: the change of variables is right end to end."""
    z, log_cell = latent_grid(2, -12.0, 12.0, 241)
    for seed in range(3):
        flow, h = flow_and_context(kind, latent=2, steps=2, seed=seed)
        h = h * 0.5  # a context this size keeps the density smooth enough for the grid to resolve
        with torch.no_grad():
            z0 = flow.inverse(z, h)
            _, log_det = flow(z0, h)
        log_q = standard_normal_log_prob(z0).double() - log_det
        assert torch.logsumexp(log_q + log_cell, 0).exp().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("flow", ["iaf", "planar"])
def test_flow_posterior_bounds_are_ordered_below_log_p(flow):
    model = build(2, latent=2, flow=flow, flow_steps=2, flow_hidden=[8])
    x = all_images(2)
    exact = exact_log_prob(model, x)
    assert exact.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    check_bounds(model, x)
    reconstruction, kl = model.elbo_terms(x)
    assert torch.isfinite(kl).all()  # a Monte-Carlo KL: one draw can be negative, its mean cannot


def test_flow_is_the_proposal_and_survives_save_load(tmp_path):
    plain = build(3, latent=2)
    flowed = build(3, latent=2, flow="iaf", flow_steps=1, flow_hidden=[8])
    assert flowed.config["flow"] == "iaf" and sum(p.numel() for p in flowed.flow.parameters()) > 0
    x = all_images(3)[::7]
    # the flow's log-det enters the estimate: switching the flow off changes the numbers
    a = flowed.log_prob_estimate(x, num_samples=20, generator=torch.Generator().manual_seed(0))
    flowed.flow, saved = None, flowed.flow
    b = flowed.log_prob_estimate(x, num_samples=20, generator=torch.Generator().manual_seed(0))
    flowed.flow = saved
    assert not torch.allclose(a, b) and torch.isfinite(plain.loss(x))
    save_model(tmp_path / "model.safetensors", flowed)
    loaded = genzoo.load(tmp_path)
    c = loaded.log_prob_estimate(x, num_samples=20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, c) and torch.equal(flowed.code(x), loaded.code(x))


# the conditional VAE


def test_conditional_likelihood_is_normalized_for_every_label_and_bounded():
    model = build(2, num_classes=3)
    assert model.conditional and model.num_classes == 3 and model.config["num_classes"] == 3
    x = all_images(2)
    per_label = []
    for c in range(3):
        y = torch.full((len(x),), c)
        log_p = check_bounds(model, x, y, reps=60)
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
        per_label.append(log_p)
    assert (per_label[0] - per_label[1]).abs().max() > 0.05  # the label matters


def test_conditional_samples_follow_p_x_given_y_and_labels_are_validated():
    model = build(2, num_classes=2, scale=1.0)
    x = all_images(2)
    codes = lambda s: (s.reshape(len(s), -1) * 2 ** torch.arange(3, -1, -1)).sum(1)  # noqa: E731
    for c in range(2):
        probs = exact_log_prob(model, x, torch.full((16,), c)).exp()
        samples = model.sample(20000, c, generator=torch.Generator().manual_seed(c))
        counts = torch.bincount(codes(samples), minlength=16).double()
        assert chisquare(counts.numpy(), (probs / probs.sum() * 20000).numpy()).pvalue > 1e-3
    mixed = model.sample(4, torch.tensor([0, 1, 1, 0]))
    assert mixed.shape == (4, *TINY)
    for bad in (None, torch.tensor([0, 2]), torch.tensor([0, 1, 1])):
        with pytest.raises(ValueError, match="class-conditional|labels must be"):
            model.sample(2, bad)
    with pytest.raises(ValueError, match="class-conditional"):
        model.elbo(x)


def test_conditional_conv_model_and_evaluation_with_labels():
    torch.manual_seed(0)
    model = genzoo.create(
        "iwae",
        image_shape=(1, 5, 6),
        levels=4,
        latent=3,
        hidden=[4, 4],
        architecture="conv",
        num_classes=10,
        flow="planar",
        stochastic_layers=2,
        top_latent=2,
        top_hidden=[8],
    )
    images, labels = torch.randint(0, 4, (23, 1, 5, 6)), torch.randint(0, 10, (23,))
    model.train()
    loss = model.loss(images, labels)
    loss.backward()
    assert torch.isfinite(loss) and model.encoder.net.convs[0].weight.grad.abs().sum() > 0
    result = evaluate_bound(model, ImageSplit(images.to(torch.uint8), labels), num_samples=5, batch_size=10)
    assert result["n"] == 23 and result["elbo_nats"] > result["nll_estimate_nats"] - 1.0
    assert model.sample(3, 7).shape == (3, 1, 5, 6)


# the PixelCNN decoder


def test_pixelcnn_decoder_is_causal_given_z_and_uses_z():
    torch.manual_seed(0)
    model = perturb(
        genzoo.create(
            "vae",
            image_shape=(3, 3, 3),
            levels=4,
            latent=2,
            hidden=[8],
            decoder="pixelcnn",
            decoder_options={"channels": 12, "output_channels": 6, "num_blocks": 2},
        )
    ).double()
    pixelcnn, d = model.decoder.pixelcnn, 27
    z = torch.randn(1, 2, dtype=torch.float64)
    condition = model.decoder.condition(z)
    order = pixelcnn.ordering()
    total = torch.zeros(d, d, dtype=torch.float64)
    for seed in range(3):
        u = torch.rand(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
        jac = torch.autograd.functional.jacobian(
            lambda v: pixelcnn.network(v.reshape(1, 3, 3, 3), condition).reshape(d, -1), u
        )
        total += jac.abs().sum(1)
    total = total[order][:, order]  # rows: outputs, columns: inputs, both in generation order
    assert torch.all(total.triu() == 0), "an output sees its own or a later subpixel"
    earlier = torch.ones(d, d, dtype=torch.bool).tril(-1)
    assert (total[earlier] > 0).double().mean() > 0.8  # and does see earlier ones (bar dead ReLUs)
    u = torch.zeros(1, 3, 3, 3, dtype=torch.float64)
    dz = torch.autograd.functional.jacobian(lambda v: pixelcnn.network(u, model.decoder.condition(v)).reshape(d, -1), z)
    on_z = dz.abs().sum((1, 2, 3))
    assert on_z[order[0]] > 0 and (on_z > 0).double().mean() > 0.8  # the first subpixel too depends on z


@pytest.mark.parametrize("levels", [2, 3])
def test_pixelcnn_decoder_likelihood_sums_to_one_and_bounds_are_ordered(levels):
    model = build(levels, decoder="pixelcnn", decoder_options=SMALL_PIXELCNN)
    x = all_images(levels)
    assert exact_log_prob(model, x).exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    check_bounds(model, x)
    with pytest.raises(ValueError, match="pass x"):
        model.decode(torch.zeros(2, 1))


def test_pixelcnn_decoder_samples_follow_the_model():
    model = build(2, decoder="pixelcnn", decoder_options=SMALL_PIXELCNN, scale=1.0)
    probs = exact_log_prob(model, all_images(2)).exp()
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount((samples.reshape(20000, -1) * 2 ** torch.arange(3, -1, -1)).sum(1), minlength=16)
    assert chisquare(counts.double().numpy(), (probs / probs.sum() * 20000).numpy()).pvalue > 1e-3
    z = torch.randn(5, 1)
    assert torch.equal(model.decode_images(z, mean=True), model.decode_images(z, mean=True))


def test_bad_extension_options_are_clear_errors():
    for options, match in (
        ({"flow": "nope"}, "flow"),
        ({"decoder": "rnn"}, "decoder"),
        ({"flow": "iaf", "flow_steps": 0}, "flow_steps"),
        ({"num_classes": 0}, "num_classes"),
        ({"decoder": "pixelcnn", "decoder_options": {"channels": 3}}, "channels"),
    ):
        with pytest.raises(ValueError, match=match):
            genzoo.create("vae", image_shape=TINY, levels=2, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"flow": "iaf", "flow_hidden": [16]},
        {"flow": "planar"},
        {"num_classes": 3},
        {"decoder": "pixelcnn", "decoder_options": SMALL_PIXELCNN},
    ],
)
def test_training_raises_the_bound(options):
    images = tiny_dataset().train.images.long()
    labels = torch.arange(len(images)) % 3 if "num_classes" in options else None
    torch.manual_seed(0)
    model = genzoo.create("vae", image_shape=(1, 4, 4), levels=3, latent=2, hidden=[16], **options)
    bound = lambda: model.elbo(images, labels, generator=torch.Generator().manual_seed(0)).mean().item()  # noqa: E731
    before = bound()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        index = torch.randperm(len(images))[:32]
        loss = model.loss(images[index], None if labels is None else labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert bound() > before + 1.0


# the deterministic auto-encoder


def test_autoencoder_loss_evaluation_and_code_statistics(tmp_path):
    torch.manual_seed(0)
    model = genzoo.create("autoencoder", image_shape=(1, 4, 4), levels=3, latent=2, hidden=[16], code_momentum=0.25)
    assert not hasattr(model, "log_prob") and not hasattr(model, "log_prob_estimate")
    with pytest.raises(NotImplementedError, match="no prior"):
        model.sample(2)
    split = tiny_dataset().train
    images = split.images.long()
    model.eval()
    assert model.loss(images).item() == pytest.approx(-model.reconstruction_log_prob(images).mean().item())
    model.train().loss(images)
    assert int(model.code_batches) == 0  # only training steps track the codes: loss is pure
    model.train()
    batch_means = []
    for batch in images[:96].split(32):  # 3 batches < 1 / momentum: an exact running average
        batch_means.append(model.code(batch).mean(0))
        model.training_loss(batch, None, len(batch_means) - 1)
    torch.testing.assert_close(model.code_mean, torch.stack(batch_means).mean(0))
    model.eval()
    model.fit_codes(images)
    codes = model.code(images)
    torch.testing.assert_close(model.code_mean, codes.mean(0))
    torch.testing.assert_close(
        model.code_distribution().covariance_matrix,
        torch.cov(codes.t(), correction=0) + 1e-4 * torch.eye(2),
        atol=1e-5,
        rtol=1e-4,
    )
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 4, 4) and samples.max() < 3
    result = evaluate_model(model, split, batch_size=40)
    assert result["kind"] == "reconstruction" and result["n"] == 96
    assert result["reconstruction_nats"] == pytest.approx(
        -model.reconstruction_log_prob(images).mean().item(), rel=1e-5
    )
    save_model(tmp_path / "model.safetensors", model)
    loaded = genzoo.load(tmp_path)
    assert torch.equal(loaded.code_mean, model.code_mean) and int(loaded.code_batches) == int(model.code_batches)
