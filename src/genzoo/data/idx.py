"""IDX-format datasets: MNIST, Fashion-MNIST, and dynamically binarized MNIST.

IDX (the MNIST file format): a big-endian header -- two zero bytes, a type code (0x08 = unsigned byte),
the number of dimensions d, then d uint32 sizes -- followed by the data in row-major order. The files
are stored gzip-compressed under ``<root>/mnist/`` and ``<root>/fashion-mnist/`` with their canonical
names. Splits: train = first 50,000 of the 60,000 training images, valid = the last 10,000, test = the
10,000 test images.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch

from genzoo.data.base import DataError, DynamicallyBinarizedSplit, ImageDataset, ImageSplit
from genzoo.data.download import RemoteFile, checksums_of, ensure_files, read_content

IDX_UBYTE = 0x08
NUM_TRAIN = 50_000  # the first 50k training images; the last 10k are the validation split
IMAGE_SIZE = 28
NUM_CLASSES = 10

# Dynamically binarized MNIST: its valid/test splits are binarized once, pixel = [u < intensity/255]
# with u ~ numpy.random.default_rng(seed).random(shape), so every user scores the same binary images.
DYNAMIC_MNIST_SEEDS = {"valid": 1, "test": 2}

MNIST_URLS = ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")
FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# MNIST: md5 of the canonical .gz, and sha256 of the decompressed file (which a recompressed copy shares).
MNIST_FILES = {
    "train_images": RemoteFile(
        "train-images-idx3-ubyte.gz",
        tuple(u + "train-images-idx3-ubyte.gz" for u in MNIST_URLS),
        md5=("f68b3c2dcbeaaa9fbdd348bbdeb94873",),
        content_sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train_labels": RemoteFile(
        "train-labels-idx1-ubyte.gz",
        tuple(u + "train-labels-idx1-ubyte.gz" for u in MNIST_URLS),
        md5=("d53e105ee54ea40749a09fcbcd1e9432",),
        content_sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "test_images": RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        tuple(u + "t10k-images-idx3-ubyte.gz" for u in MNIST_URLS),
        md5=("9fb629c4189551a2d022fa330f9573f3",),
        content_sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "test_labels": RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        tuple(u + "t10k-labels-idx1-ubyte.gz" for u in MNIST_URLS),
        md5=("ec29112dd5afa0611ce80d1b7f02629c",),
        content_sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}

# Fashion-MNIST: the md5s published by Zalando Research for the canonical .gz files.
FASHION_FILES = {
    "train_images": RemoteFile(
        "train-images-idx3-ubyte.gz",
        tuple(u + "train-images-idx3-ubyte.gz" for u in FASHION_URLS),
        md5=("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
    ),
    "train_labels": RemoteFile(
        "train-labels-idx1-ubyte.gz",
        tuple(u + "train-labels-idx1-ubyte.gz" for u in FASHION_URLS),
        md5=("25c81989df183df01b3e8a0aad5dffbe",),
    ),
    "test_images": RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        tuple(u + "t10k-images-idx3-ubyte.gz" for u in FASHION_URLS),
        md5=("bef4ecab320f06d8554ea6380940ec79",),
    ),
    "test_labels": RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        tuple(u + "t10k-labels-idx1-ubyte.gz" for u in FASHION_URLS),
        md5=("bb300cfdad3c16e7a12a480ee83cd310",),
    ),
}

MNIST_INFO = {"source": "http://yann.lecun.com/exdb/mnist/", "license": "CC BY-SA 3.0, Yann LeCun and Corinna Cortes"}
FASHION_INFO = {"source": "https://github.com/zalandoresearch/fashion-mnist", "license": "MIT, Zalando SE"}


# ----------------------------------------------------------------------------------------------------
# the format


def parse_idx(data: bytes, source: str | Path = "<bytes>") -> np.ndarray:
    """The uint8 array stored in the (decompressed) IDX bytes ``data``; DataError if malformed.

    Strict: zero magic bytes, type code 0x08, at least one dimension, and exactly as many data
    bytes as the header's dimensions call for.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    if data[2] != IDX_UBYTE:
        raise DataError(f"{source}: IDX type code 0x{data[2]:02x} is not supported (only 0x08, unsigned byte)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{source}: IDX header with {ndim} dimensions is truncated or empty")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise DataError(
            f"{source}: IDX header says shape {shape} ({expected} bytes) but the file has "
            f"{len(data)} bytes ({'truncated' if len(data) < expected else 'trailing data'})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The array in the IDX file ``path`` (gzip or plain), which must have exactly ``shape``."""
    array = parse_idx(read_content(path), path)
    if array.shape != tuple(shape):
        raise DataError(f"{path}: expected an array of shape {tuple(shape)}, found {array.shape}")
    return array


# ----------------------------------------------------------------------------------------------------
# loading


def read_mnist_like(folder: Path, files: dict[str, RemoteFile], download: bool):
    """(train images, train labels, test images, test labels) as tensors: uint8 (N,1,28,28), int64 (N,)."""
    paths = ensure_files(folder, list(files.values()), download)
    arrays = {}
    for split, count in (("train", 60_000), ("test", 10_000)):
        images = read_idx(paths[files[f"{split}_images"].name], (count, IMAGE_SIZE, IMAGE_SIZE))
        labels_path = paths[files[f"{split}_labels"].name]
        labels = read_idx(labels_path, (count,))
        if labels.max() >= NUM_CLASSES:
            raise DataError(f"{labels_path}: label {labels.max()} outside 0..{NUM_CLASSES - 1}")
        arrays[split] = (torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
    return (*arrays["train"], *arrays["test"])


def _eight_bit_dataset(name: str, folder: Path, files, download: bool, info: dict) -> ImageDataset:
    """An MNIST-like dataset with 256 levels and the 50k/10k/10k split."""
    train_x, train_y, test_x, test_y = read_mnist_like(folder, files, download)
    return ImageDataset(
        name=name,
        levels=256,
        num_classes=NUM_CLASSES,
        train=ImageSplit(train_x[:NUM_TRAIN], train_y[:NUM_TRAIN]),
        valid=ImageSplit(train_x[NUM_TRAIN:], train_y[NUM_TRAIN:]),
        test=ImageSplit(test_x, test_y),
        info={
            **info,
            "folder": str(folder),
            "checksums": checksums_of(files.values()),
            "split": "train = first 50k of training set, valid = last 10k",
        },
    )


def load_mnist(root: Path, download: bool = True) -> ImageDataset:
    """MNIST, 8-bit (256 levels), 1x28x28, 10 classes, from ``<root>/mnist/``."""
    return _eight_bit_dataset("mnist", Path(root) / "mnist", MNIST_FILES, download, MNIST_INFO)


def load_fashion_mnist(root: Path, download: bool = True) -> ImageDataset:
    """Fashion-MNIST, 8-bit (256 levels), 1x28x28, 10 classes, from ``<root>/fashion-mnist/``."""
    return _eight_bit_dataset("fashion-mnist", Path(root) / "fashion-mnist", FASHION_FILES, download, FASHION_INFO)


def binarize_once(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed binarization of 8-bit ``images``: pixel = [u < intensity/255], u from default_rng(seed)."""
    u = np.random.default_rng(seed).random(tuple(images.shape))
    return torch.from_numpy((u < images.numpy() / 255.0).astype(np.uint8))


def load_dynamic_mnist(root: Path, download: bool = True) -> ImageDataset:
    """Dynamically binarized MNIST (2 levels) from the 8-bit files in ``<root>/mnist/``.

    Train draws fresh binary images at every batch (pixel ~ Bernoulli(intensity/255)); valid and test
    are binarized once with the seeds in ``DYNAMIC_MNIST_SEEDS`` so that scores are comparable.
    """
    folder = Path(root) / "mnist"
    train_x, train_y, test_x, test_y = read_mnist_like(folder, MNIST_FILES, download)
    valid_x = binarize_once(train_x[NUM_TRAIN:], DYNAMIC_MNIST_SEEDS["valid"])
    return ImageDataset(
        name="dynamic-mnist",
        levels=2,
        num_classes=NUM_CLASSES,
        train=DynamicallyBinarizedSplit(train_x[:NUM_TRAIN], train_y[:NUM_TRAIN]),
        valid=ImageSplit(valid_x, train_y[NUM_TRAIN:]),
        test=ImageSplit(binarize_once(test_x, DYNAMIC_MNIST_SEEDS["test"]), test_y),
        info={
            **MNIST_INFO,
            "folder": str(folder),
            "checksums": checksums_of(MNIST_FILES.values()),
            "binarization": "train: Bernoulli(intensity/255) at every draw; valid/test: once, "
            f"u < intensity/255 with numpy default_rng seeds {DYNAMIC_MNIST_SEEDS}",
        },
    )
