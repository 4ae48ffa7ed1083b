"""Classic models: the discrete mixture (EM and gradient), naive Bayes, generative classification,
learning curves and the Gaussian-mixture wrapper.

Each test can fail: an unnormalized likelihood, an EM step that lowers its objective, a sampler that
does not follow ``log_prob``, counts off by a pseudo-count, posteriors that do not sum to one.
"""

import math

import pytest
import torch
from scipy.stats import chisquare

import genzoo
from genzoo.checkpoint import load, save_model
from genzoo.data.base import ImageDataset, ImageSplit
from genzoo.models.classic.mixture import DiscreteMixture
from tiny_models import all_images

TINY_MIXTURES = [((1, 2, 3), 2, 3), ((1, 2, 2), 3, 4)]  # (image_shape, levels, components)


def image_codes(x, levels):
    flat = x.reshape(x.shape[0], -1)
    return (flat * levels ** torch.arange(flat.shape[1] - 1, -1, -1)).sum(1)


def random_mixture(shape, levels, components, seed=0, scale=1.5):
    torch.manual_seed(seed)
    model = genzoo.create("bernoulli-mixture", image_shape=shape, levels=levels, components=components)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


def chi_square_p(samples, log_p, levels):
    counts = torch.bincount(image_codes(samples, levels), minlength=log_p.numel()).double()
    expected = log_p.double().exp() * samples.shape[0]
    keep = expected > 5  # pool rare outcomes, as the chi-square test requires
    observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    expected = torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)])
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    observed = observed * expected.sum() / observed.sum()  # absorb the float32 rounding of sum(p)
    return chisquare(observed.numpy(), expected.numpy()).pvalue


