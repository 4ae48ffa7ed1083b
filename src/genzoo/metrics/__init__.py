"""Sample-quality metrics for any model with ``sample()``, computed offline in a feature network's space.

Features come from ``genzoo.metrics.feature_net`` (a small CNN trained on the dataset, cached in the data
root). Between a set of generated images and a reference set of real ones:

- Fréchet distance [1]: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to
  the two feature sets, in squared feature units. (FID is this on Inception-v3 features; ours are the
  dataset's own, so values compare models on one dataset only.) Biased upwards for small sets.
- KID [2]: the unbiased estimate of MMD^2 with the kernel k(a, b) = (a.b / d + 1)^3, averaged over
  random subsets; reported as mean and standard deviation over the subsets. (Features are standardized
  by the train split's statistics, so that the kernel sees values of order 1.)
- Precision and recall [3]: the fraction of generated samples inside the real manifold (the union of
  balls around each real feature vector reaching its k-th nearest real neighbour), and the fraction of
  real images inside the generated manifold. Precision measures fidelity, recall diversity.
- Class statistics from the feature network's classifier (datasets with labels, and binary MNIST, judged
  by a digit classifier trained on binarized MNIST digits with their labels): the histogram of the
  predicted classes of the samples (mode collapse shows as empty classes and low entropy), and for
  class-conditional samples the accuracy with which the classifier recovers the requested class.

Every metric is also computed between two real sets, a held-out split and the train reference (the
"floor"): a model cannot be expected to score better than held-out real data of the same size. The
held-out images are a seeded random subset of the split, never its first N: a split stored in some order
(binarized MNIST's test split is sorted by class) would otherwise give a floor of a few classes only.
Fréchet distance and KID shrink as N grows (FD is biased upwards by roughly d/N-order terms), so compare a
score only with the floor of the same N.

[1] M. Heusel et al. GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium.
    NeurIPS 2017.
[2] M. Bińkowski, D. J. Sutherland, M. Arbel, A. Gretton. Demystifying MMD GANs. ICLR 2018.
[3] T. Kynkäänniemi, T. Karras, S. Laine, J. Lehtinen, T. Aila. Improved Precision and Recall Metric for
    Assessing Generative Models. NeurIPS 2019.
"""

from __future__ import annotations

import numpy as np
import torch


