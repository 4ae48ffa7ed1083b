"""Image datasets as integer tensors.

An ``ImageDataset`` holds three splits of integer images (N, C, H, W) in ``[0, levels)`` and optional
labels. Images are kept compactly (uint8) and turned into LongTensors one batch at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from genzoo.errors import DataError

__all__ = ["DataError", "ImageSplit", "DynamicallyBinarizedSplit", "ImageDataset"]


@dataclass
class ImageSplit:
    images: torch.Tensor  # uint8 (N, C, H, W), values in [0, levels)
    labels: torch.Tensor | None = None  # int64 (N,)
    draws_randomly: ClassVar[bool] = False  # whether ``batch`` uses its generator (a fresh draw per batch)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None):
        """(x, y) for the rows ``index``: x a LongTensor (B, C, H, W), y labels or None."""
        x = self.images.index_select(0, index).long()
        y = None if self.labels is None else self.labels[index]
        return x, y

    def full_batch(self, generator: torch.Generator | None = None):
        """(x, y) of the whole split (one draw of a dynamically binarized split)."""
        return self.batch(torch.arange(len(self)), generator)


@dataclass
class DynamicallyBinarizedSplit(ImageSplit):
    """8-bit images binarized afresh at every draw: pixel ~ Bernoulli(intensity / 255)."""

    draws_randomly: ClassVar[bool] = True

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None):
        probs = self.images[index].float() / 255.0
        x = torch.bernoulli(probs, generator=generator).long()
        y = None if self.labels is None else self.labels[index]
        return x, y


@dataclass
class ImageDataset:
    name: str
    levels: int  # values per subpixel: 2 binary, 17 digits, 256 8-bit
    train: ImageSplit
    valid: ImageSplit
    test: ImageSplit
    num_classes: int | None = None
    info: dict = field(default_factory=dict)  # source, license, checksums

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def split(self, name: str) -> ImageSplit:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; use train, valid or test")
        return getattr(self, name)

    def describe(self) -> str:
        c, h, w = self.image_shape
        return (
            f"{self.name}: {c}x{h}x{w}, {self.levels} levels, "
            f"train/valid/test {len(self.train)}/{len(self.valid)}/{len(self.test)}"
            + (f", {self.num_classes} classes" if self.num_classes else "")
        )


def default_data_dir() -> Path:
    """The data root: $GENZOO_DATA, else a per-user cache directory."""
    if os.environ.get("GENZOO_DATA"):
        return Path(os.environ["GENZOO_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "genzoo" / "data"
