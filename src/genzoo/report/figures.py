"""The report's pictures: training curves (matplotlib, Agg) and what the model draws (labelled grids)."""

from __future__ import annotations

import io
import math
import time

SAMPLES = 64  # samples drawn into a report's grid
COMPLETIONS = (6, 4)  # test images completed, completions of each


def _png_bytes(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def curves_png(log: list[dict], title: str = "") -> bytes | None:
    """Training curves from log records: loss and validation (nats), learning rate(s), gradient norm,
    throughput and any named scalars (a GAN's player losses), one panel each; None without a log."""
    from genzoo.tasks.plot import figure_png, new_figure

    if not log:
        return None
    steps = [r.get("step") for r in log]

    def series(get) -> tuple[list, list]:
        pairs = [(s, get(r)) for s, r in zip(steps, log)]
        pairs = [(s, v) for s, v in pairs if isinstance(v, (int, float)) and math.isfinite(v)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    panels = []
    loss = series(lambda r: r.get("loss"))
    valid_key = next((k for k in ("nll_nats", "loss") if any(k in (r.get("valid") or {}) for r in log)), None)
    valid = series(lambda r: (r.get("valid") or {}).get(valid_key)) if valid_key else ([], [])
    if loss[0] or valid[0]:
        lines = [("training loss", loss, "-")] + ([(f"validation {valid_key}", valid, "o-")] if valid[0] else [])
        panels.append(("loss and validation (nats per image)", lines))
    lrs = sorted({k for r in log for k in (r.get("lrs") or {})})
    if lrs:
        panels.append(("learning rate", [(k, series(lambda r, k=k: (r.get("lrs") or {}).get(k)), "-") for k in lrs]))
    elif any("lr" in r for r in log):
        panels.append(("learning rate", [("lr", series(lambda r: r.get("lr")), "-")]))
    for key, name in (("grad_norm", "gradient norm (before clipping)"), ("images_per_sec", "training images / s")):
        if any(key in r for r in log):
            panels.append((name, [(key, series(lambda r, key=key: r.get(key)), "-")]))
    scalars = sorted({k for r in log for k in (r.get("scalars") or {})})
    if scalars:
        panels.append(
            ("logged scalars", [(k, series(lambda r, k=k: (r.get("scalars") or {}).get(k)), "-") for k in scalars])
        )
    panels = [p for p in panels if any(xs for _, (xs, _), _ in p[1])]
    if not panels:
        return None
    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    fig = new_figure((1080 if columns == 2 else 720, 330 * rows + (30 if title else 0)))
    for i, (name, lines) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        for label, (xs, ys), style in lines:
            ax.plot(xs, ys, style, label=label, markersize=3, linewidth=1.4)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("step")
        ax.grid(True, color="0.9")
        if len(lines) > 1:
            ax.legend(frameon=False, fontsize=9)
        if name == "learning rate" and all(v > 0 for _, (_, ys), _ in lines for v in ys):
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


def comparison_curves_png(runs: list[dict]) -> bytes | None:
    """The validation curves of several runs on one axis (nats per image), or None if fewer than two have one."""
    from genzoo.tasks.plot import figure_png, new_figure

    curves = []
    for run in runs:
        points = [(r["step"], r["valid"].get("nll_nats")) for r in run["log"] if isinstance(r.get("valid"), dict)]
        points = [(s, v) for s, v in points if isinstance(v, (int, float)) and math.isfinite(v)]
        if points:
            curves.append((run["name"], points))
    if len(curves) < 2:
        return None
    fig = new_figure((860, 420))
    ax = fig.add_subplot()
    for name, points in curves:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", markersize=3, label=name)
    ax.set(title="validation NLL of every run", xlabel="step", ylabel="nats per image")
    ax.grid(True, color="0.9")
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


# -- what the model draws ----------------------------------------------------------------------------------


def load_model(run: dict, device: str = "cpu"):
    """The run's model (best-validation weights when kept, else the last; EMA when present), or None
    with a note saying why not."""
    from genzoo.checkpoint import load
    from genzoo.distributed import select_device

    try:
        return load(run["dir"], weights="auto").to(select_device(device))
    except (ValueError, OSError, RuntimeError) as err:
        if not (run["dir"] / "model.safetensors").is_file():
            run["notes"].append("no model file yet (training not finished): nothing drawn from the model")
        else:
            run["notes"].append(f"cannot load the model: {err}")
        return None


def draw_samples(model, n: int = SAMPLES, seed: int = 0) -> tuple[bytes, str, float, str]:
    """A labelled grid of samples (PNG), its caption, the sampling time in seconds and a line saying how fast
    that was. A class-conditional model draws the classes 0, 1, ... in turn, one column per class with its
    label under the column."""
    import torch

    from genzoo.images import labelled_grid
    from genzoo.workflow import sample_images

    classes = model.num_classes if model.conditional else None
    if classes:
        n = classes * max(1, n // classes)
    start = time.perf_counter()
    with torch.no_grad():
        images = sample_images(model, n, seed=seed)
    seconds = time.perf_counter() - start
    if classes:
        picture = labelled_grid(
            images,
            model.levels,
            classes,
            column_labels=[str(c) for c in range(classes)],
            labels_below=True,
            title="class label y under each column",
        )
    else:
        picture = labelled_grid(images, model.levels, math.ceil(math.sqrt(n)))
    cached = model.has_cached_sampling if model.can_complete else None  # autoregressive models declare it
    how = "" if cached is None else (", cached sampling" if cached else ", naive sampling (one pass per subpixel)")
    caption = f"{n} samples (seed {seed}) of the {model.checkpoint_info.get('weights', '')} weights"
    speed = f"sampling: {n} images in {seconds:.3g} s ({n / max(seconds, 1e-9):.1f} images/s on {model.device}{how})"
    return _png_bytes(picture), caption, seconds, speed


def draw_completions(model, run: dict, seed: int = 0) -> tuple[bytes, str] | None:
    """Completions of the first test images with their top half kept (PNG and caption); None (with a note)
    when the dataset cannot be loaded."""
    import torch

    from genzoo.data import load_dataset
    from genzoo.images import labelled_grid
    from genzoo.workflow import complete_images, keep_mask

    data = run["data"]
    try:
        test = load_dataset(data["name"], data.get("data_dir")).test
    except Exception as err:  # noqa: BLE001 (a dataset that is not on this machine: say so, draw the rest)
        run["notes"].append(f"no completions: cannot load dataset {data.get('name')!r} ({err})")
        return None
    count, per_image = min(COMPLETIONS[0], len(test)), COMPLETIONS[1]
    images, labels = test.batch(torch.arange(count))
    known = keep_mask(model.image_shape, "top-half")
    with torch.no_grad():
        completed = complete_images(model, images, known, per_image, seed, labels if model.conditional else None)
    kept = torch.where(known, images, torch.full_like(images, (model.levels - 1) // 2))
    rows = torch.cat([images[:, None], kept[:, None], completed], 1).reshape(-1, *model.image_shape)
    heads = ["original", "kept part"] + [f"completion {i + 1}" for i in range(per_image)]
    names = [
        f"test {i}" + (f", y={int(labels[i])}" if model.conditional and labels is not None else "")
        for i in range(count)
    ]
    picture = labelled_grid(rows, model.levels, len(heads), column_labels=heads, row_labels=names)
    return _png_bytes(picture), f"top half kept, the rest sampled in the model's order (seed {seed})"


# -- HTML sections -----------------------------------------------------------------------------------------
