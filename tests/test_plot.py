"""Plots (matplotlib, Agg) and labelled image grids: sizes, content, atomic writes, errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from genzoo.images import labelled_grid, save_labelled_grid
from genzoo.tasks.plot import draw_line_plot, figure_png, line_plot, new_figure, save_panels, scatter_plot

SERIES = [
    {"label": "naive Bayes", "x": [10, 100, 1000], "y": [0.5, 0.3, 0.2], "err": [0.05, 0.02, 0.01]},
    {"label": "logistic regression", "x": [10, 100, 1000], "y": [0.6, 0.25, 0.1]},
]


def drawn(picture: Image.Image) -> int:
    """How many distinct colours: a blank picture has one."""
    return len(picture.convert("RGB").getcolors(1 << 24))


def test_line_plot_writes_a_png_of_the_size_asked_atomically(tmp_path):
    path = line_plot(SERIES, tmp_path / "curve.png", title="t", xlabel="examples", ylabel="error", logx=True)
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.size == (720, 480) and drawn(picture) > 20
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary file left


def test_line_plot_refuses_what_it_cannot_draw(tmp_path):
    with pytest.raises(ValueError):
        line_plot([{"label": "a", "x": [0, 1], "y": [1, 2]}], tmp_path / "a.png", logx=True)
    with pytest.raises(ValueError):
        line_plot([{"label": "a", "x": [], "y": []}], tmp_path / "b.png")
    assert not list(tmp_path.iterdir())


def test_panels_tile_drawn_plots(tmp_path):
    panels = [draw_line_plot(SERIES[:1], size=(300, 200)), draw_line_plot(SERIES, title="two", size=(300, 200))]
    assert all(p.size == (300, 200) and p.mode == "RGB" for p in panels)
    sheet = Image.open(save_panels(panels + panels[:1], tmp_path / "sheet.png", columns=2))
    assert sheet.size == (600, 400)
    assert sheet.crop((300, 200, 600, 400)).getcolors() == [(300 * 200, (255, 255, 255))]  # the empty slot


def test_scatter_plot_with_and_without_labels(tmp_path):
    points = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(200) % 3
    picture = Image.open(scatter_plot(points, labels, tmp_path / "map.png", title="codes", xlabel="z1", ylabel="z2"))
    assert picture.size == (640, 560) and drawn(picture) > 20
    assert Image.open(scatter_plot(points.tolist(), None, tmp_path / "one.png", size=(300, 300))).size == (300, 300)
    with pytest.raises(ValueError):
        scatter_plot([], None, tmp_path / "none.png")


def test_figures_render_off_screen():
    fig = new_figure((200, 100))
    fig.add_subplot().plot([0, 1], [1, 0])
    data = figure_png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_labelled_grid_enlarges_tiles_and_keeps_their_values():
    images = torch.arange(12).reshape(12, 1, 1, 1).expand(12, 1, 8, 8) % 17
    plain = labelled_grid(images, 17, 4, min_size=64, gap=4)
    assert plain.size == (4 + 4 * (64 + 4), 4 + 3 * (64 + 4) + 4)
    # tile 5 (row 1, column 1) is one level: 5 of 16 -> round(5 * 255 / 16)
    left, top = 4 + 1 * (64 + 4), 4 + 1 * (64 + 4)
    assert plain.crop((left, top, left + 64, top + 64)).getcolors() == [(64 * 64, (80, 80, 80))]
    labelled = labelled_grid(
        images, 17, 4, column_labels=list("abcd"), row_labels=["first", "second", "third"], title="title"
    )
    assert labelled.width > plain.width and labelled.height > plain.height
    below = labelled_grid(images, 17, 4, column_labels=[str(c) for c in range(4)], labels_below=True)
    assert below.height == labelled_grid(images, 17, 4, column_labels=list("0123")).height


def test_column_headings_widen_their_columns_rather_than_overlap():
    images = torch.zeros(6, 1, 8, 8, dtype=torch.long)
    heads = ["original", "kept part", "completion 1", "completion 2", "completion 3", "completion 4"]
    assert labelled_grid(images, 2, 6, column_labels=heads).width > labelled_grid(images, 2, 6).width


def test_labelled_grid_of_colour_images_is_saved_in_the_format_of_its_name(tmp_path):
    images = torch.randint(0, 256, (6, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    path = save_labelled_grid(images, 256, tmp_path / "grid.png", 3, column_labels=["a", "b", "c"])
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.mode == "RGB" and picture.width >= 3 * 64
