"""GANs, two-player training and sample-quality metrics.

Each test can fail: a sign or a factor in a GAN objective shows in its analytic gradient; a gradient
penalty on the wrong tensor shows against (|w| - 1)^2 and finite differences; a resume that forgets one
optimizer's moments or a random state changes the losses; a Fréchet distance with a wrong matrix square
root disagrees with scipy's; precision/recall of a set against itself must be exactly 1.
"""

import dataclasses
import json
import math
import os
import signal

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

import genzoo
from genzoo.cli import main as cli
from genzoo.data import load_dataset
from genzoo.evaluate import evaluate_model
from genzoo.metrics import (
    class_histogram,
    frechet_distance,
    histogram_entropy_bits,
    kernel_distance,
    precision_recall,
    sample_metrics,
)
from genzoo.metrics.feature_net import feature_network, train_feature_network
from genzoo.models.adversarial.gan import DCGAN
from genzoo.nn.adversarial import (
    dequantize,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    interpolate,
    quantize,
)
from genzoo.train import CHECKPOINT_FILE, TrainConfig, train
from test_train import log_records, saved

SMALL = {"channels": 8, "latent": 8}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def net(digits):
    return train_feature_network(digits, seed=0, steps=60)


# Objectives


def test_generator_losses_have_the_analytic_gradients_on_a_1d_toy():
    """G(z) = z + b, D(x) = sigmoid(w x + c): d/db and d/dD of each generator objective, by hand."""
    z, w, c = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64), 1.5, -4.0
    for b0 in (-3.0, 0.0, 3.0):
        d_of_g = {}
        for objective, dloss_dd in (("minimax", lambda d: -1 / (1 - d)), ("non-saturating", lambda d: -1 / d)):
            b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
            logits = w * (z + b) + c
            generator_loss(logits, objective).backward()
            d = torch.sigmoid(logits.detach())
            # chain rule: dL/db = mean(dL/dD * dD/dl * dl/db), dD/dl = D (1 - D), dl/db = w
            assert b.grad.item() == pytest.approx(float((dloss_dd(d) * d * (1 - d) * w).mean()), rel=1e-12)
            dd = torch.sigmoid(logits.detach()).requires_grad_(True)  # the same loss as a function of D itself
            generator_loss(torch.logit(dd), objective).backward()
            torch.testing.assert_close(dd.grad, dloss_dd(dd.detach()) / len(z))
            d_of_g[objective] = b.grad.item()
        # both push D(G(z)) up (negative slope in b since w > 0); the non-saturating push is stronger
        # exactly where D(G(z)) is small, and weaker where it is large
        assert d_of_g["minimax"] < 0 and d_of_g["non-saturating"] < 0
        if b0 == -3.0:  # D(G(z)) ~ 0: minimax saturates
            assert abs(d_of_g["non-saturating"]) > 100 * abs(d_of_g["minimax"])
        if b0 == 3.0:
            assert abs(d_of_g["non-saturating"]) < abs(d_of_g["minimax"])


