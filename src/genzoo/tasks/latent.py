"""Uses of a trained model's latent space: codes, a linear probe, clustering, a 2-D map, interpolation
and reconstruction (``genzoo latent RUN ACTION``).

Works with any model that has ``code(x, y=None)`` -> deterministic codes (N, latent) and
``decode_images(z, y=None, generator=, mean=)`` -> integer images: the VAE family (the posterior mean,
pushed through the flow when there is one) and the auto-encoder (its code). For a class-conditional
VAE the codes are those of q(z | x, y) with the TRUE labels, so a probe or a clustering of them
measures the label information left in z beside y (a CVAE aims for little), not what z alone
discovered. Images decoded from codes show each subpixel's mean level by default (``mean=True``), or
draws from p(x | z) (``mean=False``); for the PixelCNN decoder both go subpixel by subpixel.

Scores: linear-probe accuracy (multinomial logistic regression, L2, on standardized codes of the
train split, scored on the requested split) against the majority-class rate; clustering by a Gaussian
mixture fitted to the train codes (``genzoo.tasks.gmm``), scored on the requested split by
adjusted Rand index and normalized mutual information against the labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genzoo.atomic import atomic_path
from genzoo.data.base import ImageSplit
from genzoo.errors import UsageError


def _images(split: ImageSplit, index: torch.Tensor, seed: int):
    """(x, y) of the rows ``index``; a fixed draw for dynamically binarized splits."""
    return split.batch(index, torch.Generator().manual_seed(seed))


@torch.no_grad()
def encode_split(model, split: ImageSplit, batch_size: int = 500, seed: int = 0):
    """(codes float32 (N, latent), labels int64 (N,) or None) of every image of ``split``, as numpy arrays."""
    x, y = _images(split, torch.arange(len(split)), seed)
    was_training = model.training
    model.eval()
    codes = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(model.device)
        yb = None if y is None or not model.conditional else y[start : start + batch_size].to(model.device)
        codes.append(model.code(xb, yb).float().cpu())
    model.train(was_training)
    codes = torch.cat(codes) if codes else torch.zeros(0, 0)
    return codes.numpy(), None if y is None else y.long().numpy()


def _standardize(train: np.ndarray, other: np.ndarray):
    mean, std = train.mean(0), train.std(0) + 1e-8
    return (train - mean) / std, (other - mean) / std


def _labelled(dataset, split_name: str, model, seed: int):
    train_codes, train_labels = encode_split(model, dataset.train, seed=seed)
    codes, labels = encode_split(model, dataset.split(split_name), seed=seed)
    if train_labels is None or labels is None:
        raise UsageError(f"dataset {dataset.name} has no labels")
    return train_codes, train_labels, codes, labels


def linear_probe(model, dataset, split: str = "test", C: float = 1.0, seed: int = 0) -> dict:
    """Accuracy of a linear classifier of the labels from the codes: fitted on the train split's codes,
    scored on ``split``'s; with the majority-class rate of ``split`` ("chance") for comparison."""
    from genzoo.classify import LogisticRegressionClassifier

    train_codes, train_labels, codes, labels = _labelled(dataset, split, model, seed)
    train_codes, codes = _standardize(train_codes, codes)
    classes = int(dataset.num_classes or max(train_labels.max(), labels.max()) + 1)
    # levels=2 makes the classifier's pixel scaling x / (levels - 1) the identity on these real codes
    probe = LogisticRegressionClassifier(classes, levels=2, C=C)
    probe.fit(torch.from_numpy(train_codes), torch.from_numpy(train_labels))
    return {
        "accuracy": probe.accuracy(torch.from_numpy(codes), torch.from_numpy(labels)),
        "train_accuracy": probe.accuracy(torch.from_numpy(train_codes), torch.from_numpy(train_labels)),
        "chance": float(np.bincount(labels).max() / len(labels)),
        "n_train": len(train_labels),
        "n": len(labels),
        "latent": int(codes.shape[1]),
        "split": split,
    }


def cluster_codes(
    model, dataset, split: str = "test", components: int | None = None, seed: int = 0, restarts: int = 3
) -> dict:
    """A Gaussian mixture (full covariances, ``components`` = the number of classes by default, the best
    of ``restarts`` EM runs) fitted to the standardized train codes; ARI and NMI of its assignments of
    ``split``'s codes against the labels."""
    from genzoo.tasks.gmm import GaussianMixtureModel, cluster_scores

    train_codes, _, codes, labels = _labelled(dataset, split, model, seed)
    train_codes, codes = _standardize(train_codes, codes)
    components = int(components or dataset.num_classes or 10)
    mixture = GaussianMixtureModel(components, covariance="full", seed=seed, restarts=restarts).fit(train_codes)
    return {
        **cluster_scores(labels, mixture.predict(codes)),
        "components": components,
        "n": len(labels),
        "split": split,
    }


