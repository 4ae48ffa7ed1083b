"""Image pairs for conditional tasks: super-resolution (low-resolution -> image) and colorization
(luminance -> colour image).

A conditional dataset is an ordinary ``ImageDataset`` whose splits' ``labels`` hold the condition images,
uint8 (N, C', h, w), in place of class labels; the trainer, the evaluator and DDP batch slicing pass them
through as ``y``, and an image-conditioned model is built from ``dataset.model_options()``
(``condition_shape``, ``condition_levels``). The images themselves are the source dataset's, unchanged.

    >>> from genzoo.data import load_dataset
    >>> sr = superres_dataset(load_dataset("digits"), 2)
    >>> sr.describe()
    'digits-superres2: 1x8x8 given 1x4x4 (17 levels), 17 levels, train/valid/test 1257/270/270'

Down-sampling by an integer factor s (``downsample``): the box average of every s x s block, per channel,
rounded half up to the dataset's levels (``(sum + s*s // 2) // (s*s)``). Binary data instead keeps the
box average at s*s + 1 levels, i.e. the count of ones in each block: thresholding would throw most of
the information away (a 7x7 binary MNIST is barely a digit), while the count is the exact box average,
so p(x | y) is a model of the binary images whose blocks have the given counts.

Colorization (``to_gray``): the condition is the luminance of ITU-R BT.601, Y = (299 R + 587 G + 114 B +
500) // 1000 at the same levels (what PIL's ``convert("L")`` computes, up to its rounding), one channel.
The model is p(RGB | Y), a distribution over all RGB images, normalized for every Y; a perfect model
puts its mass on the images whose luminance is Y.

The class labels of the source images, when it has them, are kept in ``classes`` (split name -> labels)
for downstream scores (a digit classifier's accuracy on super-resolved digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from genzoo.data.base import DynamicallyBinarizedSplit, ImageDataset, ImageSplit

SPLITS = ("train", "valid", "test")


@dataclass
class ConditionalImageDataset(ImageDataset):
    """An ``ImageDataset`` whose labels are condition images (uint8 (N, C', h, w) in [0, condition_levels))."""

    task: str = ""  # "superres" or "colorize"
    condition_levels: int = 0
    scale: int = 1  # super-resolution factor (1 for colorization)
    source: str = ""  # the name of the dataset the images come from
    classes: dict = field(default_factory=dict)  # split name -> class labels (N,) of the source images

    @property
    def condition_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.labels.shape[1:])

    def model_options(self) -> dict:
        """The options that build an image-conditioned model for this data (``genzoo.create(..., **these)``)."""
        return {"condition_shape": list(self.condition_shape), "condition_levels": self.condition_levels}

    def describe(self) -> str:
        (c, h, w), (cc, ch, cw) = self.image_shape, self.condition_shape
        return (
            f"{self.name}: {c}x{h}x{w} given {cc}x{ch}x{cw} ({self.condition_levels} levels), {self.levels} levels, "
            f"train/valid/test {len(self.train)}/{len(self.valid)}/{len(self.test)}"
        )


def downsample_levels(levels: int, scale: int) -> int:
    """Levels of the down-sampled images: s*s + 1 (counts of ones) for binary data, else unchanged."""
    return scale * scale + 1 if levels == 2 else levels


def downsample(images: torch.Tensor, scale: int, levels: int) -> torch.Tensor:
    """Integer images (N, C, H, W) -> (N, C, H/s, W/s): s x s box averages rounded to the levels (module
    docstring); for binary data the counts of ones (s*s + 1 levels). Returned as uint8."""
    n, c, h, w = images.shape
    if scale < 1 or h % scale or w % scale:
        raise ValueError(f"scale must be a positive integer dividing the image size {(h, w)}, got {scale}")
    sums = images.long().reshape(n, c, h // scale, scale, w // scale, scale).sum((3, 5))
    if levels == 2:
        return sums.to(torch.uint8)
    area = scale * scale
    return ((sums + area // 2) // area).to(torch.uint8)


def box_average(images: torch.Tensor, scale: int) -> torch.Tensor:
    """Float box averages (N, C, H/s, W/s) of float or integer images, unrounded (for consistency scores)."""
    n, c, h, w = images.shape
    return images.double().reshape(n, c, h // scale, scale, w // scale, scale).mean((3, 5))


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """RGB integer images (N, 3, H, W) -> BT.601 luminance (N, 1, H, W), same levels, uint8 (docstring)."""
    if images.shape[1] != 3:
        raise ValueError(f"colorization needs RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
    x = images.long()
    gray = (299 * x[:, 0] + 587 * x[:, 1] + 114 * x[:, 2] + 500) // 1000
    return gray[:, None].to(torch.uint8)


def gray_float(images: torch.Tensor) -> torch.Tensor:
    """Unrounded BT.601 luminance (N, 1, H, W) of float or integer RGB images (for consistency scores)."""
    x = images.double()
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def _static(dataset: ImageDataset) -> None:
    if any(isinstance(dataset.split(s), DynamicallyBinarizedSplit) for s in SPLITS):
        raise ValueError(
            f"{dataset.name} is binarized afresh at every draw: its condition cannot be fixed; "
            "use binarized-mnist (a fixed binarization) or mnist"
        )


def _classes(dataset: ImageDataset) -> dict:
    return {s: dataset.split(s).labels for s in SPLITS if dataset.split(s).labels is not None}


def superres_dataset(dataset: ImageDataset, scale: int) -> ConditionalImageDataset:
    """Pairs (image, its ``scale``-times down-sampled version) of every split of ``dataset``.

    E.g. MNIST 28x28 with scale 4 (7x7 conditions) or 2 (14x14), digits 8x8 with scale 2 (4x4), CIFAR-10
    32x32 with scale 4 (8x8). Raises ValueError if ``scale`` does not divide the image size.
    """
    _static(dataset)
    scale = int(scale)
    low_levels = downsample_levels(dataset.levels, scale)
    splits = {}
    for s in SPLITS:
        split = dataset.split(s)
        splits[s] = ImageSplit(split.images, downsample(split.images, scale, dataset.levels))
    c, h, w = dataset.image_shape
    return ConditionalImageDataset(
        name=f"{dataset.name}-superres{scale}",
        levels=dataset.levels,
        **splits,
        info={
            **dataset.info,
            "task": f"super-resolution x{scale}: {c}x{h // scale}x{w // scale} -> {c}x{h}x{w}",
            "condition": "box average of each block, "
            + ("the count of ones (s*s+1 levels)" if dataset.levels == 2 else "rounded half up to the levels"),
        },
        task="superres",
        condition_levels=low_levels,
        scale=scale,
        source=dataset.name,
        classes=_classes(dataset),
    )


def colorize_dataset(dataset: ImageDataset) -> ConditionalImageDataset:
    """Pairs (RGB image, its BT.601 luminance) of every split of an RGB ``dataset`` (CIFAR-10, photos32)."""
    _static(dataset)
    splits = {s: ImageSplit(dataset.split(s).images, to_gray(dataset.split(s).images)) for s in SPLITS}
    return ConditionalImageDataset(
        name=f"{dataset.name}-colorize",
        levels=dataset.levels,
        **splits,
        info={
            **dataset.info,
            "task": "colorization: p(RGB | luminance)",
            "condition": "Y = (299 R + 587 G + 114 B + 500) // 1000",
        },
        task="colorize",
        condition_levels=dataset.levels,
        source=dataset.name,
        classes=_classes(dataset),
    )


def conditional_dataset(dataset: ImageDataset, task: str, scale: int | None = None) -> ConditionalImageDataset:
    """``superres_dataset(dataset, scale)`` for task "superres", ``colorize_dataset(dataset)`` for "colorize"."""
    if task == "superres":
        if scale is None:
            raise ValueError("task superres needs a scale (e.g. 4 for MNIST 7x7 -> 28x28)")
        return superres_dataset(dataset, scale)
    if task == "colorize":
        return colorize_dataset(dataset)
    raise ValueError(f"unknown task {task!r}; use superres or colorize")


def parse_task_name(name: str) -> tuple[str, str, int | None] | None:
    """("mnist", "superres", 4) for "mnist-superres4", ("photos32", "colorize", None) for "photos32-colorize",
    None for a plain dataset name: the names ``superres_dataset`` and ``colorize_dataset`` give."""
    match = re.fullmatch(r"(.+)-(superres(\d+)|colorize)", name)
    if match is None:
        return None
    return match.group(1), "superres" if match.group(3) else "colorize", int(match.group(3)) if match.group(3) else None


def load_task_dataset(name: str, data_dir=None, download: bool = True) -> ImageDataset:
    """``load_dataset(name)``, also for the conditional names ("mnist-superres4", "photos32-colorize") that a
    run records as its data, so that ``genzoo eval RUN`` can rebuild the pairs it was trained on."""
    from genzoo.data import load_dataset

    parsed = parse_task_name(name)
    if parsed is None:
        return load_dataset(name, data_dir, download)
    source, task, scale = parsed
    return conditional_dataset(load_dataset(source, data_dir, download), task, scale)
