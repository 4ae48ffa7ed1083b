"""Binarized MNIST with the fixed binarization of Larochelle & Murray (2011).

Files ``binarized_mnist_{train,valid,test}.amat`` (plain text, or gzip-compressed ``.amat.gz``) under
``<root>/binarized_mnist/``: one image a line, 784 values ``0``/``1`` separated by single spaces,
row-major 28x28. 50,000 / 10,000 / 10,000 images, 2 levels, no labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genzoo.data.base import DataError, ImageDataset, ImageSplit
from genzoo.data.download import RemoteFile, checksums_of, ensure_files, read_content

NUM_PIXELS = 784
LINE_BYTES = 2 * NUM_PIXELS  # "v v ... v\n": 784 digits, 783 spaces, one newline
SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
BASE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"

# sha256 of the uncompressed .amat files as originally distributed (as in TensorFlow Datasets).
CONTENT_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}

FILES = {
    split: RemoteFile(
        f"binarized_mnist_{split}.amat",
        (f"{BASE_URL}binarized_mnist_{split}.amat",),
        content_sha256=sha,
        alternatives=(f"binarized_mnist_{split}.amat.gz",),
    )
    for split, sha in CONTENT_SHA256.items()
}


def parse_amat(data: bytes, source: str | Path = "<bytes>") -> np.ndarray:
    """The binary images in ``.amat`` text ``data`` as uint8 (N, 784) in {0, 1}; DataError if malformed.

    The canonical layout is checked in one vectorized pass; anything else goes through a line-by-line
    reader that accepts any whitespace between values and names the first bad line.
    """
    fast = _parse_canonical(data)
    return fast if fast is not None else _parse_lines(data, source)


def _parse_canonical(data: bytes) -> np.ndarray | None:
    """Rows of exactly ``'d d ... d\\n'`` with d in {0, 1}, or None if ``data`` is not in that layout."""
    if len(data) == 0 or len(data) % LINE_BYTES:
        return None
    chars = np.frombuffer(data, dtype=np.uint8).reshape(-1, LINE_BYTES)
    digits, gaps = chars[:, 0::2], chars[:, 1::2]
    if ((digits | 1) != ord("1")).any():  # only '0' (0x30) and '1' (0x31) survive | 1 == '1'
        return None
    if (gaps[:, :-1] != ord(" ")).any() or (gaps[:, -1] != ord("\n")).any():
        return None
    return digits - np.uint8(ord("0"))


def _parse_lines(data: bytes, source) -> np.ndarray:
    """Slow, tolerant reader: every non-empty line must hold exactly 784 values, each 0 or 1."""
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        values = line.split()
        if not values:  # blank lines (e.g. a trailing one) carry no image
            continue
        if len(values) != NUM_PIXELS:
            raise DataError(f"{source}, line {number}: {len(values)} values, expected {NUM_PIXELS}")
        row = np.frombuffer(b"".join(values), dtype=np.uint8)
        if len(row) != NUM_PIXELS or ((row | 1) != ord("1")).any():
            bad = next(v for v in values if v not in (b"0", b"1"))
            raise DataError(f"{source}, line {number}: value {bad.decode(errors='replace')!r} is not 0 or 1")
        rows.append(row - np.uint8(ord("0")))
    if not rows:
        raise DataError(f"{source}: no images found")
    return np.stack(rows)


def read_amat(path: Path, count: int) -> torch.Tensor:
    """The ``count`` images of the .amat file ``path`` (plain or gzip) as uint8 (count, 1, 28, 28)."""
    rows = parse_amat(read_content(path), path)
    if len(rows) != count:
        raise DataError(f"{path}: {len(rows)} images, expected {count}")
    return torch.from_numpy(rows.reshape(count, 1, 28, 28).copy())


def load_binarized_mnist(root: Path, download: bool = True) -> ImageDataset:
    """Binarized MNIST (fixed binarization), 2 levels, 1x28x28, 50k/10k/10k, no labels."""
    folder = Path(root) / "binarized_mnist"
    paths = ensure_files(folder, list(FILES.values()), download)
    splits = {split: ImageSplit(read_amat(paths[FILES[split].name], n)) for split, n in SPLIT_SIZES.items()}
    return ImageDataset(
        name="binarized-mnist",
        levels=2,
        **splits,
        info={
            "source": BASE_URL,
            "license": "derived from MNIST (CC BY-SA 3.0)",
            "folder": str(folder),
            "checksums": checksums_of(FILES.values()),
            "reference": "Larochelle & Murray (2011); Salakhutdinov & Murray (2008)",
        },
    )
