"""The feature network behind the sample-quality metrics: a small CNN trained on one dataset.

For a dataset with labels it is a classifier (cross-entropy on the train split); without labels, an
autoencoder (each subpixel's intensity in [0, 1] predicted with a Bernoulli cross-entropy). Its
features are the last hidden layer (``features``, before the nonlinearity): the space in which
``genzoo.metrics`` measures Fréchet distance, KID and precision/recall, the role Inception-v3's pool
features play for ImageNet-like images in Heusel et al. (2017). Scores in this space compare models on
this dataset only; they are not FID values.

    conv 3x3 (width) - ReLU - conv 3x3/2 (2 width) - ReLU - conv 3x3/2 (2 width) - ReLU - linear (features)
      -> ReLU - linear (classes)                            classifier head
      -> ReLU - linear (256) - ReLU - linear (C*H*W)        decoder head (no labels)

Training is reproducible: ``train_feature_network(dataset, seed)`` gives the same weights for the same
data, seed and settings (on the same machine), and leaves the caller's random state untouched.
``feature_network`` caches it as ``<data root>/<dataset>/feature_net-<hash>.safetensors`` (safetensors
with JSON metadata, never pickle); the hash covers the settings and the train split's bytes.
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

FORMAT = "genzoo-feature-net/1"  # part of the cache hash: change it when the network or its training changes


class FeatureNet(nn.Module):
    """Integer images (N, C, H, W) in [0, levels) -> features (N, ``features``), and a head for training."""

    def __init__(self, image_shape, levels: int, num_classes: int | None = None, width: int = 32, features: int = 64):
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        self.image_shape, self.levels, self.num_classes = (c, h, w), int(levels), num_classes
        self.config = {"image_shape": [c, h, w], "levels": self.levels, "num_classes": num_classes,
                       "width": width, "features": features}
        size = math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2)
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * size, features))
        out = num_classes if num_classes else c * h * w
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(features, out)) if num_classes else \
            nn.Sequential(nn.ReLU(), nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, out))
        # standardization of the features by their train-split mean and sd, set after training
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.test_accuracy: float | None = None  # of the classifier on the test split, set after training

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
            f = self.features(images[start:start + batch_size].to(device))
            feats.append(f.double().cpu())
            if self.is_classifier:
                preds.append(self.head(f * self.feature_std + self.feature_mean).argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds) if preds else None


def default_steps(num_images: int, batch_size: int) -> int:
    """About 5 epochs, at least 200 and at most 2000 updates."""
    return min(2000, max(200, math.ceil(5 * num_images / batch_size)))


def train_feature_network(dataset, seed: int = 0, steps: int | None = None, batch_size: int = 128,
                          lr: float = 1e-3) -> FeatureNet:
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
        net.test_accuracy = float((net.embed(x)[1] == y).double().mean())
    return net


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
    settings = {"format": FORMAT, "dataset": dataset.name, "levels": dataset.levels, "num_classes": dataset.num_classes,
                "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(dataset.train.images.contiguous().numpy().tobytes())
    if dataset.train.labels is not None:
        digest.update(dataset.train.labels.contiguous().numpy().tobytes())
    return Path(root) / dataset.name / f"feature_net-{digest.hexdigest()[:16]}.safetensors"


def feature_network(dataset, data_dir=None, seed: int = 0, steps: int | None = None, **settings) -> FeatureNet:
    """The cached feature network of ``dataset`` (trained and saved on first use); in eval mode, on CPU.

    The cache lives in the data root; a read-only root (e.g. a shared copy) falls back to the user's
    default data root."""
    from genzoo.data import default_data_dir

    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    places = [cache_path(dataset, r, seed, steps, **settings) for r in dict.fromkeys([root, default_data_dir()])]
    path = next((p for p in places if p.exists()), None)
    if path is not None:
        tensors, meta = load_tensors(path)
        net = FeatureNet(**meta["config"])
        net.load_state_dict(tensors)
        net.test_accuracy = meta.get("test_accuracy")
    else:
        net = train_feature_network(dataset, seed, steps, **settings)
        path = next((p for p in places if writable(p)), places[-1])
        save_tensors(path, net.state_dict(), {"format": FORMAT, "config": net.config,
                                              "test_accuracy": net.test_accuracy})
    net.cache_file = str(path)
    return net.eval()
