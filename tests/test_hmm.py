"""Hidden Markov models: each test can fail.

Forward likelihoods, posteriors and Viterbi paths against brute-force enumeration of every state path;
an image HMM whose probabilities must sum to one; EM that must not lower its objective; samples that
must follow ``log_prob`` (chi-square); agreement with hmmlearn on identical parameters and data.
"""

import itertools
import json
import math

import pytest
import torch
from scipy.stats import chisquare

import genzoo
from genzoo.checkpoint import load, save_model
from genzoo.data.base import ImageDataset, ImageSplit
from genzoo.errors import DataError
from genzoo.models.classic.emissions import BernoulliEmission, CategoricalEmission, GaussianEmission
from genzoo.models.classic.hmm import HMM, backward, expected_transitions, forward
from tiny_models import all_images


def randomize(module, scale=1.0, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)
    return module


def make_hmm(kind, states=3, seed=0):
    emission = {
        "categorical": lambda: CategoricalEmission(states, 1, 4),
        "bernoulli": lambda: BernoulliEmission(states, 3),
        "gauss-diag": lambda: GaussianEmission(states, 2, "diag"),
        "gauss-full": lambda: GaussianEmission(states, 2, "full"),
    }[kind]()
    return randomize(HMM(emission).double(), seed=seed)


KINDS = ["categorical", "bernoulli", "gauss-diag", "gauss-full"]


def brute_force(hmm, obs):
    """log p(o, z) for every state path z: (N, K^T) and the paths (K^T, T)."""
    log_b = hmm.emission.log_prob(obs)
    t_len, k = log_b.shape[1], hmm.states
    paths = torch.tensor(list(itertools.product(range(k), repeat=t_len)))
    joint = hmm.log_start()[paths[:, 0]] + log_b[:, 0, paths[:, 0]]
    for t in range(1, t_len):
        joint = joint + hmm.log_transitions()[paths[:, t - 1], paths[:, t]] + log_b[:, t, paths[:, t]]
    return joint, paths


