"""CIFAR-10 from the "python version" archive, read without trusting pickle.

``<root>/cifar10/cifar-10-python.tar.gz`` holds six pickled batches (``data_batch_1..5``,
``test_batch``), each a dict with ``b"data"`` (uint8 array (10000, 3072), channel-major 3x32x32) and
``b"labels"`` (list of ints 0..9). The archive's md5 is verified before anything is unpickled, and the
unpickler only reconstructs numpy arrays: any other global in the stream is refused.
Splits: train = first 45,000 training images, valid = last 5,000, test = the 10,000 test images.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from genzoo.data.base import DataError, ImageDataset, ImageSplit
from genzoo.data.download import RemoteFile, checksums_of, ensure_files

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = RemoteFile("cifar-10-python.tar.gz", (URL,), md5=("c58f30108f718f92721af3b95e74349a",))
MEMBER_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
NUM_TRAIN = 45_000
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, limited to the latin-1 codec."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray((0,)).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray((0,)).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler for plain containers (dict, list, bytes, str, numbers) and numpy arrays only."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one pickled CIFAR-10 batch."""
    try:
        batch = ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # any failure of an untrusted stream is a data problem
        raise DataError(f"{source}: not a readable CIFAR-10 batch ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{source}: expected a dict with b'data' and b'labels'")
    images, labels = batch[b"data"], np.asarray(batch[b"labels"])
    n = len(labels)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape != (n, 3072):
        raise DataError(
            f"{source}: b'data' should be uint8 of shape ({n}, 3072), got "
            f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}"
        )
    not_ints = labels.ndim != 1 or labels.dtype.kind not in "iu"
    if not_ints or (n and (labels.min() < 0 or labels.max() >= NUM_CLASSES)):
        raise DataError(f"{source}: labels must be a list of integers 0..{NUM_CLASSES - 1}")
    return images.reshape(n, *IMAGE_SHAPE), labels.astype(np.int64)


def read_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every batch of the (already verified) archive at ``path``: batch name -> (images, labels)."""
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in (*TRAIN_BATCHES, TEST_BATCH):
                member = f"{MEMBER_DIR}/{name}"
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise DataError(f"{path}: archive has no file {member}")
                batches[name] = load_batch(f.read(), f"{path}:{member}")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: cannot read the archive ({e})") from e
    return batches


def load_cifar10(root: Path, download: bool = True) -> ImageDataset:
    """CIFAR-10, 8-bit (256 levels), 3x32x32, 10 classes, 45k/5k/10k, from ``<root>/cifar10/``."""
    folder = Path(root) / "cifar10"
    path = ensure_files(folder, [ARCHIVE], download)[ARCHIVE.name]
    batches = read_archive(path)
    train_x = torch.from_numpy(np.concatenate([batches[b][0] for b in TRAIN_BATCHES]))
    train_y = torch.from_numpy(np.concatenate([batches[b][1] for b in TRAIN_BATCHES]))
    test_x, test_y = (torch.from_numpy(a.copy()) for a in batches[TEST_BATCH])
    return ImageDataset(
        name="cifar10",
        levels=256,
        num_classes=NUM_CLASSES,
        train=ImageSplit(train_x[:NUM_TRAIN], train_y[:NUM_TRAIN]),
        valid=ImageSplit(train_x[NUM_TRAIN:], train_y[NUM_TRAIN:]),
        test=ImageSplit(test_x, test_y),
        info={
            "source": "https://www.cs.toronto.edu/~kriz/cifar.html",
            "folder": str(folder),
            "checksums": checksums_of([ARCHIVE]),
            "reference": "Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images",
            "split": "train = first 45k of training set, valid = last 5k",
        },
    )
