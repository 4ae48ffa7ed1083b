"""Super-resolution and colorization with image-conditioned models: samples, metrics against the truth
and the baselines, and labelled comparison pictures.

The library side of ``genzoo train MODEL --task superres|colorize``, ``genzoo eval RUN`` and
``genzoo sample RUN --from low.png | --index I``; the data are ``genzoo.data.pairs`` datasets (conditions
in the labels), the models any image-conditioned autoregressive model (``condition_shape`` set), the
baselines those of ``genzoo.tasks.baselines``.

Metrics, on intensities in [0, 1] (level / (levels - 1)); every sample of a model is scored against the
truth and the scores averaged over the samples:

- ``psnr``: peak signal-to-noise ratio, dB, scikit-image's, per image (data range 1), averaged over
  images; an exact reconstruction counts ``PSNR_CAP`` dB instead of infinity;
- ``ssim``: scikit-image's structural similarity per image (7x7 window, smaller for smaller images;
  colour channels averaged), averaged over images;
- ``consistency``: mean squared error between the prediction taken back to the condition (box average
  for super-resolution, BT.601 luminance for colorization, unrounded) and the condition itself: 0 for
  any image the condition could have come from;
- ``diversity``: the standard deviation of each subpixel over the samples of one condition, averaged
  over subpixels and conditions (0 for a deterministic method);
- ``accuracy``: a classifier's accuracy on the predictions (MNIST: the digit classifier of
  ``genzoo.metrics.feature_net``), beside its accuracy on the true images;
- ``colourfulness``: Hasler & Süsstrunk (2003), M = sigma_rgyb + 0.3 mu_rgyb on the 0..255 scale, per
  image, averaged (RGB only);
- the model's exact conditional NLL -log p(x | y) over the whole split: ``genzoo.evaluate.evaluate_nll``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from genzoo.data.pairs import box_average, gray_float
from genzoo.tasks import baselines

PSNR_CAP = 100.0  # dB counted for a prediction equal to the truth


# ---- what a model or dataset is about ------------------------------------------------------------------


def task_of(image_shape, condition_shape) -> tuple[str, int]:
    """("superres", scale) when the condition is smaller, ("colorize", 1) for a gray condition of an RGB image."""
    (c, h, w), (cc, ch, cw) = tuple(image_shape), tuple(condition_shape)
    if (ch, cw) != (h, w):
        if h % ch or w % cw or h // ch != w // cw or cc != c:
            raise ValueError(f"condition {tuple(condition_shape)} is no integer down-sampling of {tuple(image_shape)}")
        return "superres", h // ch
    if cc == 1 and c == 3:
        return "colorize", 1
    raise ValueError(f"condition {tuple(condition_shape)} of images {tuple(image_shape)}: not superres, not colorize")


def intensity(images: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer images as float64 intensities in [0, 1]."""
    return images.double() / (levels - 1)


def condition_picture(y: torch.Tensor, image_shape, condition_levels: int) -> torch.Tensor:
    """The condition shown at the image's size (nearest up-sampling), intensities (N, C', H, W)."""
    scale = image_shape[1] // y.shape[2]
    return baselines.nearest(y, scale, condition_levels)


def deterministic_baselines(image_shape, condition_shape, condition_levels: int, regression=None) -> dict:
    """{name: y -> intensities}: nearest and bicubic (super-resolution) or gray (colorization), and the L2
    CNN ``regression`` when given."""
    task, scale = task_of(image_shape, condition_shape)
    if task == "superres":
        out = {
            "nearest": lambda y: baselines.nearest(y, scale, condition_levels),
            "bicubic": lambda y: baselines.bicubic(y, scale, condition_levels),
        }
    else:
        out = {"gray": lambda y: baselines.gray(y, condition_levels)}
    if regression is not None:
        out["l2-cnn"] = regression.predict
    return out


# ---- metrics -------------------------------------------------------------------------------------------


def _numpy(images: torch.Tensor) -> np.ndarray:
    return images.detach().cpu().double().numpy()


