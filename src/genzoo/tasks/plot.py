"""Line plots with error bars drawn with PIL alone (no matplotlib dependency).

``line_plot`` is enough for learning curves: a few series, optional log-scale x, error bars, a legend.
``draw_line_plot`` returns the picture instead, and ``save_panels`` tiles several into one PNG.
``scatter_plot`` draws 2-D points coloured by class (maps of latent codes).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from genzoo.atomic import atomic_path

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round numbers (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int(math.ceil((hi - first) / step)) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 values times powers of ten within [lo, hi]."""
    ticks = [m * 10**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    return [t for t in ticks if lo <= t <= hi] or [lo, hi]


def line_plot(
    series: list[dict],
    path,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    size: tuple[int, int] = (720, 480),
) -> Path:
    """Write a PNG of ``series``: dicts with ``label``, ``x``, ``y`` and optional ``err`` (half-height of
    each error bar). Returns the path; the file is replaced atomically."""
    return _save_png(draw_line_plot(series, title, xlabel, ylabel, logx, size), path)


def save_panels(panels: list[Image.Image], path, columns: int = 2) -> Path:
    """Tile equally sized pictures row by row, ``columns`` per row, into one PNG (replaced atomically)."""
    width, height = panels[0].size
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (width * min(columns, len(panels)), height * rows), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, ((i % columns) * width, (i // columns) * height))
    return _save_png(sheet, path)


def _draw_axes(draw, to_px, x_ticks, y_ticks, frame, font, grid: bool) -> None:
    """Tick marks and labels of both axes (x ticks outside the frame skipped), optional horizontal grid
    lines, then the frame (left, top, right, bottom) over them; ``to_px`` maps data to pixel coordinates."""
    left, top, right, bottom = frame
    for t in y_ticks:
        _, v = to_px(x_ticks[0], t)
        draw.line([left - 4, v, left, v], fill="black")
        if grid:
            draw.line([left + 1, v, right - 1, v], fill=(230, 230, 230))
        draw.text((left - 8, v), f"{t:g}", fill="black", font=font, anchor="rm")
    for t in x_ticks:
        u, _ = to_px(t, y_ticks[0])
        if left <= u <= right:
            draw.line([u, bottom, u, bottom + 4], fill="black")
            draw.text((u, bottom + 8), f"{t:g}", fill="black", font=font, anchor="ma")
    draw.rectangle([left, top, right, bottom], outline="black")


def draw_line_plot(
    series: list[dict],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    size: tuple[int, int] = (720, 480),
) -> Image.Image:
    """The picture ``line_plot`` writes, as a PIL image."""
    width, height = size
    left, right, top, bottom = 70, 20, 40, 60
    font = ImageFont.load_default()
    xs = [x for s in series for x in s["x"]]
    lows = [y - e for s in series for y, e in zip(s["y"], s.get("err") or [0] * len(s["y"]))]
    highs = [y + e for s in series for y, e in zip(s["y"], s.get("err") or [0] * len(s["y"]))]
    if not xs or (logx and min(xs) <= 0):
        raise ValueError("need at least one point, and positive x for a log-scale axis")
    fx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    x_lo, x_hi = fx(min(xs)), fx(max(xs))
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    y_ticks = _nice_ticks(min(lows), max(highs))
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    pad = 0.04 * (x_hi - x_lo)

    def to_px(x: float, y: float) -> tuple[float, float]:
        u = left + (fx(x) - x_lo + pad) / (x_hi - x_lo + 2 * pad) * (width - left - right)
        v = top + (y_hi - y) / (y_hi - y_lo) * (height - top - bottom)
        return u, v

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    x_ticks = _log_ticks(min(xs), max(xs)) if logx else _nice_ticks(min(xs), max(xs))
    _draw_axes(draw, to_px, x_ticks, y_ticks, (left, top, width - right, height - bottom), font, grid=True)
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = [to_px(x, y) for x, y in zip(s["x"], s["y"])]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for (u, v), x, y, e in zip(points, s["x"], s["y"], s.get("err") or [0] * len(points)):
            (_, v_lo), (_, v_hi) = to_px(x, y - e), to_px(x, y + e)
            draw.line([u, v_lo, u, v_hi], fill=colour)
            draw.line([u - 4, v_lo, u + 4, v_lo], fill=colour)
            draw.line([u - 4, v_hi, u + 4, v_hi], fill=colour)
            draw.ellipse([u - 3, v - 3, u + 3, v + 3], fill=colour)
        y_legend = top + 10 + 16 * i
        draw.line([width - right - 150, y_legend, width - right - 125, y_legend], fill=colour, width=2)
        draw.text((width - right - 120, y_legend), s["label"], fill="black", font=font, anchor="lm")
    draw.text((width / 2, 12), title, fill="black", font=font, anchor="ma")
    draw.text(
        ((left + width - right) / 2, height - 22),
        xlabel + (" (log scale)" if logx else ""),
        fill="black",
        font=font,
        anchor="ma",
    )
    label = Image.new("RGB", (height, 16), "white")  # the y label, drawn horizontally then turned
    ImageDraw.Draw(label).text((height / 2, 8), ylabel, fill="black", font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (4, 0))
    return image


def _save_png(image: Image.Image, path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


# ten well-separated colours for categorical points (class labels), in the order of matplotlib's "tab10"
CATEGORY_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def scatter_plot(
    points, labels, path, title: str = "", xlabel: str = "", ylabel: str = "", size: tuple[int, int] = (640, 560)
) -> Path:
    """Write a PNG scatter of ``points`` (N, 2) coloured by integer ``labels`` (N,) (None: one colour),
    with a legend of the labels present. Returns the path; the file is replaced atomically."""
    width, height = size
    left, right, top, bottom = 70, 90, 40, 60
    font = ImageFont.load_default()
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    labels = [0] * len(xs) if labels is None else [int(c) for c in labels]
    if not xs:
        raise ValueError("need at least one point")
    x_ticks, y_ticks = _nice_ticks(min(xs), max(xs)), _nice_ticks(min(ys), max(ys))

    def to_px(x: float, y: float) -> tuple[float, float]:
        u = left + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (width - left - right)
        v = top + (y_ticks[-1] - y) / (y_ticks[-1] - y_ticks[0]) * (height - top - bottom)
        return u, v

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    _draw_axes(draw, to_px, x_ticks, y_ticks, (left, top, width - right, height - bottom), font, grid=False)
    for x, y, c in zip(xs, ys, labels):
        u, v = to_px(x, y)
        draw.ellipse([u - 2, v - 2, u + 2, v + 2], fill=CATEGORY_COLOURS[c % len(CATEGORY_COLOURS)])
    for i, c in enumerate(sorted(set(labels)) if len(set(labels)) > 1 else []):
        y_legend = top + 8 + 14 * i
        colour = CATEGORY_COLOURS[c % len(CATEGORY_COLOURS)]
        draw.ellipse([width - right + 12, y_legend - 3, width - right + 18, y_legend + 3], fill=colour)
        draw.text((width - right + 24, y_legend), str(c), fill="black", font=font, anchor="lm")
    draw.text((width / 2, 12), title, fill="black", font=font, anchor="ma")
    draw.text(((left + width - right) / 2, height - 22), xlabel, fill="black", font=font, anchor="ma")
    label = Image.new("RGB", (height, 16), "white")  # the y label, drawn horizontally then turned
    ImageDraw.Draw(label).text((height / 2, 8), ylabel, fill="black", font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (4, 0))
    return _save_png(image, path)
