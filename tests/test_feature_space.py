"""The feature space of the sample-quality metrics: the held-out floor, and binary MNIST's digit classifier.

Fast: toy datasets and stand-in networks; the real-data checks only read files (no long training) and
skip when the shared data folder is absent.
"""

from __future__ import annotations

import pytest
import torch

from genzoo.data import DataError, ImageDataset, ImageSplit, load_dataset
from genzoo.data.base import DynamicallyBinarizedSplit
from genzoo.metrics import feature_net, frechet_distance, sample_metrics
from genzoo.metrics.feature_net import (
    binarized_mnist_test_labels,
    cache_path,
    feature_network,
    train_feature_network,
    training_source,
)


class PixelNet:
    """A stand-in feature network: the features are the pixels, the predicted class is the first pixel."""

    is_classifier, num_classes, test_accuracy = True, 4, None

    def embed(self, images):
        x = torch.as_tensor(images).flatten(1)
        return x.double() + 0.01 * torch.arange(x.shape[1]).double(), x[:, 0].long()


def class_sorted_dataset(per_class: int = 50, classes: int = 4) -> ImageDataset:
    """Images 1x2x2 whose pixels are the class plus noise in {0, 1} (first pixel: the class itself),
    levels 2 * classes; the test split sorted by class, like binarized MNIST's."""
    g = torch.Generator().manual_seed(0)

    def split(n_per_class, shuffle):
        labels = torch.arange(classes).repeat_interleave(n_per_class)
        if shuffle:
            labels = labels[torch.randperm(len(labels), generator=g)]
        images = labels.view(-1, 1, 1, 1) * 2 + torch.randint(0, 2, (len(labels), 1, 2, 2), generator=g)
        images[:, 0, 0, 0] = labels
        return ImageSplit(images.to(torch.uint8), labels)

    return ImageDataset(
        "toy-sorted",
        2 * classes,
        split(per_class, True),
        split(per_class, True),
        split(per_class, False),
        num_classes=classes,
    )


def test_floor_is_a_random_subset_of_the_held_out_split_not_its_first_images():
    """The old floor took the first N test images: on a class-sorted split, N < the split's size gave
    images of the first classes only and a Fréchet distance far above that of a shuffled split."""
    data, net = class_sorted_dataset(), PixelNet()
    samples = data.valid.images[:40].long()  # a fair sample: shuffled split
    metrics = sample_metrics(samples, data, network=net, kid_subsets=5, inception=False)
    floor = metrics["floor"]
    assert floor["n"] == 40 and all(c > 0 for c in floor["class_histogram"])
    assert floor["classifier_accuracy"] == 1.0  # the held-out labels follow the same random subset
    first = data.test.images[:40].long()  # what the old floor used: classes 0 only
    reference = net.embed(data.train.images.long())[0]
    assert frechet_distance(net.embed(first)[0], reference) > 5 * floor["frechet_distance"]
    again = sample_metrics(samples, data, network=net, kid_subsets=5, inception=False)
    assert again["floor"] == floor  # seeded: the same subset every call


def test_floor_uses_labels_recovered_for_an_unlabelled_split():
    data, net = class_sorted_dataset(), PixelNet()
    labels = data.test.labels
    data.test = ImageSplit(data.test.images)  # unlabelled, as binarized MNIST
    net.known_labels = {"test": labels}
    floor = sample_metrics(data.valid.images[:40].long(), data, network=net, kid_subsets=5, inception=False)["floor"]
    assert floor["classifier_accuracy"] == 1.0


