"""The papers' training recipes, as named presets: ``genzoo train MODEL --preset NAME``.

A recipe fixes the model's options, the dataset and the TrainConfig fields its paper (or the authors'
released code) states; flags given beside ``--preset`` override them. ``figure`` is the paper's reported
test figure, marked "unconfirmed" where no stored copy of the paper or code let us check it. Sources
and the full notes are in benchmarks/PAPERS.md; measured results in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genzoo.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    description: str
    paper: str
    figure: str  # the paper's test figure, with its kind and whether we could confirm it
    data: str = "binarized-mnist"
    test_data: str | None = None  # scored on this dataset's test split instead (e.g. trained on dynamic-mnist)
    options: dict[str, Any] = field(default_factory=dict)  # model options
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields


LAROCHELLE2011 = "H. Larochelle, I. Murray. The Neural Autoregressive Distribution Estimator. AISTATS 2011"
GERMAIN2015 = (
    "M. Germain, K. Gregor, I. Murray, H. Larochelle. MADE: Masked Autoencoder for Distribution Estimation. ICML 2015"
)
SALAKHUTDINOV2008 = "R. Salakhutdinov, I. Murray. On the quantitative analysis of deep belief networks. ICML 2008"
BURDA2016 = "Y. Burda, R. Grosse, R. Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016"
PYTHAE = "C. Chadebec et al. Pythae: Unifying Generative Autoencoders in Python. NeurIPS 2022 (benchmark_VAE)"

# Salakhutdinov's RBM code: SGD on the batch-mean gradient, lr 0.05, momentum 0.9 (0.5 for 5 epochs:
# not reproduced), weight cost 2e-4, batches of 100; no gradient clipping.
_RBM_SGD = {"batch_size": 100, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 2e-4,
            "grad_clip": None}  # fmt: skip
_EARLY_STOP = {"eval_every": 500, "patience": 20}  # validate every 500 steps, stop after 20 without a new best
_NO_CLIP = {"grad_clip": None}  # the papers clip no gradients

RECIPES: dict[str, dict[str, Recipe]] = {
    "nade": {
        "larochelle2011": Recipe(
            "NADE, 500 sigmoid hidden units, raster order; Adam (the paper: SGD, lr picked on validation), batch "
            "100, early stopping on the validation NLL",
            LAROCHELLE2011,
            "88.86 nats, exact (unconfirmed: quoted by later papers; the stored copy lacks the table)",
            options={"hidden": 500},
            train={"batch_size": 100, "lr": 1e-3, "max_epochs": 300, **_EARLY_STOP, **_NO_CLIP},
        ),
    },
    "made": {
        "germain2015-1mask": Recipe(
            "MADE, one hidden layer of 8000 ReLU units, one mask (random ordering and connectivity); Adam "
            "(the authors' code: Adagrad lr 0.01), batch 100, early stopping",
            GERMAIN2015,
            "88.40 nats, exact (unconfirmed which configuration of the paper's table it is)",
            options={"hidden": [8000], "num_masks": 1},
            train={"batch_size": 100, "lr": 1e-3, "max_epochs": 300, "eval_every": 500, "patience": 30, **_NO_CLIP},
        ),
        "germain2015-32masks": Recipe(
            "MADE, one hidden layer of 8000 ReLU units, 32 masks cycled one per minibatch, scored as the exact "
            "mixture of the 32; Adam, batch 100, early stopping",
            GERMAIN2015,
            "86.64 nats, exact (unconfirmed which configuration it is; the authors' code reaches its best with "
            "2 hidden layers and 32 masks)",
            options={"hidden": [8000], "num_masks": 32},
            train={"batch_size": 100, "lr": 1e-3, "max_epochs": 600, "eval_every": 1000, "patience": 30, **_NO_CLIP},
        ),
    },
    "fvsbn": {
        "larochelle2011": Recipe(
            "FVSBN: 784 logistic regressions in raster order; Adam, batch 100, early stopping",
            LAROCHELLE2011 + " (its baseline table)",
            "97.45 nats, exact (unconfirmed)",
            train={"batch_size": 100, "lr": 1e-3, "max_epochs": 300, **_EARLY_STOP, **_NO_CLIP},
        ),
    },
    "bernoulli-mixture": {
        "larochelle2011": Recipe(
            "mixture of 500 products of Bernoullis, fitted by EM (Laplace-smoothed M-step)",
            LAROCHELLE2011 + " (its baseline table; the figure is that of Salakhutdinov & Hinton 2009)",
            "137.64 nats, exact (confirmed in a copy of Salakhutdinov & Hinton, Deep Boltzmann Machines, 2009)",
            options={"components": 500, "prior": 1.0},
            train={"max_steps": 1},
        ),
    },
    "rbm": {
        "salakhutdinov2008-cd1": Recipe(
            "RBM, 500 hidden units, CD-1; Salakhutdinov's update rule",
            SALAKHUTDINOV2008,
            "125.53 nats, AIS estimate (unconfirmed)",
            options={"hidden": 500, "cd_steps": 1},
            train={**_RBM_SGD, "max_epochs": 200, "eval_every": 10_000},
        ),
        "salakhutdinov2008-cd3": Recipe(
            "RBM, 500 hidden units, CD-3; Salakhutdinov's update rule",
            SALAKHUTDINOV2008,
            "105.50 nats, AIS estimate (unconfirmed)",
            options={"hidden": 500, "cd_steps": 3},
            train={**_RBM_SGD, "max_epochs": 200, "eval_every": 10_000},
        ),
        "salakhutdinov2008-cd25": Recipe(
            "RBM, 500 hidden units, CD-k with k raised linearly from 1 to 25 over the first 100 epochs, then "
            "CD-25 for 100 more; Salakhutdinov's update rule",
            SALAKHUTDINOV2008,
            "86.34 nats, AIS estimate (unconfirmed; the released CD25(500) model is confirmed)",
            options={"hidden": 500, "cd_steps": 25, "cd_ramp_steps": 50_000},
            train={**_RBM_SGD, "max_epochs": 200, "eval_every": 10_000},
        ),
        "salakhutdinov2008-cd25-dynamic": Recipe(
            "the CD-25 recipe trained on MNIST binarized afresh at every draw (as Salakhutdinov's code "
            "re-binarizes each minibatch), scored on the static binarized MNIST test split",
            SALAKHUTDINOV2008,
            "86.34 nats, AIS estimate (unconfirmed)",
            data="dynamic-mnist",
            test_data="binarized-mnist",
            options={"hidden": 500, "cd_steps": 25, "cd_ramp_steps": 50_000},
            train={**_RBM_SGD, "max_epochs": 200, "eval_every": 10_000},
        ),
        "tieleman2008-pcd": Recipe(
            "RBM, 500 hidden units, persistent CD (100 chains, 1 sweep per update); SGD lr 0.01 (PCD needs a "
            "smaller rate than CD), momentum 0.9, weight cost 2e-4",
            "T. Tieleman. Training restricted "
            "Boltzmann machines using approximations to the likelihood gradient. ICML 2008",
            "no MNIST log-likelihood figure confirmed",
            options={"hidden": 500, "persistent": True, "num_chains": 100},
            train={**_RBM_SGD, "lr": 0.01, "max_epochs": 200, "eval_every": 10_000},
        ),
    },
    "dbn": {
        "salakhutdinov2008": Recipe(
            "DBN 784-500-2000 trained greedily, each layer an RBM by PCD (CD-1 tops grow modes their chains never "
            "visit: benchmarks/RESULTS.md) for 100 epochs; Salakhutdinov's update rule at lr 0.01",
            SALAKHUTDINOV2008,
            "86.22 nats lower bound; 84.55 a later estimate of the same DBN (both unconfirmed)",
            options={"hidden": [500, 2000], "persistent": True, "steps_per_layer": 50_000},
            train={**_RBM_SGD, "lr": 0.01, "max_steps": 100_000, "eval_every": 10_000},
        ),
    },
    "vae": {
        "pythae": Recipe(
            "VAE 784-400-40 with ReLU, Bernoulli decoder; Adam lr 1e-4, batch 100, 500 epochs (pythae's "
            "benchmark; its step-down of the lr at epochs 200 and 350 is not reproduced), best-validation weights",
            PYTHAE,
            "89.78 nats, importance-sampled with k=200 (confirmed in the benchmark_VAE README)",
            options={"hidden": [400], "latent": 40, "activation": "relu"},
            train={"batch_size": 100, "lr": 1e-4, "max_epochs": 500, "eval_every": 2500, "patience": 20, **_NO_CLIP},
        ),
        "burda2016": Recipe(
            "VAE 784-200-200-50 tanh, one stochastic layer, k=1; Adam lr 1e-3 (eps: torch's), batch 20, the "
            "paper's 3^i schedule compressed to stages of 1, 3, 9, 27, 81 epochs (121 epochs)",
            BURDA2016,
            "86.76 nats with k=5000 on DYNAMICALLY binarized MNIST (unconfirmed; ~2 nats worse on this static "
            "split, per the IWAE code's README)",
            options={"hidden": [200, 200], "latent": 50},
            train={
                "batch_size": 20,
                "lr": 1e-3,
                "max_epochs": 121,
                "eval_every": 5000,
                "schedule": "exponential",
                **_NO_CLIP,
                "lr_decay": 0.1 ** (1 / 375_000),  # down to lr/10 at the end, the paper's range
            },  # fmt: skip
        ),
    },
    "iwae": {
        "burda2016": Recipe(
            "IWAE 784-200-200-50 tanh, one stochastic layer, trained on the k=50 bound; Adam lr 1e-3, batch 20, "
            "lr decayed exponentially to 1e-4 over 150 epochs (the paper: 3280 epochs in 3^i stages)",
            BURDA2016 + "; static-split figure from " + PYTHAE,
            "86.82 nats, k=5000 (pythae, static split, confirmed in its README); 84.78 on dynamic MNIST "
            "(paper, unconfirmed)",
            options={"hidden": [200, 200], "latent": 50, "num_samples": 50},
            train={
                "batch_size": 20,
                "lr": 1e-3,
                "max_epochs": 150,
                "eval_every": 5000,
                "schedule": "exponential",
                **_NO_CLIP,
                "lr_decay": 0.1 ** (1 / 375_000),  # down to lr/10 at the end, the paper's range
            },  # fmt: skip
        ),
    },
}


class UnknownRecipeError(UsageError):
    pass


def recipe(model: str, name: str) -> Recipe:
    """The recipe ``name`` of ``model``; a ValueError that lists the known ones otherwise."""
    known = RECIPES.get(model, {})
    if name not in known:
        choices = ", ".join(sorted(known)) or "none"
        raise UnknownRecipeError(f"model {model!r} has no recipe {name!r}; its recipes: {choices}")
    return known[name]