def project_2d(codes: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Codes (N, d) -> (N, 2): themselves when d <= 2 (padded with zeros for d = 1), else their first
    two principal components; with the fraction of the variance each axis holds."""
    centred = codes - codes.mean(0)
    total = float((centred**2).sum()) or 1.0
    if codes.shape[1] <= 2:
        points = np.pad(codes, ((0, 0), (0, 2 - codes.shape[1])))
        return points, [float((centred[:, i] ** 2).sum() / total) if i < codes.shape[1] else 0.0 for i in range(2)]
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, [float(v) for v in s[:2] ** 2 / total]


def latent_map(model, split: ImageSplit, path, max_points: int = 2000, seed: int = 0) -> dict:
    """A PNG scatter of the codes of (the first ``max_points`` images of) ``split`` in 2-D, coloured by
    label: the codes themselves for 1 or 2 latent dimensions, else their first two principal components."""
    from genzoo.tasks.plot import scatter_plot

    codes, labels = encode_split(model, split, seed=seed)
    codes, labels = codes[:max_points], None if labels is None else labels[:max_points]
    points, explained = project_2d(codes)
    pca = codes.shape[1] > 2
    names = [f"PC{i + 1} ({100 * e:.0f}% of variance)" if pca else f"z{i + 1}" for i, e in enumerate(explained)]
    path = scatter_plot(
        points,
        labels,
        path,
        title=f"latent codes of {len(codes)} images" + (f" (PCA of {codes.shape[1]} dimensions)" if pca else ""),
        xlabel=names[0],
        ylabel=names[1],
    )
    return {"path": str(path), "n": len(codes), "latent": int(codes.shape[1]), "explained_variance": explained}


@torch.no_grad()
def interpolate(
    model, split: ImageSplit, pairs: list[tuple[int, int]], steps: int = 10, seed: int = 0, mean: bool = True
) -> torch.Tensor:
    """For each pair (a, b) of image indices: image a, ``steps`` images decoded along the straight line
    from code(a) to code(b) (both ends included), image b. Returns (pairs, steps + 2, C, H, W); a
    conditional model decodes the whole row with image a's label."""
    index = torch.tensor([i for pair in pairs for i in pair])
    x, y = _images(split, index, seed)
    x = x.to(model.device)
    y = None if y is None or not model.conditional else y.to(model.device)
    model.eval()
    codes = model.code(x, y)
    start, end = codes[0::2], codes[1::2]
    t = torch.linspace(0.0, 1.0, steps, device=codes.device)[None, :, None]
    line = (1 - t) * start[:, None] + t * end[:, None]  # (pairs, steps, latent)
    labels = None if y is None else y[0::2].repeat_interleave(steps)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    decoded = model.decode_images(line.reshape(-1, codes.shape[1]), labels, generator=generator, mean=mean)
    decoded = decoded.reshape(len(pairs), steps, *x.shape[1:]).cpu()
    return torch.cat([x[0::2, None].cpu(), decoded, x[1::2, None].cpu()], 1)


@torch.no_grad()
def reconstruct(model, split: ImageSplit, indices: list[int], seed: int = 0, mean: bool = True) -> torch.Tensor:
    """Originals above their reconstructions decode(code(x)): (2, len(indices), C, H, W)."""
    x, y = _images(split, torch.tensor(indices), seed)
    x = x.to(model.device)
    y = None if y is None or not model.conditional else y.to(model.device)
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    recon = model.decode_images(model.code(x, y), y, generator=generator, mean=mean)
    return torch.stack([x.cpu(), recon.cpu()])


def save_array(path, array: np.ndarray) -> Path:
    """Write ``array`` as a .npy file (never pickled), atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return path


def save_codes(model, split: ImageSplit, path, seed: int = 0) -> dict:
    """The codes of every image of ``split`` to ``path`` (.npy, float32 (N, latent)) and, when the split
    has labels, the labels to the sibling ``<stem>.labels.npy`` (int64 (N,)), both without pickles."""
    codes, labels = encode_split(model, split, seed=seed)
    path = Path(path)
    out = {"codes": str(save_array(path, codes)), "n": len(codes), "latent": int(codes.shape[1])}
    if labels is not None:
        out["labels"] = str(save_array(path.with_name(f"{path.stem}.labels.npy"), labels))
    return out