def synthetic_mixture_data(n=3000, seed=0):
    """Binary 1x4x4 images from a known 3-component mixture; returns (images, true log p per image)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.full((3, 16), 0.1)
    theta[0, :8], theta[1, 8:], theta[2, ::2] = 0.9, 0.9, 0.9
    pi = torch.tensor([0.5, 0.3, 0.2])
    z = torch.multinomial(pi, n, replacement=True, generator=g)
    x = torch.bernoulli(theta[z], generator=g).long()
    log_lik = (x[:, None] * theta.log() + (1 - x[:, None]) * (1 - theta).log()).sum(-1)  # (n, 3)
    return x.reshape(n, 1, 4, 4), torch.logsumexp(log_lik + pi.log(), 1)


def tiny_dataset(images, labels=None, levels=2):
    split = ImageSplit(images.to(torch.uint8), labels)
    return ImageDataset(
        name="tiny",
        levels=levels,
        train=split,
        valid=split,
        test=split,
        num_classes=None if labels is None else int(labels.max()) + 1,
    )


# DiscreteMixture


@pytest.mark.parametrize("shape,levels,components", TINY_MIXTURES)
def test_mixture_probabilities_of_all_images_sum_to_one(shape, levels, components):
    model = random_mixture(shape, levels, components)
    with torch.no_grad():
        log_p = model.log_prob(all_images(shape, levels)).double()
    assert torch.isfinite(log_p).all()
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("shape,levels,components", TINY_MIXTURES)
def test_mixture_samples_follow_log_prob(shape, levels, components):
    model = random_mixture(shape, levels, components, seed=1)
    with torch.no_grad():
        log_p = model.log_prob(all_images(shape, levels))
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (20000, *shape) and samples.dtype == torch.long
    assert chi_square_p(samples, log_p, levels) > 1e-3


def test_mixture_loss_is_mean_negative_log_prob_and_responsibilities_normalize():
    model = random_mixture((1, 2, 3), 2, 3)
    x = torch.randint(0, 2, (7, 1, 2, 3), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert model.loss(x).item() == pytest.approx(-model.log_prob(x).mean().item(), rel=1e-6)
        assert torch.allclose(model.responsibilities(x).sum(1), torch.ones(7))
    with pytest.raises(ValueError, match="values in"):
        model.log_prob(torch.full((2, 1, 2, 3), 2))


def test_em_never_decreases_its_objective_and_recovers_the_true_likelihood():
    x, true_log_p = synthetic_mixture_data()
    model = DiscreteMixture((1, 4, 4), 2, components=3, prior=1.0)
    history = model.fit_em(x, iterations=60, tol=0.0, generator=torch.Generator().manual_seed(0), batch_size=512)
    objective = torch.tensor(history["objective"], dtype=torch.float64)
    assert len(objective) >= 2 and (objective.diff() >= -1e-6).all()
    assert history["log_likelihood"][-1] > history["log_likelihood"][0]
    # the maximum-likelihood fit is at least as likely on its own training data as the truth, barely more
    assert history["log_likelihood"][-1] == pytest.approx(true_log_p.mean().item(), abs=0.03)
    with torch.no_grad():  # the parameters now hold the fit: log_prob agrees with the last EM value
        assert model.log_prob(x).mean().item() == pytest.approx(history["log_likelihood"][-1], abs=1e-4)
    # without a prior, EM climbs the likelihood itself
    ml = DiscreteMixture((1, 4, 4), 2, components=3, prior=0.0)
    log_lik = torch.tensor(
        ml.fit_em(x, iterations=30, tol=0.0, generator=torch.Generator().manual_seed(1))["log_likelihood"]
    )
    assert (log_lik.diff() >= -1e-6).all()


def test_em_on_three_levels_with_more_components_than_needed_stops_at_tol():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (200, 1, 2, 2), generator=g)
    model = DiscreteMixture((1, 2, 2), 3, components=5)
    history = model.fit_em(x, iterations=500, tol=1e-6, generator=g, batch_size=64)
    assert len(history["objective"]) < 501 and (torch.tensor(history["objective"]).diff() >= -1e-6).all()
    with torch.no_grad():
        assert torch.logsumexp(model.log_prob(all_images((1, 2, 2), 3)).double(), 0).exp().item() == pytest.approx(
            1.0, abs=1e-5
        )


def test_mixture_save_load_round_trip(tmp_path):
    model = random_mixture((1, 2, 3), 2, 3)
    save_model(tmp_path / "model.safetensors", model)
    loaded = load(tmp_path)
    assert loaded.config == model.config and loaded.config["components"] == 3
    x = torch.randint(0, 2, (4, 1, 2, 3), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model.log_prob(x), loaded.log_prob(x))


def test_mixture_trains_by_gradient_through_the_core_trainer(tmp_path):
    from genzoo.train import TrainConfig, train

    x, _ = synthetic_mixture_data(n=512)
    torch.manual_seed(0)
    model = genzoo.create("bernoulli-mixture", image_shape=(1, 4, 4), levels=2, components=3)
    with torch.no_grad():
        before = model.loss(x).item()
    config = TrainConfig(
        batch_size=64,
        lr=0.05,
        max_steps=40,
        eval_every=1000,
        checkpoint_every=1000,
        log_every=10,
        progress=False,
        device="cpu",
    )
    result = train(model, tiny_dataset(x), tmp_path / "run", config)
    assert result["status"] == "finished"
    with torch.no_grad():
        assert model.loss(x).item() < before - 0.5


# NaiveBayes and classifiers


@pytest.fixture(scope="module")
def digits():
    from genzoo.data import load_dataset

    return load_dataset("digits")


def test_naive_bayes_counts_match_a_hand_computation():
    x = torch.tensor([[0, 1], [0, 2], [2, 2], [1, 1]]).reshape(4, 1, 1, 2)
    y = torch.tensor([0, 0, 1, 0])
    model = genzoo.create("naive-bayes", image_shape=(1, 1, 2), levels=3, num_classes=2).fit(x, y, alpha=1.0)
    # class 0 has 3 images: pixel 0 took levels (0, 0, 1), pixel 1 took (1, 2, 1); class 1: (2), (2)
    expected = torch.tensor(
        [[[2 + 1, 1 + 1, 0 + 1], [0 + 1, 2 + 1, 1 + 1]], [[0 + 1, 0 + 1, 1 + 1], [0 + 1, 0 + 1, 1 + 1]]]
    ).double()
    expected /= torch.tensor([3 + 3, 1 + 3]).double()[:, None, None]
    assert torch.allclose(model.log_theta().exp().double(), expected, atol=1e-6)
    assert torch.allclose(model.log_class_prior.exp().double(), torch.tensor([4 / 6, 2 / 6]).double(), atol=1e-6)
    with torch.no_grad():
        want = math.log(expected[0, 0, 0] * expected[0, 1, 1])
        assert model.log_prob(x[:1], torch.tensor([0])).item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="class-conditional"):
        model.log_prob(x)


@pytest.mark.parametrize("shape,levels", [((1, 2, 3), 2), ((1, 2, 2), 3)])
def test_naive_bayes_is_normalized_per_class_and_posteriors_sum_to_one(shape, levels):
    g = torch.Generator().manual_seed(0)
    model = genzoo.create("naive-bayes", image_shape=shape, levels=levels, num_classes=3)
    model.fit(torch.randint(0, levels, (12, *shape), generator=g), torch.arange(12) % 3, alpha=0.5)
    images = all_images(shape, levels)
    with torch.no_grad():
        for c in range(3):
            log_p = model.log_prob(images, torch.full((len(images),), c)).double()
            assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-5)
        assert torch.allclose(model.predict_log_proba(images).exp().sum(1), torch.ones(len(images)), atol=1e-5)
        samples = model.sample(20000, torch.tensor(1), generator=torch.Generator().manual_seed(1))
        assert chi_square_p(samples, model.log_prob(images, torch.tensor(1)), levels) > 1e-3


def test_naive_bayes_on_digits_and_the_generic_classifier_agrees(digits):
    from genzoo.classify import GenerativeClassifier

    x, y = digits.train.images.long(), digits.train.labels
    x_test, y_test = digits.test.images.long(), digits.test.labels
    model = genzoo.create("naive-bayes", image_shape=digits.image_shape, levels=digits.levels).fit(x, y)
    with torch.no_grad():
        accuracy = (model.predict(x_test) == y_test).double().mean().item()
        assert accuracy > 0.8
        generic = GenerativeClassifier(model, model.log_class_prior, batch_size=100)
        assert torch.allclose(generic.predict_log_proba(x_test), model.predict_log_proba(x_test).double(), atol=1e-4)
        assert torch.equal(generic.predict(x_test), model.predict(x_test))
        assert generic.accuracy(x_test, y_test) == pytest.approx(accuracy)


def test_generic_classifier_from_per_class_mixtures(digits):
    """A list of unconditional explicit models (one EM mixture per class) classifies digits too."""
    from genzoo.classify import GenerativeClassifier, log_prior_from_labels

    x, y = digits.train.images.long(), digits.train.labels
    models = []
    for c in range(10):
        model = DiscreteMixture(digits.image_shape, digits.levels, components=3)
        model.fit_em(x[y == c], iterations=10, generator=torch.Generator().manual_seed(c))
        models.append(model)
    classifier = GenerativeClassifier(models, log_prior_from_labels(y, 10))
    assert classifier.accuracy(digits.test.images.long(), digits.test.labels) > 0.8


def test_logistic_regression_baseline(digits):
    from genzoo.classify import LogisticRegressionClassifier

    x, y = digits.train.images.long(), digits.train.labels
    classifier = LogisticRegressionClassifier(10, digits.levels).fit(x[:300], y[:300])
    log_p = classifier.predict_log_proba(digits.test.images.long())
    assert torch.allclose(log_p.exp().sum(1), torch.ones(len(log_p), dtype=torch.float64))
    assert classifier.accuracy(digits.test.images.long(), digits.test.labels) > 0.85


# learning curves and Gaussian mixtures


def test_stratified_subsets_keep_every_class():
    from genzoo.tasks.learning_curve import stratified_subset

    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    index = stratified_subset(labels, 10, seed=0)
    assert len(index) == len(index.unique()) == 10
    assert torch.bincount(labels[index]).tolist() == [5, 3, 2]
    assert stratified_subset(labels, 3, seed=1).numel() == 3
    with pytest.raises(ValueError, match="size"):
        stratified_subset(labels, 2, seed=0)


def test_learning_curve_on_digits_writes_csv_and_png(digits, tmp_path):
    import csv

    from PIL import Image

    from genzoo.tasks.learning_curve import learning_curve, plot_learning_curve, write_csv

    rows = learning_curve(digits, sizes=[20, 100], seeds=[0, 1])
    assert [(r["classifier"], r["size"]) for r in rows] == [
        ("naive-bayes", 20),
        ("naive-bayes", 100),
        ("logistic-regression", 20),
        ("logistic-regression", 100),
    ]
    for r in rows:
        assert r["seeds"] == 2 and 0 <= r["error_mean"] <= 1 and r["error_sd"] >= 0 and len(r["errors"]) == 2
    write_csv(rows, tmp_path / "curve.csv")
    plot_learning_curve(rows, tmp_path / "curve.png", title="digits")
    with open(tmp_path / "curve.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert Image.open(tmp_path / "curve.png").size == (720, 480)


def test_gaussian_mixture_clusters_well_separated_blobs():
    from sklearn.datasets import make_blobs

    from genzoo.tasks.gmm import GaussianMixtureModel, cluster_scores

    x, truth = make_blobs(n_samples=600, centers=4, cluster_std=0.5, random_state=0)
    for covariance in ("full", "diag"):
        gmm = GaussianMixtureModel(components=4, covariance=covariance, seed=0).fit(torch.from_numpy(x))
        scores = cluster_scores(truth, gmm.predict(x))
        assert scores["ari"] > 0.9 and scores["nmi"] > 0.9
        assert gmm.score(x) == pytest.approx(float(gmm.score_samples(x).mean()))
    assert cluster_scores([0, 0, 1, 1], [1, 1, 0, 0]) == {"ari": 1.0, "nmi": 1.0}


def test_one_component_em_equals_naive_bayes_counting(digits):
    """With K=1 the E-step is trivial and the M-step is naive Bayes' smoothed counting, per class."""
    x, y = digits.train.images, digits.train.labels
    nb = genzoo.create("naive-bayes", image_shape=digits.image_shape, levels=digits.levels, alpha=0.5).fit(x, y)
    for c in (0, 7):
        mixture = DiscreteMixture(digits.image_shape, digits.levels, components=1, prior=0.5)
        mixture.fit_em(x[y == c], iterations=3)
        with torch.no_grad():
            test = digits.test.images
            assert torch.allclose(mixture.log_prob(test), nb.log_prob(test, torch.tensor(c)), rtol=1e-5, atol=1e-3)
