"""The deep belief net: variational bound and IS estimate against brute force, sampling, greedy training.

Each test can fail: on tiny DBNs every hidden state is enumerated, so log p(x) and the exact value of
[2]'s bound are known. A wrong conditional, sign or entropy moves the model's Monte Carlo bound off the
enumerated bound (the test also checks that the bound is strictly below log p(x), so "bound == log p"
would fail too); a wrong importance weight keeps the estimate from reaching log p(x); a wrong down-pass
fails the chi-square test of samples against the exact marginal; a lower layer that moves after its
turn, or a schedule outside the checkpoint, breaks the frozen-weights and exact-resume checks.
"""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

import genzoo
from genzoo.checkpoint import load, save_model
from genzoo.evaluate import evaluate_model
from genzoo.models.energy.rbm import PartitionFunctionError
from genzoo.train import TrainConfig, train
from tiny_models import normal_weights_model, prototype_dataset


def tiny_dbn(shape, levels, hidden, scale=1.0, seed=0, **options):
    return normal_weights_model("dbn", shape, levels, scale, seed, hidden=hidden, **options)


def states(num_units, levels=2):
    return torch.tensor(list(itertools.product(range(levels), repeat=num_units)), dtype=torch.float64)


def units(s, levels):  # integer states (..., D) -> visible units (..., V)
    return s.double() if levels == 2 else F.one_hot(s.long(), levels).flatten(-2).double()


def params(rbm):
    return tuple(p.detach().double() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))


def log_p_down(rbm, below, above, levels):
    """log p(below | above) under the RBM's visible conditional; states broadcast over leading dims."""
    w, b, _ = params(rbm)
    a = above @ w + b
    if levels == 2:
        return (below * a).sum(-1) - F.softplus(a).sum(-1)
    return (units(below, levels) * a).sum(-1) - torch.logsumexp(a.unflatten(-1, (-1, levels)), -1).sum(-1)


def log_q_up(rbm, below, above, levels):
    """log q(above | below) under the RBM's hidden conditional."""
    w, _, c = params(rbm)
    logits = units(below, levels) @ w.t() + c
    return (above * F.logsigmoid(logits) + (1 - above) * F.logsigmoid(-logits)).sum(-1)


def log_p_top(rbm, vis):
    """Normalized log p_top(vis) of the top RBM, both of its layers enumerated."""
    w, b, c = params(rbm)
    h = states(w.shape[0])
    log_z = torch.logsumexp((states(w.shape[1]) @ b)[:, None] + h @ c + states(w.shape[1]) @ w.t() @ h.t(), (0, 1))
    return torch.logsumexp((vis @ b)[..., None] + h @ c + vis @ w.t() @ h.t(), -1) - log_z


def brute_force(model, x):
    """(exact log p(x), exact bound E_q[log p(x, h) - log q(h | x)]) of a DBN with >= 2 layers, every
    configuration (h1, ..., h(L-1)) enumerated: tables (images N, configurations C)."""
    layers = list(model.layers)
    sizes = [rbm.hidden for rbm in layers[:-1]]
    configs = states(sum(sizes)).split(sizes, 1)
    n, c = len(x), len(configs[0])
    below = x.flatten(1)[:, None].expand(n, c, -1)
    log_joint = log_q = torch.zeros(n, c, dtype=torch.float64)
    for k, rbm in enumerate(layers[:-1]):
        h = configs[k][None].expand(n, c, -1)
        levels = model.levels if k == 0 else 2
        log_joint = log_joint + log_p_down(rbm, below, h, levels)
        log_q = log_q + log_q_up(rbm, below, h, levels)
        below = h
    log_joint = log_joint + log_p_top(layers[-1], below)
    return torch.logsumexp(log_joint, 1), (log_q.exp() * (log_joint - log_q)).sum(1)


def all_images(shape, levels):
    return states(math.prod(shape), levels).long().reshape(-1, *shape)


CASES = [
    pytest.param((1, 2, 3), 2, [4, 3], id="binary-6-4-3"),
    pytest.param((1, 1, 3), 3, [4, 3], id="softmax-3x3levels-4-3"),
    pytest.param((1, 1, 4), 2, [3, 2, 2], id="binary-4-3-2-2"),
]


@pytest.mark.parametrize("shape,levels,hidden", CASES)
def test_bound_and_estimate_against_enumeration(shape, levels, hidden):
    model = tiny_dbn(shape, levels, hidden)
    x = all_images(shape, levels)
    with pytest.raises(PartitionFunctionError):  # no log Z of the top RBM yet
        model.elbo(x)
    model.prepare_for_evaluation()
    assert model.has_partition and model.partition_details()["method"] == "exact"
    log_px, bound = brute_force(model, x)
    assert torch.logsumexp(log_px, 0).exp().item() == pytest.approx(1.0, abs=1e-9)  # the reference is right
    assert (bound <= log_px + 1e-12).all() and (log_px - bound).mean() > 1.0  # a real gap to detect
    g = torch.Generator().manual_seed(0)
    mc = model.log_prob_lower_bound(x, num_samples=20000, generator=g)
    assert mc.dtype == torch.float64 and mc.shape == (len(x),)
    # Monte Carlo error: ~0.015 nats per image (max over the images ~0.05), ~0.002 for the mean
    assert (mc - bound).mean().abs() < 0.01 and (mc - bound).abs().max() < 0.1
    estimate = model.log_prob_estimate(x, num_samples=20000, generator=g)
    assert (estimate - log_px).mean().abs() < 0.03 and (estimate - log_px).abs().max() < 0.3
    crude = model.log_prob_estimate(x, num_samples=1, generator=g)  # one sample: the bound, noisily
    assert (log_px - crude).mean() > 1.0


