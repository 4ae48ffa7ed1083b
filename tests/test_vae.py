"""Properties of the VAE and IWAE that can fail, checked on tiny models.

With a 1-dimensional latent (and a 1-dimensional z2 for two stochastic layers) log p(x) is computed by
quadrature on a dense grid, so the bounds can be compared with the truth: ELBO <= E[k-sample estimate],
rising with k, reaching log p(x); and samples can be tested against exp(log p(x)) with a chi-square test.
"""

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

import genzoo
from ddp_worker import tiny_dataset
from genzoo.checkpoint import save_model
from genzoo.evaluate import evaluate_bound, evaluate_model, latent_bounds
from genzoo.nn.distributions import discrete_log_prob
from genzoo.nn.gaussian import gaussian_log_prob, standard_normal_log_prob
from genzoo.train import TrainConfig, train

TINY = (1, 2, 2)
CASES = [
    pytest.param(2, 1, id="binary-1layer"),
    pytest.param(3, 1, id="L3-1layer"),
    pytest.param(2, 2, id="binary-2layers"),
]


def build(levels=2, layers=1, name="vae", seed=0, scale=0.5, shape=TINY, **options):
    """A tiny model moved away from its initialization, so that q is a poor but non-trivial posterior."""
    torch.manual_seed(seed)
    if layers == 2:
        options = {"top_latent": 1, "top_hidden": [8], **options}
    options = {"latent": 1, "hidden": [8], **options}
    model = genzoo.create(name, image_shape=shape, levels=levels, stochastic_layers=layers, **options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def all_images(levels, shape=TINY):
    grid = torch.tensor(list(itertools.product(range(levels), repeat=math.prod(shape))))
    return grid.reshape(-1, *shape)


def grid(lo, hi, n):
    return torch.linspace(lo, hi, n, dtype=torch.float64).unsqueeze(1), (hi - lo) / (n - 1)


@torch.no_grad()
def exact_log_prob(model, x):
    """log p(x) in nats by quadrature over z1 (and z2), float64."""
    z1, dz1 = grid(-40.0, 40.0, 4001)  # wide: p(z1 | z2) may have a large variance
    logits = model.decode(z1.float())
    logits = logits.unsqueeze(1).expand(len(z1), len(x), *logits.shape[1:])
    log_px = discrete_log_prob(logits, x.expand(len(z1), *x.shape), model.levels).flatten(2).sum(2).double()
    if model.layers == 1:
        log_pz1 = standard_normal_log_prob(z1).double()
    else:
        z2, dz2 = grid(-9.0, 9.0, 901)
        mu, log_var = model.top_decoder(z2.float())
        joint = standard_normal_log_prob(z2)[:, None] + gaussian_log_prob(
            z1[None].float(), mu[:, None], log_var[:, None]
        )
        log_pz1 = torch.logsumexp(joint.double(), 0) + math.log(dz2)
    return torch.logsumexp(log_px + log_pz1[:, None], 0) + math.log(dz1)


@pytest.mark.parametrize("levels,layers", CASES)
def test_quadrature_likelihood_sums_to_one(levels, layers):
    model = build(levels, layers)
    assert exact_log_prob(model, all_images(levels)).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("levels,layers", CASES)
def test_bounds_are_ordered_and_tighten_towards_log_p(levels, layers):
    model, x = build(levels, layers), all_images(levels)
    exact = exact_log_prob(model, x).float()
    g, reps = torch.Generator().manual_seed(0), 200
    many = x.repeat(reps, 1, 1, 1)
    with torch.no_grad():
        mean = lambda values: values.reshape(reps, -1).mean(0)  # noqa: E731 (per image, over repeated draws)
        elbo = mean(model.elbo(many, generator=g))
        k10 = mean(model.log_prob_estimate(many, num_samples=10, generator=g))
        k1000 = model.log_prob_estimate(x.repeat(4, 1, 1, 1), num_samples=1000, generator=g).reshape(4, -1).mean(0)
    gap = (exact - elbo).mean()
    assert gap > 0.1, "the test model's posterior should be imperfect"
    assert elbo.mean() + 0.2 * gap < k10.mean() < k1000.mean() <= exact.mean() + 0.01
    if levels == 2 and layers == 1:  # q is close enough here for k = 5000 to reach log p(x)
        k5000 = model.log_prob_estimate(x, num_samples=5000, generator=g)
        assert (k5000 - exact).mean().abs() < 0.02 and (k5000 - exact).abs().max() < 0.1


@pytest.mark.parametrize("levels,layers", CASES)
def test_mean_log_weight_is_the_elbo(levels, layers):
    """E_q[log w] = ELBO: the 1-sample estimate and the closed-form-KL ELBO agree in expectation."""
    model, x = build(levels, layers), all_images(levels).repeat(300, 1, 1, 1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        difference = model.log_prob_estimate(x, num_samples=1, generator=g) - model.elbo(x, generator=g)
    stderr = difference.std() / math.sqrt(difference.numel())
    assert abs(difference.mean()) < 4 * stderr + 1e-3


def test_samples_follow_the_models_distribution():
    model = build(2, 1, scale=1.0)
    probs = exact_log_prob(model, all_images(2)).exp()
    n = 20000
    samples = model.sample(n, generator=torch.Generator().manual_seed(0))
    codes = (samples.reshape(n, -1) * 2 ** torch.arange(3, -1, -1)).sum(1)
    counts = torch.bincount(codes, minlength=16).double()
    expected = probs / probs.sum() * n
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


def test_estimate_is_finite_and_independent_of_chunk_size():
    """k = 5000 with log weights far below exp's float range: a running log-sum-exp, same noise per chunk."""
    model = build(2, 1, scale=4.0, shape=(1, 4, 4))
    x = all_images(2, (1, 4, 4))[::64]
    with torch.no_grad():
        rough = model.log_prob_estimate(x, num_samples=4, generator=torch.Generator().manual_seed(0))
        x = x[rough.argsort()[:8]]  # the least likely images: exp(log w) is 0 in float32 for all of them
        assert model.log_prob_estimate(x, num_samples=4, generator=torch.Generator().manual_seed(0)).max() < -120
        runs = [
            model.log_prob_estimate(x, num_samples=5000, generator=torch.Generator().manual_seed(3), chunk_size=c)
            for c in (5000, 7, None)
        ]
    assert all(torch.isfinite(r).all() for r in runs)
    for other in runs[1:]:
        torch.testing.assert_close(other, runs[0], rtol=1e-5, atol=1e-3)


def test_iwae_with_one_sample_is_the_elbo_and_more_samples_tighten_it():
    vae = build(3, 1)
    iwae1, iwae5 = build(3, 1, name="iwae", num_samples=1), build(3, 1, name="iwae")
    assert iwae5.num_samples == 5 and iwae5.objective == "iwae"
    x = all_images(3)[::3]
    losses = {}
    for label, model in (("vae", vae), ("iwae1", iwae1), ("iwae5", iwae5)):
        model.train()
        torch.manual_seed(7)
        losses[label] = torch.stack([model.loss(x) for _ in range(100)]).detach()
    assert torch.equal(losses["vae"], losses["iwae1"])
    assert losses["iwae5"].mean() < losses["vae"].mean() - 0.1


def test_kl_warmup_weight_is_a_function_of_the_step_and_loss_is_pure():
    model = build(3, 1, kl_warmup_steps=4, beta=0.5).train()
    x = all_images(3)[:8]
    weights = [model.kl_weight(step) for step in range(6)]
    assert weights == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5, 0.5])
    for step, weight in enumerate(weights):
        torch.manual_seed(0)
        reconstruction, kl = model.elbo_terms(x)
        torch.manual_seed(0)
        loss = model.training_loss(x, None, step)
        assert loss.item() == pytest.approx(-(reconstruction - weight * kl).mean().item(), rel=1e-6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    first = model.loss(x)
    torch.manual_seed(0)
    assert torch.equal(model.loss(x), first)  # loss is pure: a second call changes nothing
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.manual_seed(0)
    assert first.item() == pytest.approx(-model.elbo(x).mean().item(), rel=1e-6)  # the plain bound


def _train(run_dir, steps, model=None, **overrides):
    config = TrainConfig(
        batch_size=16, lr=0.01, max_steps=steps, progress=False, device="cpu", log_every=5, **overrides
    )
    if model is None:
        torch.manual_seed(0)
        model = genzoo.create("vae", image_shape=(1, 4, 4), levels=3, latent=2, hidden=[16], kl_warmup_steps=20)
    return model, train(model, tiny_dataset(), run_dir, config)


def test_training_lowers_the_loss(tmp_path):
    data = tiny_dataset()
    x = data.train.images.long()
    torch.manual_seed(0)
    model = genzoo.create("iwae", image_shape=(1, 4, 4), levels=3, latent=2, hidden=[16])
    before = -model.elbo(x, generator=torch.Generator().manual_seed(0)).mean().item()
    _, result = _train(tmp_path, 60, model)
    after = -model.elbo(x, generator=torch.Generator().manual_seed(0)).mean().item()
    assert result["status"] == "finished" and after < before - 1.0


def test_resume_with_kl_warmup_is_exact(tmp_path):
    straight, _ = _train(tmp_path / "a", 8)
    _train(tmp_path / "b", 4)
    resumed, _ = _train(tmp_path / "b", 8)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("layers", [1, 2])
def test_save_load_round_trip(tmp_path, layers):
    model = build(3, layers, kl_warmup_steps=10)
    save_model(tmp_path / "model.safetensors", model)
    loaded = genzoo.load(tmp_path)
    assert loaded.config == model.config
    x = all_images(3)[::5]
    for method in ("elbo", "log_prob_estimate"):
        a, b = (getattr(m, method)(x, generator=torch.Generator().manual_seed(0)) for m in (model, loaded))
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "shape,levels,options",
    [
        ((1, 2, 3), 2, {"latent": 3, "hidden": [8]}),
        ((1, 8, 8), 17, {"architecture": "conv", "latent": 4, "hidden": [4, 8]}),
        ((3, 5, 7), 4, {"architecture": "conv", "latent": 4, "hidden": [4, 4, 4]}),
        ((1, 3, 3), 2, {"latent": 3, "hidden": [8], "stochastic_layers": 2, "top_latent": 2, "top_hidden": [8]}),
    ],
)
def test_sample_shapes_ranges_and_determinism(shape, levels, options):
    torch.manual_seed(0)
    model = genzoo.create("vae", image_shape=shape, levels=levels, **options)
    out = model.sample(50, generator=torch.Generator().manual_seed(1))
    assert out.shape == (50, *shape) and out.dtype == torch.long
    assert out.min() >= 0 and out.max() < levels and len(out.unique()) > 1
    assert torch.equal(out, model.sample(50, generator=torch.Generator().manual_seed(1)))
    x = torch.randint(0, levels, (3, *shape))
    assert torch.isfinite(model.loss(x)) and model.log_prob_estimate(x, num_samples=3).shape == (3,)


