"""photos32: 32x32 colour patches of the real photographs bundled inside the scikit-image and scikit-learn
wheels (no network), split into train/valid/test by source photograph.

Photographs (files read from the installed packages, never through ``skimage.data``'s downloader):

    scikit-image   astronaut.png, chelsea.png (a cat), coffee.png, hubble_deep_field.jpg, ihc.png
                   (a stained tissue micrograph), motorcycle_left.png, retina.jpg, rocket.jpg
    scikit-learn   china.jpg, flower.jpg  (``sklearn.datasets.load_sample_images``)

Left out: the synthetic images (color.png, logo.png, the chessboards), the gray ones, and
motorcycle_right.png, the other half of a stereo pair of the same scene as motorcycle_left.png (it
would put the same scene in two splits).

Each photograph is reduced by an integer box average where it is large (hubble_deep_field by 2,
retina by 3, so that a patch holds structure rather than a smooth area), then cut into 32x32 patches:
stride 16 (overlapping) in the train split, 32 (disjoint) in valid and test. Patches whose RGB values
span less than 16 levels (flat black backgrounds of retina and hubble) are dropped. 256 levels.
Splits, by photograph (no photograph in two splits):

    train  astronaut, coffee, hubble_deep_field, ihc, motorcycle_left, retina, flower   6,574 patches
    valid  rocket                                                                         260
    test   chelsea, china                                                                 371

The patches of every photograph are checked against a SHA-256 recorded here: a different decoder
(another Pillow or libjpeg) or another package version changing a file is a DataError that says which
photograph differs, not silently different data.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import torch

from genzoo.data.base import DataError, ImageDataset, ImageSplit

PATCH = 32
STRIDES = {"train": 16, "valid": 32, "test": 32}
MIN_RANGE = 16  # patches whose values span fewer levels than this are flat background: dropped

# name: (package, path inside it, split, integer reduction, sha256 of its patches (uint8, N x 3 x 32 x 32))
PHOTOS = {
    "astronaut": (
        "skimage",
        "data/astronaut.png",
        "train",
        1,
        "1b87e73e17fb5921f230b7e64dfadd8c661b49f9a6bfb9e9e30bb65cb5b5373b",
    ),
    "coffee": (
        "skimage",
        "data/coffee.png",
        "train",
        1,
        "12922fd6e179cbfe647e6c2fac2567286d0d79a34858b63ef17c4012d28c0063",
    ),
    "hubble_deep_field": (
        "skimage",
        "data/hubble_deep_field.jpg",
        "train",
        2,
        "cfd4071d26e57723d19b80e30049285e8133e2e5d91275a75f9c2ba24108ffbb",
    ),
    "ihc": (
        "skimage",
        "data/ihc.png",
        "train",
        1,
        "6db955ebb081c89f4e2588bca0d9afaa063d672b5686c6ded68131c25637426a",
    ),
    "motorcycle_left": (
        "skimage",
        "data/motorcycle_left.png",
        "train",
        1,
        "3f50cf5981f2ef48ff0bd97fbfe67bee51acc8424283307c85e0cef74fdc0494",
    ),
    "retina": (
        "skimage",
        "data/retina.jpg",
        "train",
        3,
        "38df3095df89eb0de01a8cdf04336eb2780d9c588ab099e154ae4889897b0df9",
    ),
    "flower": (
        "sklearn",
        "datasets/images/flower.jpg",
        "train",
        1,
        "e13c0462c62fd3de8952c639c53c17ece0861c84e24af80032f7043bbb06ebff",
    ),
    "rocket": (
        "skimage",
        "data/rocket.jpg",
        "valid",
        1,
        "a1fd3e550dc891e1f8d323d2571eadde8b76360af421307ac6ec26599ba59ca8",
    ),
    "chelsea": (
        "skimage",
        "data/chelsea.png",
        "test",
        1,
        "c3332395396cc0d124cf86bf5e69226195ce6a0451a8def2a21a8bb71bcb6dbb",
    ),
    "china": (
        "sklearn",
        "datasets/images/china.jpg",
        "test",
        1,
        "dd8e9bbd117f9fa230bb0542854addda2af852ffbeebbd483dfdb9a7f8492196",
    ),
}


def read_photo(name: str) -> np.ndarray:
    """The photograph ``name`` as uint8 (H, W, 3), read from its package's files, reduced (docstring)."""
    from PIL import Image

    package, path, _, reduction, _ = PHOTOS[name]
    try:
        with resources.as_file(resources.files(package).joinpath(path)) as file, Image.open(file) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.int64)
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise DataError(
            f"photos32 needs {path} from the {package} package (pip install scikit-image scikit-learn): {err}"
        ) from err
    if reduction > 1:
        h, w = (s // reduction * reduction for s in pixels.shape[:2])
        blocks = pixels[:h, :w].reshape(h // reduction, reduction, w // reduction, reduction, 3).sum((1, 3))
        area = reduction * reduction
        pixels = (blocks + area // 2) // area
    return pixels.astype(np.uint8)


def patches(photo: np.ndarray, stride: int) -> np.ndarray:
    """All PATCH x PATCH patches at multiples of ``stride``, raster order, minus flat ones: uint8 (N, 3, 32, 32)."""
    h, w, _ = photo.shape
    out = [
        photo[i : i + PATCH, j : j + PATCH]
        for i in range(0, h - PATCH + 1, stride)
        for j in range(0, w - PATCH + 1, stride)
    ]
    cut = np.stack(out).transpose(0, 3, 1, 2)
    span = cut.reshape(len(cut), -1).max(1).astype(int) - cut.reshape(len(cut), -1).min(1)
    return np.ascontiguousarray(cut[span >= MIN_RANGE])


def photo_patches(name: str, verify: bool = True) -> np.ndarray:
    """The patches of photograph ``name`` for its split; with ``verify``, checked against its SHA-256."""
    split, expected = PHOTOS[name][2], PHOTOS[name][4]
    cut = patches(read_photo(name), STRIDES[split])
    digest = hashlib.sha256(cut.tobytes()).hexdigest()
    if verify and expected and digest != expected:
        raise DataError(
            f"photos32: the patches of {name} ({PHOTOS[name][0]}: {PHOTOS[name][1]}) have SHA-256 {digest}, "
            f"expected {expected}: the installed package's file or the image decoder differs from the one "
            "the checksums were recorded with"
        )
    return cut


def load_photos32(root=None, download: bool = True) -> ImageDataset:
    """photos32 (3x32x32, 256 levels, no labels); ``root`` and ``download`` are unused (data is bundled)."""
    parts = {s: [] for s in STRIDES}
    counts = {}
    for name in PHOTOS:
        cut = photo_patches(name)
        parts[PHOTOS[name][2]].append(cut)
        counts[name] = len(cut)
    splits = {s: ImageSplit(torch.from_numpy(np.concatenate(parts[s]))) for s in parts}
    return ImageDataset(
        name="photos32",
        levels=256,
        **splits,
        info={
            "source": "photographs bundled in scikit-image and scikit-learn (see genzoo.data.photos)",
            "split_photos": {s: [n for n in PHOTOS if PHOTOS[n][2] == s] for s in STRIDES},
            "patches_per_photo": counts,
            "strides": dict(STRIDES),
        },
    )