def _array(x) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x.astype(np.float64).reshape(len(x), -1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (eigenvalues below 0 clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0.0))) @ vectors.T


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, d) and b (M, d) [1].

    Tr (S_a S_b)^(1/2) = Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2), a symmetric PSD matrix: its eigenvalues give
    the trace without the complex round-off of a general matrix square root.
    """
    a, b = _array(a), _array(b)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0.0)).sum()
    value = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root
    return float(max(value, 0.0))


def kernel_distance(a, b, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID [2]: (mean, standard deviation) over ``num_subsets`` random subsets of the unbiased MMD^2.

    Subsets hold ``subset_size`` vectors of each set, at most half the smaller set (so that they differ).
    The estimate is unbiased for independent sets; sets that share vectors (a set and itself) come out
    slightly below 0, as a shared vector's self-similarity k(x, x) enters only the cross term.
    """
    a, b = _array(a), _array(b)
    m = min(subset_size, max(2, min(len(a), len(b)) // 2))
    if m < 2:
        raise ValueError("KID needs at least 2 feature vectors in each set")
    rng, d = np.random.default_rng(seed), a.shape[1]
    values = []
    for _ in range(num_subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2.0 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    radii = [torch.cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)]
    return torch.cat(radii)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Fraction of ``points`` within distance radii[j] of some centre j."""
    hits = [(torch.cdist(points[i : i + chunk], centres) <= radii).any(1) for i in range(0, len(points), chunk)]
    return float(torch.cat(hits).double().mean())


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall [3] of ``fake`` features against ``real`` ones, k-NN manifolds."""
    real, fake = torch.from_numpy(_array(real)), torch.from_numpy(_array(fake))
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} feature vectors in each set")
    precision = _inside(fake, real, _kth_neighbour_radii(real, k))
    recall = _inside(real, fake, _kth_neighbour_radii(fake, k))
    return precision, recall


def class_histogram(predicted, num_classes: int) -> list[int]:
    """How many samples fall in each class (predicted labels (N,) -> counts (num_classes,))."""
    return torch.bincount(torch.as_tensor(predicted).long().reshape(-1), minlength=num_classes).tolist()


def histogram_entropy_bits(counts) -> float:
    """Entropy of the class frequencies, bits (log2 of the class count when balanced, 0 for one class)."""
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no "-0.00" for a single class


def compare(
    features,
    reference,
    predicted=None,
    labels=None,
    num_classes=None,
    k: int = 3,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict:
    """Every metric of one feature set against a reference feature set (see the module docstring)."""
    precision, recall = precision_recall(reference, features, k)
    kid, kid_sd = kernel_distance(features, reference, kid_subsets, seed=seed)
    out = {
        "n": len(features),
        "frechet_distance": frechet_distance(features, reference),
        "kid": kid,
        "kid_sd": kid_sd,
        "precision": precision,
        "recall": recall,
    }
    if predicted is not None and num_classes:
        out["class_histogram"] = class_histogram(predicted, num_classes)
        out["class_entropy_bits"] = histogram_entropy_bits(out["class_histogram"])
        if labels is not None:
            out["classifier_accuracy"] = float(
                (torch.as_tensor(predicted) == torch.as_tensor(labels).cpu()).double().mean()
            )
    return out


def sample_metrics(
    samples: torch.Tensor,
    dataset,
    labels=None,
    *,
    data_dir=None,
    seed: int = 0,
    network=None,
    floor_split: str | None = "test",
    k: int = 3,
    kid_subsets: int = 100,
    inception: bool = True,
) -> dict:
    """Metrics of integer ``samples`` (N, C, H, W) in [0, levels) from a model trained on ``dataset``.

    The reference is a seeded random subset of the train split as large as the sample set (capped at
    the split). ``labels``: the classes the samples were drawn for (class-conditional models), for the
    classifier accuracy. ``floor_split``: the held-out split scored the same way (a seeded random subset
    of N of its images; labels from the split, or from ``network.known_labels`` for binarized MNIST's
    test split), reported under "floor"; None skips it. ``network``: a ``FeatureNet`` (default: the
    dataset's cached one, trained on first use under ``data_dir``; for binary MNIST a digit classifier
    trained on MNIST). ``inception``: also the standard FID ("fid_inception") when pytorch-fid and its
    weights are available locally, else that entry is None. Returns a JSON-able dict.
    """
    from genzoo.metrics.feature_net import feature_network

    samples = torch.as_tensor(samples).long().cpu()
    if (
        tuple(samples.shape[1:]) != tuple(dataset.image_shape)
        or samples.numel() == 0
        or int(samples.min()) < 0
        or int(samples.max()) >= dataset.levels
    ):
        raise ValueError(
            f"samples must be integer images (N, {', '.join(map(str, dataset.image_shape))}) "
            f"in [0, {dataset.levels}) for {dataset.name}"
        )
    net = network if network is not None else feature_network(dataset, data_dir, seed=seed)
    classes = net.num_classes if net.is_classifier else None
    generator = torch.Generator().manual_seed(seed)
    m = min(len(samples), len(dataset.train))
    real, _ = dataset.train.batch(torch.randperm(len(dataset.train), generator=generator)[:m], generator)
    reference, _ = net.embed(real)
    features, predicted = net.embed(samples)
    result = {
        "dataset": dataset.name,
        "reference": {"split": "train", "n": m},
        "feature_net": {
            "kind": "classifier" if classes else "autoencoder",
            "test_accuracy": net.test_accuracy,
            "accuracy_on": getattr(net, "accuracy_split", None),
            "trained_on": getattr(net, "trained_on", None),
            "file": getattr(net, "cache_file", None),
        },
        **compare(features, reference, predicted, labels, classes, k, kid_subsets, seed),
    }
    result["fid_inception"] = inception_fid(samples, real, dataset.levels) if inception else None
    if floor_split is not None:
        split = dataset.split(floor_split)
        n = min(len(samples), len(split))
        index = torch.randperm(len(split), generator=generator)[:n]
        held_out, held_labels = split.batch(index, generator)
        known = getattr(net, "known_labels", {}).get(floor_split)
        if held_labels is None and known is not None and len(known) == len(split):
            held_labels = known[index]
        features, predicted = net.embed(held_out)
        result["floor"] = {
            "split": floor_split,
            **compare(features, reference, predicted, held_labels, classes, k, kid_subsets, seed),
        }
    return result


def inception_fid(samples: torch.Tensor, real: torch.Tensor, levels: int, batch_size: int = 50) -> float | None:
    """The standard FID [1]: the Fréchet distance of Inception-v3 pool features, computed with the
    pytorch-fid package's network when it is installed and its weights are available locally (its torch
    hub cache); None otherwise (genzoo never downloads them itself)."""
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError:
        return None
    try:
        net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    except (OSError, RuntimeError, ValueError):  # weights neither cached nor downloadable
        return None

    @torch.no_grad()
    def pool_features(images: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].float() / (levels - 1)  # [0, 1]; the net resizes to 299
            out.append(net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)[0].flatten(1))
        return torch.cat(out)

    return frechet_distance(pool_features(samples), pool_features(real))


def summary_line(m: dict) -> str:
    """One line: FD, KID, precision/recall (and class coverage), each with the value of held-out real
    images of the same number in parentheses (the floor; for accuracy, the ceiling)."""
    floor = m.get("floor") or {}

    def with_floor(key: str, fmt: str) -> str:
        text = format(m[key], fmt)
        return f"{text} (real {format(floor[key], fmt)})" if key in floor else text

    parts = [
        f"FD {with_floor('frechet_distance', '.3f')}",
        f"KID {m['kid']:.4f} ± {m['kid_sd']:.4f}" + (f" (real {floor['kid']:.4f})" if "kid" in floor else ""),
        f"precision {with_floor('precision', '.3f')}",
        f"recall {with_floor('recall', '.3f')}",
    ]
    if "class_histogram" in m:
        parts.append(
            f"classes {sum(c > 0 for c in m['class_histogram'])}/{len(m['class_histogram'])} "
            f"(entropy {m['class_entropy_bits']:.2f} bits)"
        )
    if "classifier_accuracy" in m:
        parts.append(f"conditional accuracy {with_floor('classifier_accuracy', '.3f')}")
    return f"{', '.join(parts)} over {m['n']} samples"