def binary_copy(grey: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Bernoulli(grey/255) binarizations of the images sorted by class (stable), as binarized MNIST's test split."""
    order = torch.sort(labels, stable=True).indices
    return torch.bernoulli(grey[order].float() / 255, generator=torch.Generator().manual_seed(seed)).to(torch.uint8)


def test_binarized_test_labels_are_recovered_only_from_aligned_images():
    g = torch.Generator().manual_seed(1)
    grey = torch.randint(0, 256, (300, 1, 6, 6), generator=g).to(torch.uint8)
    grey[grey < 100] = 0  # many zero pixels, so that misalignment shows as a 1 on a 0
    labels = torch.randint(0, 10, (300,), generator=g)
    binary = binary_copy(grey, labels)
    recovered = binarized_mnist_test_labels(binary, grey, labels)
    assert torch.equal(recovered, torch.sort(labels).values)
    assert binarized_mnist_test_labels(binary.flip(0), grey, labels) is None  # another order
    assert binarized_mnist_test_labels(binary[:-1], grey, labels) is None  # another size
    assert binarized_mnist_test_labels(torch.ones_like(binary), grey, labels) is None  # not a binarization
    thresholded = (grey[torch.sort(labels, stable=True).indices] > 128).to(torch.uint8)
    assert binarized_mnist_test_labels(thresholded, grey, labels) is None  # 1s where they fit, but too few


def tiny_binary_mnist(tmp_path):
    """A stand-in binarized MNIST (no labels) and its labelled, dynamically binarized source."""
    g = torch.Generator().manual_seed(2)
    grey = torch.randint(0, 256, (96, 1, 8, 8), generator=g).to(torch.uint8)
    labels = torch.arange(96) % 10
    source = ImageDataset(
        "dynamic-mnist",
        2,
        DynamicallyBinarizedSplit(grey[:64], labels[:64]),
        ImageSplit(binary_copy(grey[64:80], labels[64:80]), labels[64:80]),
        ImageSplit(binary_copy(grey[80:], labels[80:]), labels[80:]),
        num_classes=10,
    )
    binary = ImageDataset(
        "binarized-mnist",
        2,
        ImageSplit(binary_copy(grey[:64], labels[:64])),
        ImageSplit(binary_copy(grey[64:80], labels[64:80])),
        ImageSplit(binary_copy(grey[80:], labels[80:])),
        info={"folder": str(tmp_path / "data" / "binarized_mnist")},
    )
    return binary, source, torch.sort(labels[80:]).values


def test_binary_mnist_gets_a_cached_seeded_classifier_trained_on_its_labelled_source(tmp_path, monkeypatch):
    binary, source, test_labels = tiny_binary_mnist(tmp_path)
    monkeypatch.setattr(feature_net, "training_source", lambda dataset, data_dir=None, download=True: source)
    monkeypatch.setattr(feature_net, "recovered_labels", lambda *a, **k: {"test": test_labels})
    net = feature_network(binary, tmp_path / "cache", seed=1, steps=5, batch_size=16)
    assert net.is_classifier and net.num_classes == 10 and net.levels == 2
    assert "Bernoulli" in net.trained_on and net.accuracy_split.startswith("binarized-mnist test")
    files = list((tmp_path / "cache" / "dynamic-mnist").glob("feature_net-*.safetensors"))
    assert [str(f) for f in files] == [net.cache_file]
    again = feature_network(binary, tmp_path / "cache", seed=1, steps=5, batch_size=16)  # from the cache
    fresh = train_feature_network(source, seed=1, steps=5, batch_size=16)
    x = binary.test.images.long()
    assert torch.equal(net.embed(x)[0], again.embed(x)[0]) and torch.equal(net.embed(x)[0], fresh.embed(x)[0])
    assert again.trained_on == net.trained_on and again.test_accuracy == net.test_accuracy
    metrics = sample_metrics(binary.valid.images.long(), binary, network=net, kid_subsets=5, inception=False)
    assert metrics["feature_net"]["kind"] == "classifier" and sum(metrics["class_histogram"]) == 16
    assert "classifier_accuracy" in metrics["floor"]  # the recovered test labels


def test_the_cache_key_covers_the_binarization():
    g = torch.Generator().manual_seed(3)
    grey, labels = torch.randint(0, 256, (8, 1, 4, 4), generator=g).to(torch.uint8), torch.arange(8) % 2
    fixed = ImageDataset("dynamic-mnist", 2, ImageSplit(grey, labels), ImageSplit(grey), ImageSplit(grey), 2)
    dynamic = ImageDataset(
        "dynamic-mnist", 2, DynamicallyBinarizedSplit(grey, labels), ImageSplit(grey), ImageSplit(grey), 2
    )
    assert cache_path(fixed, "root") != cache_path(dynamic, "root")


def test_binarized_mnist_without_mnist_fails_clearly(tmp_path):
    binary, _, _ = tiny_binary_mnist(tmp_path)
    with pytest.raises(DataError, match="trained on the labelled MNIST train split.*not available"):
        training_source(binary, download=False)  # MNIST looked for beside the binarized files: absent
    with pytest.raises(DataError, match="MNIST is not available"):
        feature_network(binary, tmp_path / "cache", download=False)
    assert not (tmp_path / "cache").exists()  # nothing trained or cached in its place


def test_real_binarized_mnist_test_split_is_mnist_test_sorted_by_class(shared_data):
    """The fact behind the old floor's instability, and the source of binarized MNIST's test labels."""
    binary = load_dataset("binarized-mnist", shared_data, download=False)
    mnist = load_dataset("mnist", shared_data, download=False)
    labels = binarized_mnist_test_labels(binary.test.images, mnist.test.images, mnist.test.labels)
    assert labels is not None and torch.equal(labels, torch.sort(mnist.test.labels).values)
    assert set(labels[:2000].tolist()) == {0, 1}  # the first 2,000 test images: zeros and ones only
    assert binarized_mnist_test_labels(binary.valid.images, mnist.test.images, mnist.test.labels) is None
    source = training_source(binary, shared_data, download=False)
    assert source.name == "dynamic-mnist" and isinstance(source.train, DynamicallyBinarizedSplit)
    assert source.train.labels is not None and len(source.train) == 50_000
    dynamic = load_dataset("dynamic-mnist", shared_data, download=False)
    assert cache_path(source, shared_data) == cache_path(dynamic, shared_data)  # one network for both
    assert training_source(dynamic, shared_data) is dynamic
