"""The RBM: free energy, exact and AIS partition functions, Gibbs sampling, CD/PCD training, checkpoints.

Each test can fail: a sign or a missing term in F(v) breaks the brute-force sum over h; an error in one
enumeration shows as disagreement between the visible and hidden sides and as probabilities that do
not sum to one; a wrong tempering term or importance weight moves AIS off the exact log Z (and the
test shows that too few betas do move it off, so the tolerance means something); a Gibbs sweep with
a wrong conditional fails the chi-square test; a PCD chain outside the checkpoint breaks exact resume.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

import genzoo
from genzoo.checkpoint import load, load_tensors, save_model
from genzoo.models.energy.partition import PAPER_NUM_BETAS, ais_betas
from genzoo.models.energy.rbm import PartitionFunctionError
from genzoo.train import CHECKPOINT_FILE, TrainConfig, train
from tiny_models import all_images, normal_weights_model, prototype_dataset


def tiny_rbm(shape, levels, hidden, scale=1.0, seed=0, **options):
    return normal_weights_model("rbm", shape, levels, scale, seed, hidden=hidden, **options)


def units(x, levels):
    flat = x.flatten(1)
    return flat.double() if levels == 2 else F.one_hot(flat, levels).flatten(1).double()


@pytest.mark.parametrize("levels", [2, 3])
def test_free_energy_is_minus_log_sum_over_hidden_states(levels):
    model = tiny_rbm((1, 2, 2), levels, hidden=4)
    x = all_images((1, 2, 2), levels)
    w, b, c = (p.detach().double() for p in (model.weight, model.visible_bias, model.hidden_bias))
    h = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.float64)
    v = units(x, levels)
    minus_energy = (v @ b)[:, None] + (h @ c)[None, :] + (v @ w.t()) @ h.t()  # -E(v, h), (images, hidden states)
    with torch.no_grad():
        assert torch.allclose(-model.free_energy(x).double(), torch.logsumexp(minus_energy, 1), atol=1e-5)


@pytest.mark.parametrize("shape,levels,hidden", [((1, 2, 4), 2, 6), ((1, 2, 2), 3, 5)])
def test_exact_partition_both_sides_agree_and_probabilities_sum_to_one(shape, levels, hidden):
    model = tiny_rbm(shape, levels, hidden)
    by_visible = model.log_partition_exact(side="visible")
    by_hidden = model.log_partition_exact(side="hidden")
    assert by_visible == pytest.approx(by_hidden, abs=1e-9)
    details = model.compute_partition()
    assert details["method"] == "exact" and details["log_z"] == pytest.approx(by_hidden, abs=1e-12)
    with torch.no_grad():
        log_p = model.log_prob(all_images(shape, levels))
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="use log_partition_ais"):
        model.log_partition_exact(max_configurations=8)


def test_ais_schedule_is_the_papers():
    betas = ais_betas()
    assert len(betas) == PAPER_NUM_BETAS + 1 and betas[0] == 0 and betas[-1] == 1
    steps = betas.diff()
    assert torch.allclose(steps[:500], torch.full((500,), 1e-3, dtype=torch.float64))
    assert torch.allclose(steps[500:4500], torch.full((4000,), 1e-4, dtype=torch.float64))
    assert torch.allclose(steps[4500:], torch.full((10000,), 1e-5, dtype=torch.float64))
    assert (ais_betas(10).diff() > 0).all() and len(ais_betas(10)) == 11


def test_ais_matches_the_exact_partition_and_fails_with_too_few_betas():
    model = tiny_rbm((1, 4, 5), 2, hidden=12, scale=0.5)
    exact = model.log_partition_exact()
    log_z, stderr = model.log_partition_ais(num_chains=200, num_betas=3000, generator=torch.Generator().manual_seed(0))
    assert abs(log_z - exact) < 0.05 and 0 < stderr < 0.05
    low, high = model.last_ais["interval"]
    assert low <= exact <= high
    # the tolerance has power: with 10 betas the estimates scatter by ~0.2 nats and the check would fail
    crude = [
        model.log_partition_ais(num_chains=200, num_betas=10, generator=torch.Generator().manual_seed(s))[0]
        for s in range(4)
    ]
    assert max(abs(c - exact) for c in crude) > 0.1


def test_ais_with_softmax_visibles_and_a_base_rate_model():
    model = tiny_rbm((1, 2, 3), 3, hidden=8, scale=0.5)
    exact = model.log_partition_exact()
    base = model.visible_bias.detach().clone()  # any base-rate biases give a consistent estimator
    log_z, _ = model.log_partition_ais(
        num_chains=200, num_betas=2000, base_rate_visible_bias=base, generator=torch.Generator().manual_seed(1)
    )
    assert abs(log_z - exact) < 0.05


@pytest.mark.parametrize("shape,levels", [((1, 2, 2), 2), ((1, 1, 3), 3)])
def test_gibbs_samples_follow_the_exact_distribution(shape, levels):
    model = tiny_rbm(shape, levels, hidden=3)
    model.compute_partition()
    images = all_images(shape, levels)
    with torch.no_grad():
        probs = model.log_prob(images).exp()
    samples = model.sample(10000, generator=torch.Generator().manual_seed(0))  # default burn_in: 1000 sweeps
    assert samples.dtype == torch.long and samples.shape == (10000, *shape)
    index = (samples.flatten(1) * levels ** torch.arange(samples[0].numel() - 1, -1, -1)).sum(1)
    counts = torch.bincount(index, minlength=len(images)).double()
    assert chisquare(counts, probs / probs.sum() * counts.sum()).pvalue > 1e-3
    uniform = torch.full_like(probs, counts.sum().item() / len(images))
    assert chisquare(counts, uniform).pvalue < 1e-3  # the test can tell a wrong distribution
    again = model.sample(5, generator=torch.Generator().manual_seed(3), burn_in=20)
    assert torch.equal(again, model.sample(5, generator=torch.Generator().manual_seed(3), burn_in=20))


def test_completion_keeps_the_known_subpixels_and_samples_the_conditional():
    model = tiny_rbm((1, 1, 3), 2, hidden=3)
    model.compute_partition()
    images = all_images((1, 1, 3), 2)
    with torch.no_grad():
        probs = model.log_prob(images).exp()
    known = torch.tensor([True, False, False]).reshape(1, 1, 3)
    x = torch.ones(4000, 1, 1, 3, dtype=torch.long)
    out = model.sample(4000, x=x, known=known, burn_in=200, generator=torch.Generator().manual_seed(0))
    assert (out[:, 0, 0, 0] == 1).all()
    conditional = probs[4:] / probs[4:].sum()  # images whose first subpixel is 1, in order
    counts = torch.bincount(out[:, 0, 0, 1] * 2 + out[:, 0, 0, 2], minlength=4).double()
    assert chisquare(counts, conditional * counts.sum()).pvalue > 1e-3


def test_log_prob_needs_a_current_partition_function():
    model = tiny_rbm((1, 2, 2), 2, hidden=3)
    x = all_images((1, 2, 2), 2)
    with pytest.raises(PartitionFunctionError, match="no log partition function"):
        model.log_prob(x)
    assert model.partition_details() is None and "no partition" in model.partition_info
    model.compute_partition()
    assert model.has_partition
    model.log_prob(x)
    with torch.no_grad():
        model.hidden_bias[0] += 0.1
    assert not model.has_partition
    with pytest.raises(PartitionFunctionError, match="other weights"):
        model.log_prob(x)
    assert "stale" in model.partition_info and model.partition_details()["current"] is False


def test_save_and_load_keep_log_z(tmp_path):
    model = tiny_rbm((1, 4, 5), 2, hidden=12, scale=0.5)
    model.set_partition(*model.log_partition_ais(num_chains=50, num_betas=200), method="ais")
    save_model(tmp_path / "rbm.safetensors", model)
    loaded = load(tmp_path / "rbm.safetensors")
    assert loaded.partition_details() == model.partition_details() and loaded.partition_details()["method"] == "ais"
    assert loaded.partition_info.startswith("AIS estimate") and "+-" in loaded.partition_info
    x = torch.randint(0, 2, (7, 1, 4, 5))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def tiny_dataset(n=256):
    return prototype_dataset("tiny-rbm", n)


def rbm_config(max_steps):  # eval_max_images=0: an RBM has no log Z while it trains
    return TrainConfig(
        batch_size=32,
        lr=0.1,
        optimizer="sgd",
        momentum=0.5,
        grad_clip=None,
        max_steps=max_steps,
        eval_max_images=0,
        log_every=10,
        checkpoint_every=1000,
        progress=False,
        device="cpu",
    )


def exact_nll(model, data):
    model.compute_partition()
    with torch.no_grad():
        return float(-model.log_prob(data.train.images.long()).mean())


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_and_pcd_training_reduce_the_exact_nll(tmp_path, persistent):
    data = tiny_dataset()
    torch.manual_seed(0)
    model = genzoo.create("rbm", (1, 3, 3), 2, hidden=8, persistent=persistent, num_chains=32, init_std=0.1)
    model.init_biases(data.train.images)
    before = exact_nll(model, data)
    train(model, data, tmp_path / "run", rbm_config(120))
    with pytest.raises(PartitionFunctionError):  # the log Z of the initial weights is stale now
        model.log_prob(data.train.images[:2].long())
    assert exact_nll(model, data) < before - 0.2


def test_pcd_chains_are_checkpointed_and_resume_exactly(tmp_path):
    data = tiny_dataset()

    def run(name, steps, seed=0):
        torch.manual_seed(seed)  # a resumed run starts from other weights, which the checkpoint must replace
        model = genzoo.create("rbm", (1, 3, 3), 2, hidden=8, persistent=True, num_chains=32, init_std=0.1)
        train(model.init_biases(data.train.images), data, tmp_path / name, rbm_config(steps))
        return model

    straight = run("a", 20)
    run("b", 10)
    assert "model.chains" in load_tensors(tmp_path / "b" / CHECKPOINT_FILE)[0]
    torch.rand(3)  # disturb the global random state between the calls
    resumed = run("b", 20, seed=5)
    assert bool(straight.chains_ready) and resumed.chains.shape == (32, 9)
    for key, value in straight.state_dict().items():  # weights, biases, chains; the unset log Z is NaN in both
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, equal_nan=True, msg=key)