def test_discriminator_loss_is_binary_cross_entropy_with_one_sided_smoothing():
    real, fake = torch.randn(7, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    for s in (0.0, 0.1):
        expected = F.binary_cross_entropy_with_logits(
            real, torch.full_like(real, 1 - s)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        torch.testing.assert_close(discriminator_loss(real, fake, s), expected)
    torch.testing.assert_close(generator_loss(fake, "wgan-gp"), -fake.mean())


def test_gradient_penalty_of_a_linear_critic_is_exact():
    real, fake = torch.randn(6, 1, 2, 3, dtype=torch.float64), torch.randn(6, 1, 2, 3, dtype=torch.float64)
    for scale in (0.2, 1.0, 3.0):
        w = (torch.randn(6, dtype=torch.float64) * scale).requires_grad_(True)
        gp = gradient_penalty(lambda x: x.flatten(1) @ w, real, fake)  # noqa: B023 (called at once)
        norm = w.detach().norm()
        assert gp.item() == pytest.approx(float((norm - 1) ** 2), rel=1e-12, abs=1e-14)
        (grad,) = torch.autograd.grad(gp, w)  # differentiable in the critic's parameters
        torch.testing.assert_close(grad, 2 * (norm - 1) * w.detach() / norm)


def test_gradient_penalty_of_a_quadratic_critic_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    d = 5
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    critic = lambda x: 0.5 * ((x @ a) * x).sum(1) + x @ b  # noqa: E731
    real, fake = (
        torch.randn(4, d, generator=g, dtype=torch.float64),
        torch.randn(4, d, generator=g, dtype=torch.float64),
    )
    eps = torch.rand(4, generator=g, dtype=torch.float64)
    x_hat, h = interpolate(real, fake, eps), 1e-5
    grads = torch.stack(
        [(critic(x_hat + h * e) - critic(x_hat - h * e)) / (2 * h) for e in torch.eye(d, dtype=torch.float64)], 1
    )
    expected = ((grads.norm(dim=1) - 1) ** 2).mean()
    assert gradient_penalty(critic, real, fake, eps).item() == pytest.approx(expected.item(), rel=1e-7)


def test_dequantize_and_quantize_are_inverse():
    x = torch.randint(0, 17, (50, 1, 8, 8))
    u = dequantize(x, 17)
    assert u.min() >= -1 and u.max() < 1 and torch.equal(quantize(u, 17), x)
    assert torch.equal(quantize(torch.tensor([-1.0, 1.0, 0.0]), 2), torch.tensor([0, 1, 1]))


# Models and two-player training


@pytest.mark.parametrize(
    "name,options",
    [
        ("dcgan", {}),
        ("wgan-gp", {}),
        ("cgan", {"num_classes": 10}),
        ("dcgan", {"spectral_norm": True, "objective": "minimax"}),
    ],
)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_sample_gives_integer_images_of_the_right_shape(name, options, shape):
    model = genzoo.create(name, shape, 5, **SMALL, **options)
    y = torch.arange(6) % 10 if model.conditional else None
    x = model.sample(6, y, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, *shape) and x.dtype == torch.long and x.min() >= 0 and x.max() < 5
    assert torch.equal(x, model.sample(6, y, generator=torch.Generator().manual_seed(0)))
    assert model.training  # sample() restores the mode
    assert torch.isfinite(model.loss(x, y))
    if model.conditional:
        with pytest.raises(ValueError, match="class-conditional"):
            model.sample(2)


def gan_config(steps: int) -> TrainConfig:
    return TrainConfig(
        batch_size=16,
        max_steps=steps,
        log_every=1,
        eval_every=3,
        checkpoint_every=100,
        eval_max_images=16,
        ema_decay=0.9,
        progress=False,
        device="cpu",
    )


class SignalGAN(DCGAN):
    """Sends itself SIGINT during train_step call number ``at``."""

    at, calls = None, 0

    def train_step(self, batch, step, optimizers, loss_fn=None):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().train_step(batch, step, optimizers, loss_fn)


@pytest.mark.parametrize("name,options", [("dcgan", {"label_smoothing": 0.1}), ("wgan-gp", {"n_critic": 2})])
def test_two_player_training_resumes_exactly(tmp_path, digits, name, options):
    def model(seed=0, cls=None):
        torch.manual_seed(seed)
        m = genzoo.create(name, digits.image_shape, digits.levels, **SMALL, **options)
        if cls is not None:
            torch.manual_seed(seed)
            m2 = cls(
                digits.image_shape,
                digits.levels,
                **{k: v for k, v in m.config.items() if k not in ("name", "image_shape", "levels")},
            )
            m2.config = m.config
            return m2
        return m

    assert train(model(), digits, tmp_path / "a", gan_config(8))["status"] == "finished"
    assert train(model(), digits, tmp_path / "b", gan_config(3))["step"] == 3
    interrupted = model(cls=SignalGAN)
    interrupted.at = 5
    assert train(interrupted, digits, tmp_path / "c", gan_config(8))["status"] == "interrupted"
    torch.rand(3)  # disturb the global random state
    for run in ("b", "c"):
        assert train(model(seed=5), digits, tmp_path / run, gan_config(8))["status"] == "finished"
    reference = log_records(tmp_path / "a")
    assert {"d_loss", "g_loss", "grad_norm/generator", "grad_norm/discriminator"} <= set(reference[-1]["scalars"])
    assert set(reference[-1]["lrs"]) == {"generator", "discriminator"} and "valid" in reference[-1]
    for run in ("b", "c"):
        records = log_records(tmp_path / run)
        assert [(r["step"], r["loss"], r["scalars"]) for r in records] == [
            (r["step"], r["loss"], r["scalars"]) for r in reference
        ]
        for prefix in ("model.", "ema.", "optimizer.generator.", "optimizer.discriminator."):
            expected, got = saved(tmp_path / "a", prefix), saved(tmp_path / run, prefix)
            assert expected and expected.keys() == got.keys()
            assert all(torch.equal(expected[k], got[k]) for k in expected), prefix
    loaded = genzoo.load(tmp_path / "a")
    y = torch.arange(4) if loaded.conditional else None
    assert loaded.sample(4, y).shape == (4, *digits.image_shape)


def test_wgan_gp_uses_the_papers_optimizer_and_n_critic(tmp_path, digits):
    model = genzoo.create("wgan-gp", digits.image_shape, digits.levels, **SMALL)
    assert model.n_critic == 5 and model.optimizer_options("generator") == {"lr": 1e-4, "betas": (0.0, 0.9)}
    train(model, digits, tmp_path, gan_config(5))
    records = log_records(tmp_path)
    assert ["g_loss" in r["scalars"] for r in records] == [False] * 4 + [True]
    assert {"wasserstein", "gradient_penalty"} <= set(records[0]["scalars"])
    assert records[0]["lrs"] == {"generator": 1e-4, "discriminator": 1e-4}


def test_two_player_models_refuse_compile(tmp_path, digits):
    """(DDP works: tests/test_gan_ddp.py.)"""
    config = dataclasses.replace(gan_config(2), compile=True)
    with pytest.raises(ValueError, match="compile"):
        train(genzoo.create("dcgan", digits.image_shape, digits.levels, **SMALL), digits, tmp_path, config)
    assert not (tmp_path / CHECKPOINT_FILE).exists()


# Metrics


def test_frechet_distance_matches_scipy_and_grows_with_shift_and_noise():
    g = np.random.default_rng(0)
    a = g.normal(size=(400, 6)) @ g.normal(size=(6, 6))
    b = g.normal(size=(300, 6)) * 2.0 + 1.0
    mu, cov = a.mean(0) - b.mean(0), (np.cov(a, rowvar=False), np.cov(b, rowvar=False))
    expected = mu @ mu + np.trace(cov[0] + cov[1] - 2 * scipy.linalg.sqrtm(cov[0] @ cov[1]).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) < 1e-8
    shift = np.full(6, 0.5)
    assert frechet_distance(a, a + shift) == pytest.approx(shift @ shift, rel=1e-6)
    same = g.normal(size=(400, 6)) @ np.eye(6)
    assert frechet_distance(same, g.normal(size=(400, 6))) < frechet_distance(same, g.normal(size=(400, 6)) * 1.5)


def test_kid_is_zero_within_noise_for_identical_sets_and_positive_for_shifted_ones():
    g = np.random.default_rng(1)
    a, other = g.normal(size=(500, 8)), g.normal(size=(500, 8))
    kid, sd = kernel_distance(a, other, num_subsets=30)  # two draws of one distribution: 0 within noise
    assert abs(kid) < 3 * sd
    same, _ = kernel_distance(a, a, num_subsets=30)  # shared images bias it slightly below 0 (docstring)
    shifted, _ = kernel_distance(a, a + 0.5, num_subsets=30)
    noised, _ = kernel_distance(a, a + g.normal(size=a.shape), num_subsets=30)
    assert -0.05 < same <= 0 and shifted > 10 * (abs(kid) + sd) and noised > 10 * (abs(kid) + sd)


def test_precision_and_recall():
    g = np.random.default_rng(2)
    a = g.normal(size=(300, 4))
    assert precision_recall(a, a) == (1.0, 1.0)
    precision, recall = precision_recall(a, a[:100] * 0.1)  # collapsed to the centre: precise, no recall
    assert precision == 1.0 and recall < 0.5
    precision, recall = precision_recall(a, a + 3.0)
    assert precision < 0.3 and recall < 0.3


def test_class_histogram_counts_classes():
    assert class_histogram(torch.tensor([0, 2, 2, 1, 2]), 4) == [1, 1, 3, 0]
    assert histogram_entropy_bits([5, 5, 5, 5]) == pytest.approx(2.0)
    assert histogram_entropy_bits([0, 9, 0]) == 0.0


def test_feature_network_is_reproducible_and_cached_as_safetensors(tmp_path, digits):
    state = torch.random.get_rng_state()
    first = feature_network(digits, tmp_path, seed=3, steps=15)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    files = list((tmp_path / "digits").glob("feature_net-*.safetensors"))
    assert len(files) == 1 and files[0].read_bytes()[8:9] == b"{"  # a safetensors JSON header, no pickle
    again = feature_network(digits, tmp_path, seed=3, steps=15)  # loaded from the cache
    fresh = train_feature_network(digits, seed=3, steps=15)
    x = digits.test.images[:20].long()
    assert torch.equal(first.embed(x)[0], again.embed(x)[0]) and torch.equal(first.embed(x)[0], fresh.embed(x)[0])
    assert again.test_accuracy == first.test_accuracy


def test_sample_metrics_rank_real_data_above_noise(digits, net):
    test_x, test_y = digits.test.images.long(), digits.test.labels
    real = sample_metrics(test_x, digits, test_y, network=net, kid_subsets=20)
    noise = sample_metrics(
        torch.randint(0, digits.levels, test_x.shape, generator=torch.Generator().manual_seed(0)),
        digits,
        network=net,
        kid_subsets=20,
        floor_split=None,
    )
    assert real["frechet_distance"] == pytest.approx(real["floor"]["frechet_distance"])  # the same images
    assert noise["frechet_distance"] > 5 * real["frechet_distance"] and noise["kid"] > 5 * abs(real["kid"])
    assert noise["precision"] < real["precision"] and "floor" not in noise
    assert real["classifier_accuracy"] == real["floor"]["classifier_accuracy"] > 0.5
    assert sum(real["class_histogram"]) == len(test_x) and len(real["class_histogram"]) == 10
    json.dumps(real)


def test_evaluator_reports_samples_only_for_gans(digits):
    model = genzoo.create("dcgan", digits.image_shape, digits.levels, **SMALL)
    assert evaluate_model(model, digits.test) == {"kind": "samples-only"}


def test_cli_trains_and_scores_a_conditional_gan(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "data"))
    monkeypatch.setattr("genzoo.metrics.feature_net.default_steps", lambda n, b: 20)
    run_dir = tmp_path / "cgan"
    args = [
        "train",
        "cgan",
        "--data",
        "digits",
        "--steps",
        "4",
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--samples",
        "10",
        "-o",
        "channels=8",
        "-o",
        "latent=8",
        "--batch-size",
        "32",
    ]
    assert cli(args) == 0
    assert "no likelihood (samples only); samples: FD" in capsys.readouterr().out
    test = json.loads((run_dir / "results.json").read_text())["test"]
    assert test["kind"] == "samples-only" and test["sample_metrics"]["n"] == 270
    assert list((tmp_path / "data" / "digits").glob("feature_net-*.safetensors"))
    assert cli(["eval", str(run_dir), "--samples", "40", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = result["sample_metrics"]
    assert metrics["n"] == 40 and 0 <= metrics["classifier_accuracy"] <= 1 and sum(metrics["class_histogram"]) == 40
    assert not math.isnan(metrics["frechet_distance"]) and metrics["floor"]["n"] == 40


def test_unlabelled_data_get_an_autoencoder_feature_network():
    from ddp_worker import tiny_dataset

    data = tiny_dataset(n=64, shape=(1, 4, 4), levels=3)
    net = train_feature_network(data, steps=10, batch_size=16)
    assert not net.is_classifier and net.test_accuracy is None
    samples = data.test.batch(torch.arange(len(data.test)), torch.Generator().manual_seed(0))[0]
    metrics = sample_metrics(samples, data, network=net, kid_subsets=5)
    assert metrics["feature_net"]["kind"] == "autoencoder" and "class_histogram" not in metrics
    assert metrics["precision"] == metrics["floor"]["precision"]
    with pytest.raises(ValueError, match="integer images"):
        sample_metrics(samples + 5, data, network=net)


def test_standard_fid_uses_pytorch_fid_when_available(monkeypatch):
    """With pytorch-fid importable (a stand-in here: no weights offline), FID is the Fréchet distance of
    its pool features; without it the entry is None and nothing is downloaded."""
    import sys
    import types

    from genzoo import metrics

    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    assert metrics.inception_fid(torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 8, 8), 17) is None

    class FakeInception(torch.nn.Module):
        BLOCK_INDEX_BY_DIM = {2048: 3}

        def __init__(self, blocks):
            super().__init__()
            assert blocks == [3]

        def forward(self, x):
            assert x.shape[1] == 3 and 0 <= float(x.min()) and float(x.max()) <= 1
            return [x.mean(dim=(2, 3), keepdim=True).repeat(1, 2, 1, 1)]

    package, module = types.ModuleType("pytorch_fid"), types.ModuleType("pytorch_fid.inception")
    module.InceptionV3 = FakeInception
    monkeypatch.setitem(sys.modules, "pytorch_fid", package)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", module)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 17, (40, 1, 8, 8), generator=g), torch.randint(0, 17, (40, 1, 8, 8), generator=g)
    fake = lambda x: (x.float() / 16).expand(-1, 3, -1, -1).mean(dim=(2, 3)).repeat(1, 2)
    assert metrics.inception_fid(a, b, 17) == pytest.approx(metrics.frechet_distance(fake(a), fake(b)))


def test_feature_net_cache_skips_a_read_only_data_root(tmp_path):
    from genzoo.metrics.feature_net import writable

    root = tmp_path / "shared"
    root.mkdir()
    assert writable(root / "digits" / "net.safetensors")
    root.chmod(0o555)
    try:
        assert not writable(root / "digits" / "net.safetensors")
    finally:
        root.chmod(0o755)
