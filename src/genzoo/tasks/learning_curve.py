"""Learning curves of a generative and a discriminative classifier, after Ng & Jordan (2002) [1].

Test error of naive Bayes and of logistic regression trained on stratified random subsets of the train
split, for growing subset sizes and several seeds; the curves typically cross: naive Bayes is better
with few examples, logistic regression with many.

    rows = learning_curve(load_dataset("digits"), sizes=[10, 20, 50, 100], seeds=[0, 1, 2])
    run_learning_curve("digits", None, "runs/learning-curve")   # CSV + PNG + the rows

[1] A. Y. Ng, M. I. Jordan. On discriminative vs. generative classifiers: a comparison of logistic
    regression and naive Bayes. NIPS 2002.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from genzoo.atomic import atomic_path
from genzoo.data.base import ImageDataset
from genzoo.errors import UsageError

# name -> factory(dataset) -> an unfitted classifier with fit(images, labels) and predict(images)
Factory = Callable[[ImageDataset], object]


def default_classifiers() -> dict[str, Factory]:
    """Naive Bayes (Laplace smoothing) and multinomial logistic regression on the same pixels."""
    from genzoo.classify import LogisticRegressionClassifier
    from genzoo.models.classic.naive_bayes import NaiveBayes

    return {
        "naive-bayes": lambda ds: NaiveBayes(ds.image_shape, ds.levels, ds.num_classes),
        "logistic-regression": lambda ds: LogisticRegressionClassifier(ds.num_classes, ds.levels),
    }


def default_sizes(num_train: int, num_classes: int) -> list[int]:
    """10, 20, 50, 100, 200, 500, ... below ``num_train`` (at least one per class), then ``num_train``."""
    sizes = [m * 10**e for e in range(1, 8) for m in (1, 2, 5)]
    return [s for s in sizes if num_classes <= s < num_train] + [num_train]


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of ``size`` examples drawn without replacement, class proportions kept (largest
    remainder), at least one per class. The same seed gives nested subsets for growing sizes, up to
    the rounding of the proportions."""
    labels = torch.as_tensor(labels).long().cpu()
    classes, counts = labels.unique(return_counts=True)
    if not len(classes) <= size <= len(labels):
        raise ValueError(f"size must be between the number of classes ({len(classes)}) and {len(labels)}, got {size}")
    rng = np.random.default_rng(seed)
    quota = 1 + (size - len(classes)) * (counts - 1).double() / max(int((counts - 1).sum()), 1)
    take = quota.floor().long()
    order = np.argsort(-(quota - take).numpy() + rng.random(len(classes)) * 1e-9, kind="stable")
    take[torch.from_numpy(order[: size - int(take.sum())].copy())] += 1
    picked = [
        np.flatnonzero(labels.numpy() == c)[rng.permutation(int(n))[: int(k)]]
        for c, n, k in zip(classes.tolist(), counts.tolist(), take.tolist())
    ]
    return torch.from_numpy(np.sort(np.concatenate(picked)))


def learning_curve(
    dataset: ImageDataset,
    sizes: Sequence[int],
    seeds: Sequence[int],
    classifiers: dict[str, Factory] | None = None,
    split: str = "test",
) -> list[dict]:
    """Error on ``split`` of each classifier trained on stratified subsets of the train split.

    Returns one row per (classifier, size): classifier, size, seeds (how many), error_mean, error_sd
    (sample standard deviation over seeds; 0 for one seed) and errors (the per-seed errors, in seed
    order). Sizes larger than the train split are dropped.
    """
    if dataset.train.labels is None or dataset.num_classes is None:
        raise ValueError(f"{dataset.name} has no labels: a learning curve needs a labelled dataset")
    classifiers = default_classifiers() if classifiers is None else classifiers
    train, test = dataset.train, dataset.split(split)
    x_test, y_test = test.batch(torch.arange(len(test)))
    sizes = sorted({int(s) for s in sizes if int(s) <= len(train)})
    rows = []
    for name, factory in classifiers.items():
        for size in sizes:
            errors = []
            for seed in seeds:
                index = stratified_subset(train.labels, size, seed)
                x, y = train.batch(index, torch.Generator().manual_seed(seed))
                predicted = factory(dataset).fit(x, y).predict(x_test)
                errors.append(float((torch.as_tensor(predicted).cpu() != y_test).double().mean()))
            rows.append(
                {
                    "classifier": name,
                    "size": size,
                    "seeds": len(errors),
                    "error_mean": statistics.fmean(errors),
                    "error_sd": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                    "errors": errors,
                }
            )
    return rows


def write_csv(rows: list[dict], path) -> Path:
    """One line per row; the per-seed errors joined by ';'. Written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["classifier", "size", "seeds", "error_mean", "error_sd", "errors"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "errors": ";".join(f"{e:.6f}" for e in row["errors"])})
    return path


def plot_learning_curve(rows: list[dict], path, title: str = "") -> Path:
    """Mean test error ± one standard deviation against the training-set size (log x), one line per classifier."""
    from genzoo.tasks.plot import line_plot

    series = []
    for name in dict.fromkeys(r["classifier"] for r in rows):
        mine = sorted((r for r in rows if r["classifier"] == name), key=lambda r: r["size"])
        series.append(
            {
                "label": name,
                "x": [r["size"] for r in mine],
                "y": [r["error_mean"] for r in mine],
                "err": [r["error_sd"] for r in mine],
            }
        )
    return line_plot(series, path, title=title, xlabel="training examples", ylabel="test error", logx=True)


def run_learning_curve(
    data_name: str = "digits",
    data_dir=None,
    out_dir="learning-curve",
    sizes: Sequence[int] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
) -> dict:
    """Load ``data_name``, run ``learning_curve`` (default sizes: ``default_sizes``), and write
    ``learning_curve.csv`` and ``learning_curve.png`` into ``out_dir``. Returns {"rows", "csv", "png"}."""
    from genzoo.data import load_dataset

    dataset = load_dataset(data_name, data_dir)
    if dataset.train.labels is None or dataset.num_classes is None:
        raise UsageError(f"{dataset.name} has no labels: a learning curve needs a labelled dataset")
    too_big = [s for s in sizes or () if s > len(dataset.train)]
    if too_big:
        raise UsageError(f"--sizes {too_big[0]} exceeds the {len(dataset.train)} training images of {dataset.name}")
    sizes = default_sizes(len(dataset.train), dataset.num_classes or 1) if sizes is None else sizes
    rows = learning_curve(dataset, sizes, seeds)
    out = Path(out_dir)
    csv_path = write_csv(rows, out / "learning_curve.csv")
    title = f"{dataset.name}: naive Bayes vs logistic regression, {len(seeds)} seeds (Ng & Jordan 2002)"
    png_path = plot_learning_curve(rows, out / "learning_curve.png", title=title)
    return {"rows": rows, "csv": str(csv_path), "png": str(png_path)}
