"""The feature network behind the sample-quality metrics: a small CNN trained on one dataset.

For a dataset with labels it is a classifier (cross-entropy on the train split); without labels, an
autoencoder (each subpixel's intensity in [0, 1] predicted with a Bernoulli cross-entropy). Binary MNIST
(``binarized-mnist``, ``dynamic-mnist``) gets a digit classifier too: it is trained on the labelled MNIST
train split binarized afresh at every draw, pixel ~ Bernoulli(grey / 255) -- the ``dynamic-mnist`` train
split -- so it sees binary digits like the data (see ``training_source``). Its features are the last
hidden layer (``features``, before the nonlinearity): the space in which ``genzoo.metrics`` measures
Fréchet distance, KID and precision/recall, the role Inception-v3's pool features play for ImageNet-like
images in Heusel et al. (2017). Scores in this space compare models on this dataset only; they are not
FID values.

    conv 3x3 (width) - ReLU - conv 3x3/2 (2 width) - ReLU - conv 3x3/2 (2 width) - ReLU - linear (features)
      -> ReLU - linear (classes)                            classifier head
      -> ReLU - linear (256) - ReLU - linear (C*H*W)        decoder head (no labels)

Training is reproducible: ``train_feature_network(dataset, seed)`` gives the same weights for the same
data, seed and settings (on the same machine), and leaves the caller's random state untouched.
``feature_network`` caches it as ``<data root>/<dataset>/feature_net-<hash>.safetensors`` (safetensors
with JSON metadata, never pickle), ``<dataset>`` being the one it was trained on (``dynamic-mnist`` for
both binary MNIST variants); the hash covers the settings, the binarization and the train split's bytes.

Binarized MNIST's test split is a class-sorted copy of the MNIST test set: image i is a Bernoulli(grey/255)
binarization of MNIST test image ``argsort(labels, stable)[i]`` (checked pixel by pixel in
``binarized_mnist_test_labels``), so it has labels after all; the classifier's accuracy is measured on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.checkpoint import load_tensors, save_tensors
from genzoo.data.base import DataError, DynamicallyBinarizedSplit

# Datasets whose feature network is trained on another, labelled one: the binary MNIST variants are
# judged by a digit classifier trained on dynamically binarized MNIST (the labelled MNIST train split).
LABELLED_SOURCE = {"binarized-mnist": "dynamic-mnist", "dynamic-mnist": "dynamic-mnist"}

FORMAT = "genzoo-feature-net/1"  # part of the cache hash: change it when the network or its training changes


class FeatureNet(nn.Module):
    """Integer images (N, C, H, W) in [0, levels) -> features (N, ``features``), and a head for training."""

    def __init__(self, image_shape, levels: int, num_classes: int | None = None, width: int = 32, features: int = 64):
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        self.image_shape, self.levels, self.num_classes = (c, h, w), int(levels), num_classes
        self.config = {
            "image_shape": [c, h, w],
            "levels": self.levels,
            "num_classes": num_classes,
            "width": width,
            "features": features,
        }
        size = math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2)
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * size, features),
        )
        out = num_classes if num_classes else c * h * w
        self.head = (
            nn.Sequential(nn.ReLU(), nn.Linear(features, out))
            if num_classes
            else nn.Sequential(nn.ReLU(), nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, out))
        )
        # standardization of the features by their train-split mean and sd, set after training
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.test_accuracy: float | None = None  # of the classifier on the test split, set after training
        self.trained_on: str | None = None  # the dataset (train split) it was trained on
        self.accuracy_split: str | None = None  # the images ``test_accuracy`` was measured on
        self.known_labels: dict[str, torch.Tensor] = {}  # labels of unlabelled splits (binarized MNIST test)

    @property
    def is_classifier(self) -> bool:
        return bool(self.num_classes)

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * (2.0 / (self.levels - 1)) - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The standardized last hidden layer (N, features)."""
        return (self.body(self.scaled(x)) - self.feature_mean) / self.feature_std

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy of the labels (classifier) or of the subpixel intensities (autoencoder), nats."""
        out = self.head(self.body(self.scaled(x)))
        if self.is_classifier:
            return F.cross_entropy(out, y)
        target = x.flatten(1).float() / (self.levels - 1)
        return F.binary_cross_entropy_with_logits(out, target, reduction="sum") / x.shape[0]

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features (N, F) float64, predicted classes (N,) or None) of integer images, in batches, on CPU."""
        device = next(self.parameters()).device
        feats, preds = [], []
        for start in range(0, len(images), batch_size):
            f = self.features(images[start : start + batch_size].to(device))
            feats.append(f.double().cpu())
            if self.is_classifier:
                preds.append(self.head(f * self.feature_std + self.feature_mean).argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds) if preds else None


