"""Pictures of integer images: sample grids and comparison panels as PNG files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genzoo.atomic import WriteError, atomic_path
from genzoo.errors import UsageError


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


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF"}  # fmt: skip


def image_format(path: str | os.PathLike) -> str:
    """The PIL format that the extension of ``path`` names; UsageError for any other extension."""
    if Path(path).is_dir():
        raise WriteError(f"cannot write {path}: it is a directory; give a file name such as {Path(path) / 'grid.png'}")
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        known = ", ".join(sorted(IMAGE_FORMATS))
        raise UsageError(f"cannot tell the image format of {path}: give a file name ending in one of {known}")
    return IMAGE_FORMATS[suffix]


def save_grid(images: torch.Tensor, levels: int, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write a grid of ``images`` atomically, in the format its extension names (PNG for .png); returns
    the path."""
    image_format(path)
    with atomic_path(path) as tmp:
        grid(images, levels, nrow).save(tmp, format=image_format(path))
    return Path(path)


# -- labelled grids: readable sizes, class labels under columns, headings over them ---------------------


def label_font(size: int = 14):
    """A scalable font for labels: matplotlib's bundled DejaVu Sans, else PIL's default."""
    from PIL import ImageFont

    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (ImportError, OSError, ValueError):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
            return ImageFont.load_default()


def labelled_grid(
    images: torch.Tensor,
    levels: int,
    nrow: int | None = None,
    *,
    column_labels: list[str] | None = None,
    row_labels: list[str] | None = None,
    labels_below: bool = False,
    title: str | None = None,
    min_size: int = 64,
    gap: int = 4,
    font_size: int = 14,
) -> Image.Image:
    """Tile ``images`` (N, C, H, W) in [0, levels), ``nrow`` per row (as ``grid``), each enlarged by an integer
    factor to at least ``min_size`` pixels, with optional text: ``column_labels`` (one per column; above the
    columns, or under them with ``labels_below``: e.g. the class label of a conditional sample),
    ``row_labels`` (one per row, on the left) and a ``title`` line. Returns an RGB picture."""
    from PIL import ImageDraw

    pixels = to_uint8(images, levels)
    n, h, w, c = pixels.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    zoom = max(1, math.ceil(min_size / max(h, w)))
    ch, cw = h * zoom, w * zoom
    font = label_font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        box = measure.textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    line = text_size("Ag")[1] + 6
    col = max([cw] + [text_size(str(t))[0] + gap for t in column_labels or []])  # a heading never overlaps
    left = max((text_size(t)[0] for t in row_labels or []), default=-gap) + gap + gap
    top = (line if title else 0) + (line if column_labels and not labels_below else 0) + gap
    bottom = (line if column_labels and labels_below else 0) + gap
    width = max(left + nrow * (col + gap), (text_size(title)[0] + 2 * gap) if title else 0)
    picture = Image.new("RGB", (width, top + rows * (ch + gap) + bottom), "white")
    draw = ImageDraw.Draw(picture)
    if title:
        draw.text((gap, 3), title, fill="black", font=font)
    for i in range(n):
        r, q = divmod(i, nrow)
        tile = Image.fromarray(pixels[i, ..., 0] if c == 1 else pixels[i], mode="L" if c == 1 else "RGB")
        picture.paste(
            tile.resize((cw, ch), Image.NEAREST).convert("RGB"),
            (left + q * (col + gap) + (col - cw) // 2, top + r * (ch + gap)),
        )
    for q, text in enumerate((column_labels or [])[:nrow]):
        x = left + q * (col + gap) + col / 2
        y = top + rows * (ch + gap) + line / 2 if labels_below else top - line / 2 - gap / 2
        draw.text((x, y), str(text), fill="black", font=font, anchor="mm")
    for r, text in enumerate((row_labels or [])[:rows]):
        draw.text((left - gap, top + r * (ch + gap) + ch / 2), str(text), fill="black", font=font, anchor="rm")
    return picture


def save_labelled_grid(images: torch.Tensor, levels: int, path: str | os.PathLike, nrow: int | None = None, **labels):
    """Write ``labelled_grid(images, levels, nrow, **labels)`` atomically in the format of the extension of
    ``path``; returns the path."""
    image_format(path)
    with atomic_path(path) as tmp:
        labelled_grid(images, levels, nrow, **labels).save(tmp, format=image_format(path))
    return Path(path)