def test_evaluate_bound_scores_every_image():
    model = build(3, 1, shape=(1, 3, 3))
    split = tiny_dataset(n=148, shape=(1, 3, 3)).train
    split.images = split.images[:37]
    state = torch.random.get_rng_state()
    result = evaluate_bound(model, split, num_samples=50, batch_size=10)
    assert torch.equal(state, torch.random.get_rng_state())
    assert result["n"] == 37 and result["k"] == 50
    assert result["elbo_nats"] > result["nll_estimate_nats"] > 0 and result["nll_estimate_nats_stderr"] > 0
    assert result["elbo_nats"] == pytest.approx(result["reconstruction_nats"] + result["kl_nats"])
    assert result["elbo_bits_per_dim"] == pytest.approx(result["elbo_nats"] / (9 * math.log(2)))
    assert len(latent_bounds(model, split, num_samples=5, batch_size=10)["estimate"]) == 37
    assert evaluate_bound(model, split, num_samples=50, batch_size=10) == result  # seeded
    assert evaluate_model(model, split, num_samples=50, batch_size=10) == {"kind": "bound", **result}
    exact = genzoo.create("independent", image_shape=(1, 3, 3), levels=3)
    assert evaluate_model(exact, split, num_samples=50)["kind"] == "exact"


def test_bad_options_are_clear_errors():
    for options, match in (
        ({"objective": "nope"}, "objective"),
        ({"architecture": "rnn"}, "architecture"),
        ({"num_samples": 0}, "num_samples"),
        ({"stochastic_layers": 3}, "stochastic_layers"),
    ):
        with pytest.raises(ValueError, match=match):
            genzoo.create("vae", image_shape=TINY, levels=2, **options)
    with pytest.raises(ValueError, match="values in"):
        build().elbo(torch.full((2, *TINY), 2, dtype=torch.long))