def default_steps(num_images: int, batch_size: int) -> int:
    """About 5 epochs, at least 200 and at most 2000 updates."""
    return min(2000, max(200, math.ceil(5 * num_images / batch_size)))


def train_feature_network(
    dataset, seed: int = 0, steps: int | None = None, batch_size: int = 128, lr: float = 1e-3
) -> FeatureNet:
    """Train the feature network on ``dataset.train`` (Adam, ``steps`` updates of random batches)."""
    split = dataset.train
    steps = default_steps(len(split), batch_size) if steps is None else int(steps)
    classes = dataset.num_classes if split.labels is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(dataset.image_shape, dataset.levels, classes)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(steps):
            x, y = split.batch(torch.randint(len(split), (batch_size,), generator=generator), generator)
            loss = net.training_loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    net.eval()
    x, _ = split.batch(torch.arange(len(split)), torch.Generator().manual_seed(seed))
    features = net.embed(x)[0]
    net.feature_mean.copy_(features.mean(0).float())
    net.feature_std.copy_(features.std(0).float().clamp(min=1e-6))
    if net.is_classifier and dataset.test.labels is not None and len(dataset.test):
        x, y = dataset.test.batch(torch.arange(len(dataset.test)), torch.Generator().manual_seed(seed))
        net.test_accuracy = accuracy(net, x, y)
        net.accuracy_split = f"{dataset.name} test"
    net.trained_on = describe_training(dataset)
    return net


