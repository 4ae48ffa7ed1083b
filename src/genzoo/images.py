"""Pictures of integer images: sample grids and comparison panels as PNG files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genzoo.atomic import atomic_path


def to_uint8(images: torch.Tensor, levels: int) -> np.ndarray:
    """Integer images (N, C, H, W) in [0, levels) -> uint8 (N, H, W, C) in [0, 255]."""
    scaled = images.detach().cpu().double() * (255.0 / (levels - 1))
    return scaled.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid(images: torch.Tensor, levels: int, nrow: int | None = None, pad: int = 1, min_size: int = 28) -> Image.Image:
    """Tile images into one picture; tiny images (e.g. 8x8 digits) are enlarged for viewing."""
    pixels = to_uint8(images, levels)
    n, h, w, c = pixels.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = math.ceil(n / nrow)
    canvas = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), 128, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = pixels[i]
    picture = Image.fromarray(canvas[..., 0] if c == 1 else canvas, mode="L" if c == 1 else "RGB")
    zoom = max(1, math.ceil(min_size / h))
    if zoom > 1:
        picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
    return picture


def save_grid(images: torch.Tensor, levels: int, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write a PNG grid of ``images`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        grid(images, levels, nrow).save(tmp, format="PNG")
    return Path(path)