def psnr(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean per-image PSNR in dB of intensities (N, C, H, W) in [0, 1] (``PSNR_CAP`` for an exact match)."""
    from skimage.metrics import peak_signal_noise_ratio

    values = []
    for p, t in zip(_numpy(pred), _numpy(truth)):
        values.append(PSNR_CAP if np.array_equal(p, t) else peak_signal_noise_ratio(t, p, data_range=1.0))
    return float(np.mean(values))


def ssim(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean per-image SSIM of intensities (N, C, H, W) in [0, 1] (scikit-image, 7x7 window or the image's size)."""
    from skimage.metrics import structural_similarity

    side = min(pred.shape[-2:])
    window = min(7, side if side % 2 else side - 1)  # images smaller than 7x7: the largest odd window
    values = []
    for p, t in zip(_numpy(pred), _numpy(truth)):
        if p.shape[0] == 1:
            values.append(structural_similarity(t[0], p[0], data_range=1.0, win_size=window))
        else:
            values.append(structural_similarity(t, p, data_range=1.0, channel_axis=0, win_size=window))
    return float(np.mean(values))


def consistency(pred: torch.Tensor, y: torch.Tensor, condition_levels: int) -> float:
    """MSE between the prediction (intensities) taken back to the condition and the condition ``y``."""
    condition = intensity(y, condition_levels)
    if pred.shape[-2:] != y.shape[-2:]:
        back = box_average(pred, pred.shape[-1] // y.shape[-1])
    elif pred.shape[1] == 3 and y.shape[1] == 1:
        back = gray_float(pred)
    else:
        back = pred.double()
    return float(((back - condition) ** 2).mean())


def diversity(samples: torch.Tensor) -> float:
    """Mean over subpixels and conditions of the std over the K samples; ``samples`` (K, N, C, H, W)."""
    if samples.shape[0] < 2:
        return 0.0
    return float(samples.double().std(0).mean())


def colourfulness(images: torch.Tensor) -> float:
    """Hasler & Süsstrunk's colourfulness of RGB intensities (N, 3, H, W), on the 0..255 scale, mean."""
    rgb = images.double() * 255.0
    rg = rgb[:, 0] - rgb[:, 1]
    yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    sigma = (rg.flatten(1).var(1, correction=0) + yb.flatten(1).var(1, correction=0)).sqrt()
    mu = (rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2).sqrt()
    return float((sigma + 0.3 * mu).mean())


def classifier_digits(net, images: torch.Tensor) -> torch.Tensor:
    """The classes a ``FeatureNet`` classifier reads in intensities (N, C, H, W) (given in its own level units)."""
    return net.embed((images * (net.levels - 1)).float())[1]


def classifier_accuracy(net, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of a ``FeatureNet`` classifier on intensities (N, C, H, W) (``classifier_digits``)."""
    return float((classifier_digits(net, images) == torch.as_tensor(labels)).double().mean())


def score(
    pred: torch.Tensor, truth: torch.Tensor, y: torch.Tensor, condition_levels: int, classifier=None, labels=None
):
    """The metrics of one set of predictions (intensities) against ``truth`` (intensities)."""
    out = {
        "psnr": psnr(pred, truth),
        "ssim": ssim(pred, truth),
        "consistency": consistency(pred, y, condition_levels),
    }
    if classifier is not None and labels is not None:
        out["accuracy"] = classifier_accuracy(classifier, pred, labels)
    if pred.shape[1] == 3:
        out["colourfulness"] = colourfulness(pred)
    return out


# ---- sampling and evaluation ---------------------------------------------------------------------------


def draw_samples(
    model,
    y: torch.Tensor,
    samples: int,
    seed: int = 0,
    batch_size: int = 256,
    temperature: float = 1.0,
    best_of: int = 1,
) -> torch.Tensor:
    """``samples`` draws of p(x | y) for every condition: LongTensor (samples, N, C, H, W), cached sampling,
    in eval mode; sample k of condition i comes from the generator seeded (seed, k, batch). ``temperature``
    T != 1: draws of the tempered conditionals (``AutoregressiveModel.sample``).

    ``best_of`` n > 1: each of the ``samples`` outputs is the likeliest of n candidates under the model's
    own exact log p(x | y) (candidate 0 is the plain sample above, candidate j the generator seeded (seed,
    k, batch, j)): a decoding that leans toward the mode, chosen without the truth or any other model.
    """
    if best_of < 1:
        raise ValueError(f"best_of must be >= 1, got {best_of}")
    tempering = {} if temperature == 1.0 else {"temperature": temperature}
    was = model.training
    model.eval()
    out = []
    for k in range(samples):
        parts = []
        for b, start in enumerate(range(0, len(y), batch_size)):
            part = y[start : start + batch_size].long().to(model.device)
            candidates = torch.stack([
                model.sample(len(part), part, **tempering, generator=torch.Generator(device=model.device).manual_seed(
                    seed * 1_000_003 + k * 10_007 + b + j * 100_000_007))
                for j in range(best_of)
            ])  # fmt: skip
            if best_of > 1:  # the first of equally likely candidates wins
                with torch.no_grad():
                    log_p = torch.stack([model.log_prob(c, part) for c in candidates])
                candidates = candidates[log_p.argmax(0), torch.arange(len(part), device=part.device)][None]
            parts.append(candidates[0].cpu())
        out.append(torch.cat(parts))
    model.train(was)
    return torch.stack(out)


def evaluation_subset(n_total: int, n_images: int | None, seed: int = 0) -> torch.Tensor:
    """A seeded random subset of ``n_images`` indices (all when None or larger), sorted: splits may be
    stored in class order, so never the first N."""
    if n_images is None or n_images >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n_images].sort().values


def evaluate_task(
    model,
    dataset,
    split: str = "test",
    n_images: int | None = 1000,
    samples: int = 4,
    seed: int = 0,
    regression=None,
    classifier=None,
    labels: torch.Tensor | None = None,
    nll: bool = True,
    drawn: torch.Tensor | None = None,
    temperatures: tuple[float, ...] = (),
    best_of: tuple[int, ...] = (),
) -> dict:
    """Everything the conditional benchmark reports, on ``dataset.split(split)``.

    model: an image-conditioned model (or None: baselines only). nll: its exact -log p(x | y) over the
    whole split (nats and bits/dim, ``genzoo.evaluate.evaluate_nll``). The other metrics use a seeded
    subset of ``n_images`` conditions (``evaluation_subset``) and ``samples`` draws of each (``drawn``:
    samples already drawn for that subset, (K, n, C, H, W)). ``regression``: the L2 CNN; ``classifier``
    and ``labels`` (class labels of the whole split): the downstream accuracy. ``temperatures``: more
    rows "model T=0.8", ... of samples drawn at those temperatures (the same seeds); ``best_of``: rows
    "model best of 8", ... where each output is the likeliest of n candidates (``draw_samples``, T = 1).
    Returns {"split", "n_images", "samples", "nll" (or absent), "methods": {name: metrics}} with the
    methods "truth" (its consistency is the floor of the rounding), the baselines and "model".
    """
    from genzoo.evaluate import evaluate_nll

    part = dataset.split(split)
    index = evaluation_subset(len(part), n_images, seed)
    x, y = part.images[index].long(), part.labels[index].long()
    truth = intensity(x, dataset.levels)
    sub_labels = None if labels is None else torch.as_tensor(labels)[index]
    condition_levels = dataset.condition_levels
    out = {"split": split, "n_images": len(index), "samples": samples, "methods": {}}
    out["methods"]["truth"] = score(truth, truth, y, condition_levels, classifier, sub_labels)
    for name, predict in deterministic_baselines(
        dataset.image_shape, dataset.condition_shape, condition_levels, regression
    ).items():
        pred = predict(y)
        metrics = score(pred, truth, y, condition_levels, classifier, sub_labels)
        rounded = intensity(baselines.to_levels(pred, dataset.levels), dataset.levels)  # as an image of the data
        metrics["rounded"] = score(rounded, truth, y, condition_levels, classifier, sub_labels)
        metrics["diversity"] = 0.0
        out["methods"][name] = metrics
    if model is None:
        return out
    if nll:
        out["nll"] = evaluate_nll(model, part)
    rows = [("model", 1.0, 1)] + [(f"model T={t:g}", t, 1) for t in temperatures if t != 1.0]
    rows += [(f"model best of {n}", 1.0, n) for n in best_of if n != 1]
    for name, temperature, n in rows:
        if drawn is None or name != "model":
            drawn = draw_samples(model, y, samples, seed, temperature=temperature, best_of=n)
        pictures = intensity(drawn, dataset.levels)
        per_sample = [score(p, truth, y, condition_levels, classifier, sub_labels) for p in pictures]
        metrics = {key: float(np.mean([s[key] for s in per_sample])) for key in per_sample[0]}
        metrics["diversity"] = diversity(pictures)
        out["methods"][name] = metrics
    return out


# ---- pictures ------------------------------------------------------------------------------------------


def comparison_figure(columns: list[tuple[str, torch.Tensor]], path, row_titles: list[str] | None = None, scale=0.9):
    """A PNG grid: one column per (title, intensities (N, C, H, W)), one row per image; titles on top.

    Returns the path. matplotlib with the Agg backend; gray images in gray, RGB as RGB, no smoothing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(columns[0][1])
    fig, axes = plt.subplots(rows, len(columns), figsize=(scale * len(columns), scale * rows + 0.35), squeeze=False)
    for j, (title, images) in enumerate(columns):
        for i in range(rows):
            ax = axes[i, j]
            picture = images[i].detach().cpu().double().clamp(0, 1).numpy()
            if picture.shape[0] == 1:
                ax.imshow(picture[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(picture.transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i], fontsize=7)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.01, top=1 - 0.3 / (scale * rows + 0.35), wspace=0.05, hspace=0.05
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def task_figure(
    model,
    y: torch.Tensor,
    path,
    samples: int = 4,
    truth: torch.Tensor | None = None,
    regression=None,
    seed: int = 0,
    drawn: torch.Tensor | None = None,
    row_titles: list[str] | None = None,
    temperature: float = 1.0,
    best_of: int = 1,
):
    """The comparison picture of the task: input | bicubic (super-resolution) | L2 CNN | ``samples`` samples | truth.

    model: an image-conditioned model; y: conditions (N, C', h, w); truth: the true images (integers) when
    known (``--index``), absent for a condition read from a file (``--from``). ``drawn``: samples already
    drawn, (K, N, C, H, W); ``temperature``: draw them at that temperature, ``best_of``: each the likeliest
    of n (``draw_samples``; titled so). Returns the path.
    """
    levels, condition_levels = model.levels, model.condition_levels
    y = y.long().cpu()
    task, _ = task_of(model.image_shape, model.condition_shape)
    columns = [("input", condition_picture(y, model.image_shape, condition_levels))]
    for name, predict in deterministic_baselines(model.image_shape, model.condition_shape, condition_levels).items():
        if name not in ("nearest", "gray"):  # shown already: the input column
            columns.append((name, predict(y)))
    if regression is not None:
        columns.append(("L2 CNN", regression.predict(y)))
    if drawn is None:
        drawn = draw_samples(model, y, samples, seed, temperature=temperature, best_of=best_of)
    title = "sample {}" if temperature == 1.0 else f"s{{}}, T={temperature:g}"  # as short: columns are narrow
    if best_of > 1:
        title = title.replace("sample {}", "s{}") + f", best/{best_of}"
    columns += [(title.format(k + 1), intensity(s, levels)) for k, s in enumerate(drawn[:samples])]
    if truth is not None:
        columns.append(("truth", intensity(truth, levels)))
    return comparison_figure(columns, path, row_titles)


def sample_figure(
    model,
    path,
    *,
    condition_png=None,
    dataset=None,
    indices=None,
    split: str = "test",
    samples: int = 4,
    seed: int = 0,
    regression=None,
    temperature: float = 1.0,
    best_of: int = 1,
):
    """``genzoo sample RUN --from low.png | --index I -o out.png`` in one call; returns the path.

    With ``condition_png``: that picture is the condition (``load_condition_png``), no truth column. Else
    the conditions (and the truth) of ``dataset.split(split)`` at ``indices`` (default: the first 8 of
    ``evaluation_subset``), as the picture ``train`` writes at the end of a run.
    """
    if condition_png is not None:
        y = load_condition_png(condition_png, model.condition_shape, model.condition_levels)
        return task_figure(
            model, y, path, samples, regression=regression, seed=seed, temperature=temperature, best_of=best_of
        )
    if dataset is None:
        raise ValueError("give condition_png or a dataset (with indices)")
    part = dataset.split(split)
    if indices is None:
        indices = evaluation_subset(len(part), 8, seed)
    indices = torch.as_tensor(indices).long().reshape(-1)
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= len(part)):
        raise ValueError(f"indices must be in [0, {len(part)}) for the {split} split")
    y, truth = part.labels[indices], part.images[indices].long()
    titles = [f"#{int(i)}" for i in indices]
    return task_figure(model, y, path, samples, truth=truth, regression=regression, seed=seed, row_titles=titles,
                       temperature=temperature, best_of=best_of)  # fmt: skip


def digit_classifier(dataset, data_dir=None):
    """(classifier, class labels of the test split) for the downstream score, or (None, None).

    For super-resolution of ``mnist`` and ``binarized-mnist``: the digit classifier of
    ``genzoo.metrics.feature_net`` (trained and cached on first use; binary MNIST's is trained on MNIST
    binarized at every draw) and the test labels (binarized MNIST's recovered from the aligned MNIST test
    set).
    """
    if getattr(dataset, "source", None) not in ("mnist", "binarized-mnist"):
        return None, None
    from genzoo.data import load_dataset
    from genzoo.metrics.feature_net import feature_network, recovered_labels

    source = load_dataset(dataset.source, data_dir)
    labels = dataset.classes.get("test")
    if labels is None:
        labels = recovered_labels(source, data_dir).get("test")
    return feature_network(source, data_dir), labels


def load_condition_png(path, condition_shape, condition_levels: int) -> torch.Tensor:
    """A condition image read from a PNG (or any file PIL reads): uint8 (1, C', h, w) in [0, condition_levels).

    Converted to gray for a one-channel condition (PIL's BT.601 luminance), to RGB for three. A picture of
    exactly (h, w) is taken as it is; one of (k h, k w) for an integer k is box-averaged down by k (e.g. an
    enlarged copy); anything else is a ValueError naming the expected size. The 0..255 values are mapped
    to the levels by rounding v * (condition_levels - 1) / 255.
    """
    from PIL import Image

    c, h, w = (int(s) for s in condition_shape)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L" if c == 1 else "RGB"), dtype=np.float64)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    height, width = pixels.shape[1:]
    k = height // h
    if k < 1 or height != k * h or width != k * w:
        raise ValueError(f"{path}: the condition must be {w}x{h} pixels (or an integer multiple), got {width}x{height}")
    if k > 1:
        pixels = pixels.reshape(c, h, k, w, k).mean((2, 4))
    levels = np.floor(pixels * (condition_levels - 1) / 255.0 + 0.5).clip(0, condition_levels - 1)
    return torch.from_numpy(levels.astype(np.uint8))[None]


def format_table(result: dict, keys=("psnr", "ssim", "consistency", "diversity", "accuracy", "colourfulness")) -> str:
    """A markdown table of ``evaluate_task``'s methods (baselines also rounded to the data's levels)."""
    present = [k for k in keys if any(k in m for m in result["methods"].values())]
    lines = ["| method | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for name, metrics in result["methods"].items():
        rows = [(name, metrics)] + ([(f"{name} (rounded)", metrics["rounded"])] if "rounded" in metrics else [])
        for label, m in rows:
            cells = [_cell(m.get(k)) for k in present]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and (value == 0 or abs(value) >= 0.01 or not math.isfinite(value)):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return f"{value:.2e}"