def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``images`` the classifier ``net`` assigns to ``labels``."""
    return float((net.embed(images)[1] == torch.as_tensor(labels)).double().mean())


def describe_training(dataset) -> str:
    """What a feature network trained on ``dataset`` saw, in words (recorded with its scores)."""
    split = dataset.train
    what = f"{dataset.name} train split ({len(split)} images{', labels' if split.labels is not None else ''})"
    if isinstance(split, DynamicallyBinarizedSplit):
        what += ", binarized afresh at every draw, pixel ~ Bernoulli(grey/255)"
    return what


def training_source(dataset, data_dir=None, download: bool = True):
    """The dataset whose train split trains the feature network of ``dataset``: itself, except for the
    binary MNIST variants, which get ``dynamic-mnist`` (labelled MNIST, binarized at every draw) loaded
    from ``data_dir`` (default: the root ``dataset`` was read from). DataError, saying why, when MNIST is
    not available: there is no silent fallback to an autoencoder."""
    from genzoo.data import load_dataset

    source = LABELLED_SOURCE.get(dataset.name)
    if source is None or source == dataset.name:
        return dataset
    root = data_root(dataset, data_dir)
    try:
        return load_dataset(source, root, download=download)
    except DataError as err:
        raise DataError(
            f"the sample-quality feature network of {dataset.name} is a digit classifier trained on "
            f"the labelled MNIST train split (binarized at every draw), but MNIST is not available "
            f"under {root}: {err}"
        ) from err


def data_root(dataset, data_dir=None) -> Path:
    """``data_dir``, else the root ``dataset`` was loaded from (the parent of its folder), else the default."""
    from genzoo.data import default_data_dir

    if data_dir is not None:
        return Path(data_dir).expanduser()
    folder = (getattr(dataset, "info", None) or {}).get("folder")
    return Path(folder).parent if folder else default_data_dir()


def binarized_mnist_test_labels(
    binary_images: torch.Tensor, mnist_images: torch.Tensor, mnist_labels: torch.Tensor
) -> torch.Tensor | None:
    """Labels for binarized MNIST's test split: those of the MNIST test images sorted by class (stable), if
    every binary image fits its counterpart -- a 1 only where the grey level is above 0, and as many 1s
    overall as the grey levels predict (within 1%); None if the images are not aligned that way."""
    if len(binary_images) != len(mnist_images) or binary_images.shape[1:] != mnist_images.shape[1:]:
        return None
    order = torch.sort(torch.as_tensor(mnist_labels), stable=True).indices
    grey, binary = mnist_images[order].flatten(1), binary_images.flatten(1)
    if bool(((binary > 0) & (grey == 0)).any()):
        return None
    expected = float(grey.double().sum() / 255)
    if abs(float(binary.double().sum()) - expected) > 0.01 * expected:
        return None
    return torch.as_tensor(mnist_labels)[order].clone()


def writable(path: Path) -> bool:
    """Whether ``path`` may be created: its nearest existing ancestor is writable and not marked
    read-only (no write bits; checked by mode as well, since root may write anywhere)."""
    for folder in path.parents:
        if folder.exists():
            return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    return False


def cache_path(dataset, root, seed: int = 0, steps: int | None = None, batch_size: int = 128, lr: float = 1e-3) -> Path:
    """``<root>/<dataset>/feature_net-<hash>.safetensors`` for these settings and this train split."""
    steps = default_steps(len(dataset.train), batch_size) if steps is None else int(steps)
    settings = {
        "format": FORMAT,
        "dataset": dataset.name,
        "levels": dataset.levels,
        "num_classes": dataset.num_classes,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
    }
    if isinstance(dataset.train, DynamicallyBinarizedSplit):  # the key of the other datasets is unchanged
        settings["binarization"] = "bernoulli(grey/255) per draw"
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(dataset.train.images.contiguous().numpy().tobytes())
    if dataset.train.labels is not None:
        digest.update(dataset.train.labels.contiguous().numpy().tobytes())
    return Path(root) / dataset.name / f"feature_net-{digest.hexdigest()[:16]}.safetensors"


def feature_network(
    dataset, data_dir=None, seed: int = 0, steps: int | None = None, download: bool = True, **settings
) -> FeatureNet:
    """The cached feature network of ``dataset`` (trained and saved on first use); in eval mode, on CPU.

    It is trained on ``training_source(dataset)`` (binary MNIST: labelled MNIST, binarized at every draw;
    DataError if MNIST is missing and cannot be downloaded). The cache lives in the data root; a read-only
    root (e.g. a shared copy) falls back to the user's default data root. For binarized MNIST the test
    labels recovered from MNIST (``binarized_mnist_test_labels``) go to ``known_labels["test"]`` and the
    accuracy is measured on those images."""
    from genzoo.data import default_data_dir

    source = training_source(dataset, data_dir, download)
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    places = [cache_path(source, r, seed, steps, **settings) for r in dict.fromkeys([root, default_data_dir()])]
    path = next((p for p in places if p.exists()), None)
    if path is not None:
        tensors, meta = load_tensors(path)
        net = FeatureNet(**meta["config"])
        net.load_state_dict(tensors)
        net.test_accuracy, net.accuracy_split = meta.get("test_accuracy"), meta.get("accuracy_split")
        net.trained_on = meta.get("trained_on") or describe_training(source)
    else:
        net = train_feature_network(source, seed, steps, **settings)
        path = next((p for p in places if writable(p)), places[-1])
        meta = {
            "format": FORMAT,
            "config": net.config,
            "test_accuracy": net.test_accuracy,
            "accuracy_split": net.accuracy_split,
            "trained_on": net.trained_on,
        }
        save_tensors(path, net.state_dict(), meta)
    net.cache_file = str(path)
    net.eval()
    if net.is_classifier and source is not dataset:
        net.known_labels = recovered_labels(dataset, data_dir, download)
        if "test" in net.known_labels:  # the accuracy on the very images the floor uses
            net.test_accuracy = accuracy(net, dataset.test.images.long(), net.known_labels["test"])
            net.accuracy_split = f"{dataset.name} test (labels of the aligned MNIST test images)"
    return net


def recovered_labels(dataset, data_dir=None, download: bool = True) -> dict[str, torch.Tensor]:
    """Labels of the unlabelled splits of ``dataset`` that can be recovered from their source: for
    binarized MNIST, {"test": the class-sorted MNIST test labels} when its test split checks out as aligned
    (``binarized_mnist_test_labels``); {} otherwise."""
    if dataset.name != "binarized-mnist" or dataset.test.labels is not None:
        return {}
    from genzoo.data import load_dataset

    mnist = load_dataset("mnist", data_root(dataset, data_dir), download=download)
    labels = binarized_mnist_test_labels(dataset.test.images, mnist.test.images, mnist.test.labels)
    return {} if labels is None else {"test": labels}
