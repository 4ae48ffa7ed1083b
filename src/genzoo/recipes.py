"""The papers' training recipes, as named presets: ``genzoo train MODEL --preset NAME``.

A recipe fixes the model's options, the dataset and the TrainConfig fields its paper (or the authors'
released code) states; flags given beside ``--preset`` override them. ``figure`` is the paper's reported
test figure, marked "unconfirmed" where no stored copy of the paper or code let us check it. Sources
and the full notes are in benchmarks/PAPERS.md; measured results in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    description: str
    paper: str
    figure: str  # the paper's test figure, with its kind and whether we could confirm it
    data: str = "binarized-mnist"
    options: dict[str, Any] = field(default_factory=dict)  # model options
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields


RECIPES: dict[str, dict[str, Recipe]] = {
    "nade": {
        "larochelle2011": Recipe(
            "NADE, 500 sigmoid hidden units, raster order, early stopping on validation",
            "H. Larochelle, I. Murray. The Neural Autoregressive Distribution Estimator. AISTATS 2011",
            "88.86 nats, exact (unconfirmed: quoted by later papers; the stored copy lacks the table)",
            options={"hidden": 500},
            train={"batch_size": 100, "lr": 1e-3, "max_epochs": 200, "eval_every": 500, "patience": 20},
        ),
    },
    "made": {
        "germain2015-1mask": Recipe(
            "MADE, one hidden layer of 8000 ReLU units, one mask (ordering and connectivity fixed)",
            "M. Germain, K. Gregor, I. Murray, H. Larochelle. MADE. ICML 2015",
            "88.40 nats, exact (unconfirmed)",
            options={"hidden": [8000], "num_masks": 1},
            train={"batch_size": 100, "lr": 1e-3, "max_epochs": 200, "eval_every": 500, "patience": 30},
        ),
        "germain2015-32masks": Recipe(
            "MADE, one hidden layer of 8000 ReLU units, 32 masks cycled per minibatch, mixture at test",
            "M. Germain, K. Gregor, I. Murray, H. Larochelle. MADE. ICML 2015",
            "86.64 nats, exact (unconfirmed which configuration it is)",
            options={"hidden": [8000], "num_masks": 32},
            train={"batch_size": 100, "lr": 1e-3, "max_epochs": 400, "eval_every": 500, "patience": 30},
        ),
    },
    "rbm": {
        "salakhutdinov2008-cd1": Recipe(
            "RBM, 500 hidden units, CD-1; SGD lr 0.05, momentum 0.9, weight decay 2e-4, batch 100",
            "R. Salakhutdinov, I. Murray. On the quantitative analysis of deep belief networks. ICML 2008",
            "125.53 nats, AIS estimate (unconfirmed)",
            options={"hidden": 500, "cd_steps": 1},
            train={
                "batch_size": 100,
                "optimizer": "sgd",
                "lr": 0.05,
                "momentum": 0.9,
                "weight_decay": 2e-4,
                "grad_clip": None,
                "max_epochs": 200,
                "eval_every": 5000,
            },  # fmt: skip
        ),
    },
}


class UnknownRecipeError(ValueError):
    pass


def recipe(model: str, name: str) -> Recipe:
    """The recipe ``name`` of ``model``; a ValueError that lists the known ones otherwise."""
    known = RECIPES.get(model, {})
    if name not in known:
        choices = ", ".join(sorted(known)) or "none"
        raise UnknownRecipeError(f"model {model!r} has no recipe {name!r}; its recipes: {choices}")
    return known[name]
