"""Plots drawn with matplotlib's Agg backend (no display, no pyplot state), written as PNG atomically.

``line_plot`` is enough for learning curves: a few series, optional log-scale x, error bars, a legend.
``draw_line_plot`` returns the picture instead, and ``save_panels`` tiles several into one PNG.
``scatter_plot`` draws 2-D points coloured by class (maps of latent codes). ``new_figure``,
``figure_png`` and ``save_figure`` are the building blocks for any other plot (the run report's curves).
Sizes are in pixels (at 100 dpi).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from genzoo.atomic import atomic_path

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]

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
DPI = 100


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255 for c in colour)


def new_figure(size: tuple[int, int] = (720, 480)):
    """A matplotlib Figure of ``size`` pixels on an Agg canvas (never a window, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    """The PNG bytes of a figure from ``new_figure``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_figure(fig, path) -> Path:
    """Write a figure as PNG, atomically; returns the path."""
    return save_png_bytes(figure_png(fig), path)


def save_png_bytes(data: bytes, path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


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
    return save_figure(_line_figure(series, title, xlabel, ylabel, logx, size), path)


def draw_line_plot(
    series: list[dict],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    size: tuple[int, int] = (720, 480),
) -> Image.Image:
    """The picture ``line_plot`` writes, as an RGB PIL image of ``size`` pixels."""
    return _to_image(_line_figure(series, title, xlabel, ylabel, logx, size))


def _line_figure(series, title, xlabel, ylabel, logx, size):
    xs = [x for s in series for x in s["x"]]
    if not xs or (logx and min(xs) <= 0):
        raise ValueError("need at least one point, and positive x for a log-scale axis")
    fig = new_figure(size)
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        colour = _rgb(COLOURS[i % len(COLOURS)])
        err = s.get("err")
        ax.errorbar(
            s["x"],
            s["y"],
            yerr=err if err else None,
            label=s["label"],
            color=colour,
            marker="o",
            markersize=4,
            linewidth=1.8,
            capsize=3 if err else 0,
        )
    if logx:
        ax.set_xscale("log")
    ax.grid(True, color="0.9")
    ax.set_axisbelow(True)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if any(s.get("label") for s in series):
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def _to_image(fig) -> Image.Image:
    return Image.open(io.BytesIO(figure_png(fig))).convert("RGB")


def save_panels(panels: list[Image.Image], path, columns: int = 2) -> Path:
    """Tile equally sized pictures row by row, ``columns`` per row, into one PNG (replaced atomically)."""
    width, height = panels[0].size
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (width * min(columns, len(panels)), height * rows), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, ((i % columns) * width, (i // columns) * height))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)


def scatter_plot(
    points, labels, path, title: str = "", xlabel: str = "", ylabel: str = "", size: tuple[int, int] = (640, 560)
) -> Path:
    """Write a PNG scatter of ``points`` (N, 2) coloured by integer ``labels`` (N,) (None: one colour),
    with a legend of the labels present. Returns the path; the file is replaced atomically."""
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    if not xs:
        raise ValueError("need at least one point")
    labels = [0] * len(xs) if labels is None else [int(c) for c in labels]
    fig = new_figure(size)
    ax = fig.add_subplot()
    classes = sorted(set(labels))
    for c in classes:
        mine = [i for i, label in enumerate(labels) if label == c]
        ax.scatter(
            [xs[i] for i in mine],
            [ys[i] for i in mine],
            s=9,
            color=_rgb(CATEGORY_COLOURS[c % len(CATEGORY_COLOURS)]),
            label=str(c),
            linewidths=0,
        )
    if len(classes) > 1:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=2, title="class")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return save_figure(fig, path)