def test_one_layer_dbn_is_its_rbm():
    model = tiny_dbn((1, 2, 2), 3, 5)
    model.compute_partition()
    rbm = genzoo.create("rbm", (1, 2, 2), 3, hidden=5)
    rbm.load_state_dict(model.layers[0].state_dict())
    x = all_images((1, 2, 2), 3)
    with torch.no_grad():
        exact = rbm.log_prob(x)
    assert torch.allclose(model.log_prob_lower_bound(x, num_samples=3), exact, atol=1e-9)
    assert torch.allclose(model.log_prob_estimate(x, num_samples=7), exact, atol=1e-9)


def test_samples_follow_the_exact_marginal():
    shape, levels = (1, 2, 3), 2
    model = tiny_dbn(shape, levels, [4, 3])
    model.compute_partition()
    images = all_images(shape, levels)
    probs = brute_force(model, images)[0].exp()
    samples = model.sample(10000, generator=torch.Generator().manual_seed(0), burn_in=200)
    assert samples.dtype == torch.long and samples.shape == (10000, *shape)
    assert samples.min() >= 0 and samples.max() < levels
    index = (samples.flatten(1) * 2 ** torch.arange(5, -1, -1)).sum(1)
    counts = torch.bincount(index, minlength=64).double()
    assert chisquare(counts, probs / probs.sum() * counts.sum()).pvalue > 1e-3
    with torch.no_grad():  # the test can tell a slightly wrong down-pass: p(v | h1) with biases off by 0.2
        model.layers[0].visible_bias += 0.2
    wrong = brute_force(model, images)[0].exp()
    assert chisquare(counts, wrong / wrong.sum() * counts.sum()).pvalue < 1e-3
    again = model.sample(4, generator=torch.Generator().manual_seed(3), burn_in=10)
    assert torch.equal(again, model.sample(4, generator=torch.Generator().manual_seed(3), burn_in=10))


def tiny_dataset(n=256):
    return prototype_dataset("tiny-dbn", n)


def config(max_steps):
    return TrainConfig(
        batch_size=32,
        lr=0.1,
        optimizer="sgd",
        momentum=0.5,
        grad_clip=None,
        max_steps=max_steps,
        eval_every=7,
        log_every=5,
        checkpoint_every=1000,
        progress=False,
        device="cpu",
    )


def test_greedy_training_freezes_lower_layers_and_resumes_exactly(tmp_path):
    data = tiny_dataset()

    def run(name, steps, seed=0):
        torch.manual_seed(seed)  # a resumed run starts from other weights, which the checkpoint must replace
        model = genzoo.create("dbn", (1, 3, 3), 2, hidden=[6, 4], steps_per_layer=10, init_std=0.1)
        result = train(model, data, tmp_path / name, config(steps))
        assert result["status"] == "finished"
        return model

    first = run("b", 10)
    assert int(first.current_layer) == 0 and first.layer_at(9) == 0 and first.layer_at(10) == 1
    layer0 = {k: v.detach().clone() for k, v in first.layers[0].named_parameters()}
    untouched = first.layers[1].weight.detach().clone()
    middle = run("b", 17, seed=5)  # resumes at the layer boundary
    assert int(middle.current_layer) == 1
    assert not torch.equal(middle.layers[1].weight, untouched)
    assert middle.layers[1].base_rate_bias.abs().sum() > 0  # layer 2's biases were set from upward samples
    torch.rand(3)  # disturb the global random state between the calls
    resumed = run("b", 25, seed=7)  # resumes in the middle of layer 2
    straight = run("a", 25)
    for key, value in layer0.items():
        assert torch.equal(dict(resumed.layers[0].named_parameters())[key], value), key  # frozen after its turn
    assert int(straight.current_layer) == 1 and straight.total_steps == 20
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, equal_nan=True, msg=key)


def test_evaluator_reports_a_bound_and_checkpoints_keep_the_model(tmp_path):
    data = tiny_dataset(64)
    model = tiny_dbn((1, 3, 3), 2, [5, 4], scale=0.5)
    model.prepare_for_evaluation()
    result = evaluate_model(model, data.test, num_samples=50, batch_size=8)
    assert result["kind"] == "bound" and result["n"] == 16
    assert result["nll_estimate_nats"] < result["elbo_nats"]  # the estimate is the tighter bound
    save_model(tmp_path / "dbn.safetensors", model)
    loaded = load(tmp_path / "dbn.safetensors")
    assert loaded.config == model.config and loaded.has_partition
    x = data.test.images[:5].long()
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(loaded.log_prob_lower_bound(x, 4, g()), model.log_prob_lower_bound(x, 4, g()))
