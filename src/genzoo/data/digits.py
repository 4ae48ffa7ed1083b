"""scikit-learn's bundled 8x8 handwritten digits: the embedded dataset, no download needed.

1,797 images, 1x8x8, 17 levels (pixel values 0..16 count the "on" cells of a 4x4 block of the original
32x32 bitmap), 10 classes. Split 1257/270/270 train/valid/test by a fixed-seed permutation.
"""

from __future__ import annotations

import numpy as np
import torch

from genzoo.data.base import ImageDataset, ImageSplit

SPLIT_SEED = 0  # numpy.random.default_rng(SPLIT_SEED).permutation(1797) orders the split
NUM_VALID = NUM_TEST = 270
LEVELS = 17


def load_digits_dataset(root=None, download: bool = True) -> ImageDataset:
    """The 8x8 digits (17 levels, 10 classes); ``root`` and ``download`` are unused (data is bundled)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.data.reshape(-1, 1, 8, 8).astype(np.uint8))
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(images)))
    n_train = len(images) - NUM_VALID - NUM_TEST
    parts = torch.split(order, [n_train, NUM_VALID, NUM_TEST])
    train, valid, test = (ImageSplit(images[i], labels[i]) for i in parts)
    return ImageDataset(
        name="digits",
        levels=LEVELS,
        num_classes=10,
        train=train,
        valid=valid,
        test=test,
        info={
            "source": "sklearn.datasets.load_digits (UCI Optical Recognition of Handwritten Digits)",
            "license": "CC BY 4.0",
            "split": f"numpy default_rng({SPLIT_SEED}) permutation, {n_train}/{NUM_VALID}/{NUM_TEST}",
        },
    )
