"""Datasets of integer images: ``load_dataset(name)`` returns an ``ImageDataset``.

    >>> from genzoo.data import load_dataset
    >>> ds = load_dataset("digits")           # bundled with scikit-learn, no download
    >>> ds.describe()
    'digits: 1x8x8, 17 levels, train/valid/test 1257/270/270, 10 classes'

Files live under ``<data root>/<dataset folder>/<canonical file name>``; the data root is the
``data_dir`` argument, else $GENZOO_DATA, else ``~/.cache/genzoo/data``. Missing files are downloaded
(``download=True``) from their canonical URLs, or from mirrors named in $GENZOO_MIRROR tried first, and
every file is checked against its published checksum (see ``genzoo.data.download``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from genzoo.data.amat import load_binarized_mnist
from genzoo.data.base import DataError, DynamicallyBinarizedSplit, ImageDataset, ImageSplit, default_data_dir
from genzoo.data.cifar import load_cifar10
from genzoo.data.digits import load_digits_dataset
from genzoo.data.idx import load_dynamic_mnist, load_fashion_mnist, load_mnist
from genzoo.data.photos import load_photos32
from genzoo.errors import UsageError

__all__ = [
    "load_dataset",
    "list_datasets",
    "DATASETS",
    "DataError",
    "ImageDataset",
    "ImageSplit",
    "DynamicallyBinarizedSplit",
    "default_data_dir",
    "UnknownDatasetError",
]

DATASETS: dict[str, str] = {
    "digits": "scikit-learn 8x8 digits, 1x8x8, 17 levels, 10 classes, 1257/270/270 (bundled, default)",
    "mnist": "MNIST, 1x28x28, 256 levels, 10 classes, 50k/10k/10k",
    "fashion-mnist": "Fashion-MNIST, 1x28x28, 256 levels, 10 classes, 50k/10k/10k",
    "binarized-mnist": "binarized MNIST (fixed binarization, Larochelle & Murray 2011), 1x28x28, 2 levels, "
    "50k/10k/10k, no labels",
    "dynamic-mnist": "MNIST binarized afresh at every training draw; valid/test binarized once, seeded; "
    "1x28x28, 2 levels, 50k/10k/10k",
    "cifar10": "CIFAR-10, 3x32x32, 256 levels, 10 classes, 45k/5k/10k",
    "photos32": "32x32 patches of the colour photographs bundled in scikit-image and scikit-learn, 3x32x32, "
    "256 levels, split by photograph 6574/260/371 (bundled, no labels)",
}

_LOADERS: dict[str, Callable[[Path, bool], ImageDataset]] = {
    "digits": load_digits_dataset,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "binarized-mnist": load_binarized_mnist,
    "dynamic-mnist": load_dynamic_mnist,
    "cifar10": load_cifar10,
    "photos32": load_photos32,
}


class UnknownDatasetError(DataError, UsageError):
    """A dataset name that ``load_dataset`` does not know (a usage error)."""

    exit_code = UsageError.exit_code


def list_datasets() -> list[str]:
    """The names ``load_dataset`` accepts."""
    return list(DATASETS)


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> ImageDataset:
    """The dataset ``name`` with its train/valid/test splits, read from ``data_dir`` (or the default root).

    Raises ``UnknownDatasetError`` (a DataError and a ValueError) for an unknown name, and DataError when
    files are missing and cannot be downloaded, or fail their checksums.
    """
    if name not in _LOADERS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    return _LOADERS[name](root, download)