@pytest.mark.parametrize("kind", KINDS)
def test_forward_posteriors_and_viterbi_match_brute_force(kind):
    hmm = make_hmm(kind)
    _, obs = hmm.sample(5, 4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        joint, paths = brute_force(hmm, obs)
        log_lik, gamma = hmm.posteriors(obs)
        xi = hmm.pair_marginals(obs)
        best, score = hmm.viterbi(obs)
        assert torch.allclose(hmm.log_prob(obs), torch.logsumexp(joint, 1), rtol=1e-12, atol=0)
        assert torch.allclose(log_lik, torch.logsumexp(joint, 1), rtol=1e-12, atol=0)
        post = torch.softmax(joint, 1)  # p(z | o) for every path
        for t in range(4):
            exact = torch.stack([post[:, paths[:, t] == k].sum(1) for k in range(3)], 1)
            assert torch.allclose(gamma[:, t], exact, atol=1e-12)
        for t in range(3):
            exact = torch.stack(
                [
                    torch.stack([post[:, (paths[:, t] == i) & (paths[:, t + 1] == j)].sum(1) for j in range(3)], 1)
                    for i in range(3)
                ],
                1,
            )
            assert torch.allclose(xi[:, t], exact, atol=1e-12)
        assert torch.allclose(gamma.sum(-1), torch.ones(5, 4, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(xi.sum((-1, -2)), torch.ones(5, 3, dtype=torch.float64), atol=1e-12)
        top2 = joint.topk(2, 1).values
        unique = top2[:, 0] - top2[:, 1] > 1e-9  # exact ties can have several argmax paths
        assert unique.any() and torch.equal(best[unique], paths[joint.argmax(1)][unique])
        assert torch.allclose(score, joint.max(1).values, rtol=1e-12, atol=0)


def test_summed_pair_marginals_equal_the_em_statistic():
    hmm = make_hmm("gauss-full", states=4)
    _, obs = hmm.sample(6, 7, torch.Generator().manual_seed(2))
    with torch.no_grad():
        log_b = hmm.emission.log_prob(obs)
        alpha, beta = forward(hmm.log_start(), hmm.log_transitions(), log_b), backward(hmm.log_transitions(), log_b)
        total = expected_transitions(alpha, beta, hmm.log_transitions(), log_b, torch.logsumexp(alpha[:, -1], -1))
        assert torch.allclose(total, hmm.pair_marginals(obs).sum((0, 1)), atol=1e-10)


def random_row_hmm(shape, levels, states, seed=0):
    model = genzoo.create("hmm", image_shape=shape, levels=levels, states=states)
    return randomize(model, 1.5, seed).eval()


@pytest.mark.parametrize("shape,levels,states", [((1, 3, 2), 2, 2), ((1, 2, 2), 3, 3), ((2, 2, 1), 2, 3)])
def test_row_hmm_probabilities_of_all_images_sum_to_one(shape, levels, states):
    model = random_row_hmm(shape, levels, states)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(all_images(shape, levels)).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_row_hmm_samples_follow_log_prob():
    shape, levels = (1, 3, 2), 2
    model = random_row_hmm(shape, levels, 2, seed=1)
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (20000, *shape) and samples.dtype == torch.long
    images = all_images(shape, levels)
    codes = (samples.reshape(20000, -1) * 2 ** torch.arange(5, -1, -1)).sum(1)  # same order as all_images
    counts = torch.bincount(codes, minlength=len(images)).double()
    with torch.no_grad():
        expected = model.log_prob(images).double().exp()
    expected = expected / expected.sum() * 20000
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


@pytest.mark.parametrize(
    "kind,prior",
    [("categorical", 0.0), ("categorical", 1.0), ("bernoulli", 0.5), ("gauss-diag", 0.0), ("gauss-full", 0.0)],
)
def test_em_never_decreases_its_objective(kind, prior):
    truth = make_hmm(kind, seed=3)
    _, obs = truth.sample(200, 12, torch.Generator().manual_seed(4))
    model = make_hmm(kind, seed=5)
    if kind.startswith("gauss"):
        model.emission.min_covar = 0.0  # the floor is not part of the likelihood: without it EM is exact
    history = model.fit_em(obs, iterations=30, tol=0.0, generator=torch.Generator().manual_seed(0), prior=prior)
    steps = torch.tensor(history["objective"]).diff()
    assert len(history["log_likelihood"]) == 31 and (steps >= -1e-9).all(), steps.min()
    if prior == 0:
        assert history["objective"] == history["log_likelihood"]
    with torch.no_grad():  # the stored parameters are the last entry's
        assert model.log_prob(obs).mean().item() == pytest.approx(history["log_likelihood"][-1], abs=1e-9)
        assert history["log_likelihood"][-1] > truth.log_prob(obs).mean().item() - 0.3  # near the truth's fit


def tiny_dataset(images, levels=2):
    split = ImageSplit(images.to(torch.uint8))
    return ImageDataset(name="tiny", levels=levels, train=split, valid=split, test=split)


def test_row_hmm_em_through_the_workflow_and_save_load(tmp_path):
    truth = random_row_hmm((1, 4, 3), 2, 3, seed=2)
    images = truth.sample(500, generator=torch.Generator().manual_seed(0))
    model = genzoo.create("hmm", image_shape=(1, 4, 3), levels=2, states=3, prior=0.1)
    x, _ = tiny_dataset(images).train.full_batch()
    result = model.fit_data(x, None, "em", torch.Generator().manual_seed(0))
    assert result["method"] == "em" and result["train_log_likelihood"] > -12 * math.log(2)
    save_model(tmp_path / "model.safetensors", model)
    loaded = load(tmp_path)
    assert loaded.config == model.config and loaded.config["states"] == 3
    with torch.no_grad():
        assert torch.equal(model.log_prob(images), loaded.log_prob(images))
        assert model.log_prob(images).dtype == torch.float32  # EM ran in float64, the model is back in float32


def test_row_hmm_trains_by_gradient():
    truth = random_row_hmm((1, 4, 3), 3, 3, seed=4)
    images = truth.sample(256, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = genzoo.create("hmm", image_shape=(1, 4, 3), levels=3, states=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    before = model.loss(images).item()
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.loss(images)
        loss.backward()
        optimizer.step()
    assert model.loss(images).item() < before - 1.0


def test_bad_inputs_are_clear_errors():
    model = genzoo.create("hmm", image_shape=(1, 2, 2), levels=2, states=2)
    with pytest.raises(ValueError, match="values in"):
        model.log_prob(torch.full((1, 1, 2, 2), 2))
    with pytest.raises(ValueError, match="states must be"):
        genzoo.create("hmm", image_shape=(1, 2, 2), levels=2, states=0)
    with pytest.raises(ValueError, match="2-dimensional"):
        HMM(GaussianEmission(2, 2)).log_prob(torch.zeros(1, 3, 5))


# hmmlearn: the same parameters and data must give the same log-likelihoods and posteriors.


def test_agrees_with_hmmlearn_categorical():
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    hmm = make_hmm("categorical", states=4)
    _, obs = hmm.sample(8, 30, torch.Generator().manual_seed(0))
    ref = hmmlearn.CategoricalHMM(n_components=4, n_features=4)
    ref.startprob_ = hmm.log_start().exp().detach().numpy()
    ref.transmat_ = hmm.log_transitions().exp().detach().numpy()
    ref.emissionprob_ = hmm.emission.log_theta()[:, 0].exp().detach().numpy()
    check_against(ref, hmm, obs, obs.reshape(-1, 1).numpy())


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_agrees_with_hmmlearn_gaussian(covariance):
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    hmm = make_hmm(f"gauss-{covariance}", states=3)
    _, obs = hmm.sample(8, 30, torch.Generator().manual_seed(0))
    ref = hmmlearn.GaussianHMM(n_components=3, covariance_type=covariance)
    ref.startprob_ = hmm.log_start().exp().detach().numpy()
    ref.transmat_ = hmm.log_transitions().exp().detach().numpy()
    ref.means_ = hmm.emission.means.detach().numpy()
    cov = hmm.emission.covariances().detach().numpy()
    ref.covars_ = cov.diagonal(axis1=1, axis2=2) if covariance == "diag" else cov
    check_against(ref, hmm, obs, obs.reshape(-1, 2).numpy())


def check_against(ref, hmm, obs, flat):
    lengths = [obs.shape[1]] * obs.shape[0]
    with torch.no_grad():
        log_lik, gamma = hmm.posteriors(obs)
    theirs = [ref.score(flat[i * obs.shape[1] : (i + 1) * obs.shape[1]]) for i in range(obs.shape[0])]
    assert torch.allclose(log_lik, torch.tensor(theirs, dtype=torch.float64), rtol=1e-6, atol=0)
    assert torch.allclose(gamma.reshape(-1, hmm.states), torch.from_numpy(ref.predict_proba(flat, lengths)), atol=1e-6)
    best, score = hmm.viterbi(obs)  # paths may differ on exact ties (products in another order): compare scores
    theirs = [ref.decode(flat[i * obs.shape[1] : (i + 1) * obs.shape[1]])[0] for i in range(obs.shape[0])]
    assert torch.allclose(score, torch.tensor(theirs, dtype=torch.float64), rtol=1e-9, atol=0)
    with torch.no_grad():
        assert torch.allclose(path_log_joint(hmm, obs, best), score, rtol=1e-12, atol=0)


def path_log_joint(hmm, obs, paths):
    """log p(o_n, z_n) of one given path per sequence, (N,)."""
    log_b = hmm.emission.log_prob(obs).gather(2, paths[..., None])[..., 0]
    log_a = hmm.log_transitions()[paths[:, :-1], paths[:, 1:]]
    return hmm.log_start()[paths[:, 0]] + log_b.sum(1) + log_a.sum(1)


# genzoo simulate: CSV errors and end-to-end runs.


def write_csv(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("a,b\n1,2\n3\n", "line 3: 1 fields, but the header has 2"),
        ("a,b\n1,2\n3,x\n", "line 3, column 'b': 'x' is not a number"),
        ("a,b\n1,2\n\n3,nan\n", "line 4, column 'b': missing"),
        ("a,b\n1,2\n,4\n", "line 3, column 'a': missing"),
        ("a,b\n", "needs a header row and at least one data row"),
        ("a,a\n1,2\n", "repeats a column name"),
        ("date,name\n2020-01,x\n", "no numeric column"),
    ],
)
def test_malformed_csv_is_one_line_error(tmp_path, text, message):
    from genzoo.tasks.simulate import load_csv

    with pytest.raises(DataError, match=message):
        load_csv(write_csv(tmp_path / "bad.csv", text))


def test_csv_columns_are_picked_by_name_and_missing_ones_named(tmp_path):
    from genzoo.tasks.simulate import load_csv

    path = write_csv(tmp_path / "s.csv", "date,a,b\n2020-01,1.5,2\n2020-02,3,4e1\n")
    values, columns = load_csv(path)
    assert columns == ["a", "b"] and values.tolist() == [[1.5, 2.0], [3.0, 40.0]]
    assert load_csv(path, ["b"])[0].tolist() == [[2.0], [40.0]]
    with pytest.raises(DataError, match="no column 'c'; its columns are: date, a, b"):
        load_csv(path, ["a", "c"])
    with pytest.raises(DataError, match="cannot read CSV file"):
        load_csv(tmp_path / "absent.csv")


def test_simulate_cli_end_to_end_and_errors(tmp_path, capsys):
    from genzoo.cli import main

    truth = HMM(GaussianEmission(2, 2, "diag")).double()
    with torch.no_grad():
        truth.transition_logits.copy_(torch.tensor([[3.0, 0.0], [0.0, 3.0]]))  # sticky: autocorrelated
        truth.emission.means.copy_(torch.tensor([[-2.0, 0.0], [2.0, 5.0]]))
    _, series = truth.sample(1, 300, torch.Generator().manual_seed(0))
    rows = "\n".join(f"{i},{a:.6f},{b:.6f}" for i, (a, b) in enumerate(series[0].tolist()))
    path = write_csv(tmp_path / "two.csv", "t,a,b\n" + rows + "\n")
    out = tmp_path / "sim"
    args = [
        "simulate",
        "--csv",
        str(path),
        "--columns",
        "a,b",
        "--states",
        "2",
        "--samples",
        "20",
        "--restarts",
        "2",
        "--lags",
        "5",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "nats/step" in capsys.readouterr().out
    result = json.loads((out / "simulate.json").read_text())
    assert (out / "simulate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["length"] == 300 and result["columns"] == ["a", "b"] and result["lags"] == [1, 2, 3, 4, 5]
    assert result["log_likelihood_per_step"] > result["iid_gaussian_log_likelihood_per_step"] + 0.3
    for column in ("a", "b"):
        stats = result["per_column"][column]
        assert stats["ks_statistic"] < 0.15 and stats["acf_real"][0] > 0.6
        assert abs(stats["acf_simulated_mean"][0] - stats["acf_real"][0]) < 0.15
    bad = write_csv(tmp_path / "bad.csv", "a,b\n1,2\n3,\n")
    for argv, message, code in [
        (["simulate", "--csv", str(bad)], "line 3, column 'b': missing", 3),  # bad data
        (["simulate", "--csv", str(path), "--columns", "a,zz"], "no column 'zz'", 3),
        (["simulate"], "give one of --series NAME or --csv FILE", 2),  # bad usage
        (["simulate", "--series", "nope"], "unknown series 'nope'", 2),
    ]:
        assert main(argv) == code
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_simulate_a_statsmodels_series(tmp_path):
    pytest.importorskip("statsmodels")
    from genzoo.tasks.simulate import load_series, simulate

    values, columns = load_series("sunspots")
    assert values.shape == (309, 1) and columns == ["SUNACTIVITY"]
    result = simulate(values, columns, tmp_path, name="sunspots", states=2, samples=5, restarts=1, iterations=20)
    assert result["log_likelihood_per_step"] > result["iid_gaussian_log_likelihood_per_step"]
    assert len(result["per_column"]["SUNACTIVITY"]["acf_real"]) == 20
