"""Train -> evaluate -> sample, as one call: what ``genzoo train`` and the benchmarks run.

Only wiring: the dataset, the registry, the trainer, the evaluator and the image writer do the work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genzoo.atomic import write_text
from genzoo.checkpoint import BEST_FILE, MODEL_FILE, load, read_metadata, save_model
from genzoo.data.pairs import ConditionalImageDataset, load_task_dataset
from genzoo.distributed import seed_everything, select_device
from genzoo.errors import CheckpointError, UsageError
from genzoo.evaluate import evaluate_model, untrusted
from genzoo.images import save_grid
from genzoo.registry import create, entry, model_class
from genzoo.runlock import run_lock


def build_model(model_name: str, dataset, options: dict[str, Any], conditional: bool = False):
    """The registered model sized for ``dataset``; ``conditional`` (or a model that always uses labels)
    passes the dataset's class count."""
    cls, preset = model_class(model_name), entry(model_name)
    options = dict(options)
    if isinstance(dataset, ConditionalImageDataset):  # super-resolution / colorization: condition on an image
        options = {**dataset.model_options(), **options}
    if conditional and cls.label_use == "never":
        raise UsageError(f"{model_name} has no class-conditional form (--conditional applies to models with labels)")
    if conditional or preset.conditional or cls.label_use == "always":
        if not dataset.num_classes:
            raise UsageError(f"dataset {dataset.name} has no labels: it cannot train a class-conditional model")
        options["num_classes"] = dataset.num_classes
    return create(model_name, image_shape=dataset.image_shape, levels=dataset.levels, **options)


def check_run_dir(run_dir: Path, model) -> None:
    """Refuse to resume a run directory that holds a different model: nothing there is touched."""
    for file in (run_dir / "checkpoint.safetensors", run_dir / MODEL_FILE, run_dir / BEST_FILE):
        if not file.exists():
            continue
        try:
            meta = read_metadata(file)
        except CheckpointError as err:
            raise CheckpointError(f"cannot resume: {err}") from None
        saved = meta.get("model") if isinstance(meta, dict) else None
        if isinstance(saved, dict) and saved != model.config:
            raise CheckpointError(
                f"{run_dir} holds a different run ({saved.get('name')} for images "
                f"{saved.get('image_shape')} with {saved.get('levels')} levels); "
                f"choose another --run-dir"
            )


def run_data_root(model, data_dir=None):
    """The data root to read a run's dataset from: ``data_dir`` when given, else the one it was trained with."""
    return data_dir if data_dir is not None else ((model.checkpoint_info or {}).get("data") or {}).get("data_dir")


def model_run_data(
    run_dir: str | os.PathLike, data_dir: str | None = None, weights: str = "auto", data_name: str | None = None
):
    """Load the model of a run (EMA weights if any) and the dataset it was trained on (or ``data_name``:
    another dataset of the same image format, e.g. the static binarized MNIST test split for a model
    trained on dynamically binarized MNIST, as the papers evaluate).

    ``weights``: "auto" (the best-validation weights when the run kept them, else the last), "best" or
    "last" (see ``genzoo.checkpoint.load``); ``model.checkpoint_info["weights"]`` labels the choice."""
    model = load(run_dir, weights=weights)
    data = (model.checkpoint_info or {}).get("data") or {}
    if "name" not in data and data_name is None:
        raise CheckpointError(f"{run_dir} does not record its dataset; cannot evaluate it (give --data)")
    dataset = load_task_dataset(data_name or data["name"], run_data_root(model, data_dir))
    if tuple(dataset.image_shape) != model.image_shape or dataset.levels != model.levels:
        raise (UsageError if data_name else CheckpointError)(
            f"the model in {run_dir} expects images {model.image_shape} with {model.levels} "
            f"levels but {dataset.name} has {dataset.image_shape} with {dataset.levels}"
        )
    return model, dataset


def sample_images(
    model, n: int, seed: int = 0, labels=None, naive: bool = False, batch_size: int = 256, temperature: float = 1.0
) -> torch.Tensor:
    """``n`` samples drawn in batches with a seeded generator on the model's device (``temperature``:
    for models that declare ``can_temper``)."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    chunks = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        y = None
        if model.conditional:
            y = (
                torch.arange(start, start + count) % model.num_classes
                if labels is None
                else torch.as_tensor(labels).expand(count)
            )
        kwargs = {"naive": naive} if naive else {}
        if temperature != 1.0:
            kwargs["temperature"] = temperature
        chunks.append(model.sample(count, y, generator=generator, **kwargs).cpu())
    return torch.cat(chunks)


def evaluate_run(
    run_dir,
    data_dir=None,
    split: str = "test",
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = False,
    num_samples: int = 5000,
    sample_count: int | None = None,
    weights: str = "auto",
    max_images: int | None = None,
    data_name: str | None = None,
    temperatures: tuple[float, ...] = (),
    best_of: tuple[int, ...] = (),
) -> dict:
    """Test NLL of a run over the full split (nats and bits/dim), EMA weights when present: exact for
    explicit-density models, ELBO and ``num_samples``-sample importance estimate for latent models.

    ``weights`` picks the run's weights ("auto": the best-validation ones when kept, else the last; see
    ``model_run_data``); the result's "weights" says which were scored, e.g. "best (step 12000, valid
    nll_nats 95.3124)". With ``sample_count`` (default: 0, or the split's size for models without a
    likelihood), also the sample-quality metrics of that many samples under "sample_metrics".
    ``max_images``: score only the first N images; the result says "partial" (and of how many).
    Super-resolution/colorization runs: also the task metrics under "task" (``temperatures``: more rows of
    samples drawn at those temperatures; ``best_of``: rows of the likeliest of n samples)."""
    with run_lock(run_dir, shared=True):
        model, dataset = model_run_data(run_dir, data_dir, weights, data_name)
    if (temperatures or best_of) and not isinstance(dataset, ConditionalImageDataset):
        raise UsageError("--temperature and --best-of apply to super-resolution and colorization runs")
    root = run_data_root(model, data_dir)
    model.to(select_device(device))
    model.prepare_for_evaluation(progress=progress)
    scored = first_images(dataset.split(split), max_images)
    result = evaluate_model(
        model,
        scored,
        batch_size=batch_size,
        progress=progress,
        num_samples=num_samples,
        class_prior=train_class_prior(dataset),
    )
    result.update(partial_note(dataset.split(split), scored))
    if isinstance(dataset, ConditionalImageDataset) and split == "test":
        result["task"] = score_task(model, dataset, task_baseline(run_dir), root, n_images=max_images or 1000,
                                    temperatures=temperatures, best_of=best_of)  # fmt: skip
    flagged = untrusted(result, model)
    if flagged:
        result["flagged"] = flagged
    if sample_count is None:
        sample_count = len(dataset.split(split)) if result["kind"] == "samples-only" else 0
    if sample_count:
        result["sample_metrics"] = evaluate_samples(model, dataset, sample_count, data_dir=root, split=split)
    return {"split": split, "dataset": dataset.name, "weights": model.checkpoint_info["weights"], **result}


def first_images(split, max_images: int | None):
    """The first ``max_images`` images of ``split`` (all when None): a partial evaluation, labelled so."""
    if max_images is None or max_images >= len(split):
        return split
    labels = None if split.labels is None else split.labels[:max_images]
    return dataclasses.replace(split, images=split.images[:max_images], labels=labels)


def partial_note(split, scored) -> dict:
    return {"partial": True, "of": len(split)} if len(scored) < len(split) else {}


def device_description(device: torch.device) -> str:
    """The device in words, e.g. "CPU: AMD EPYC 9B14, 1 threads" or "CUDA: NVIDIA H200"."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    name = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {name}, {torch.get_num_threads()} threads"


REGRESSION_FILE = "regression.safetensors"  # a conditional run's L2 CNN baseline


def fit_task_baseline(dataset, run_dir: Path, config):
    """The "regression to the mean" baseline of a conditional task: an L2 CNN (the conditioning network with
    a 1x1 head, ``genzoo.tasks.baselines.RegressionCNN``) trained in the run directory with the model's own
    budget (its --time, --steps or --epochs), resumed from RUN_DIR/regression.safetensors when present."""
    from genzoo.tasks import baselines

    regression = baselines.RegressionCNN(dataset.image_shape, dataset.levels, dataset.condition_shape,
                                         dataset.condition_levels)  # fmt: skip
    steps = config.max_steps
    if config.max_epochs is not None:
        by_epochs = math.ceil(config.max_epochs * len(dataset.train) / 64)
        steps = by_epochs if steps is None else min(steps, by_epochs)
    baselines.fit_regression(regression, dataset, run_dir / REGRESSION_FILE, max_time=config.max_time,
                             max_steps=steps, batch_size=64, seed=config.seed)  # fmt: skip
    return regression


def task_baseline(run_dir) -> object | None:
    """The L2 CNN a conditional run trained beside its model, or None."""
    from genzoo.tasks import baselines

    path = Path(run_dir) / REGRESSION_FILE
    return baselines.load_regression(path) if path.is_file() else None


def score_task(
    model, dataset, regression, data_dir=None, seed: int = 0, n_images: int = 1000, temperatures=(), best_of=()
) -> dict:
    """PSNR, SSIM, consistency, diversity (and the digit classifier's accuracy on MNIST) of the model's
    samples beside nearest, bicubic (or gray) and the L2 CNN (``genzoo.tasks.conditional.evaluate_task``)."""
    from genzoo.tasks.conditional import digit_classifier, evaluate_task

    classifier, labels = digit_classifier(dataset, data_dir)
    return evaluate_task(model, dataset, "test", min(n_images, len(dataset.test)), 4, seed, regression, classifier,
                         labels, nll=False, temperatures=tuple(temperatures), best_of=tuple(best_of))  # fmt: skip


def train_class_prior(dataset) -> torch.Tensor | None:
    """log p(y) from the train split's label counts (Laplace-smoothed), or None without labels."""
    from genzoo.classify import log_prior_from_labels

    if dataset.train.labels is None or not dataset.num_classes:
        return None
    return log_prior_from_labels(dataset.train.labels, dataset.num_classes, alpha=1.0)


def evaluate_samples(model, dataset, n: int, seed: int = 0, data_dir=None, split: str = "test") -> dict:
    """Sample-quality metrics (``genzoo.metrics.sample_metrics``) of ``n`` samples of any model; a
    class-conditional model draws the classes 0, 1, 2, ... in turn and is scored on recovering them."""
    from genzoo.metrics import sample_metrics

    labels = torch.arange(n) % model.num_classes if model.conditional else None
    samples = sample_images(model, n, seed=seed)  # the same class sequence as ``labels``
    return sample_metrics(samples, dataset, labels, data_dir=data_dir, seed=seed, floor_split=split)


def train_and_evaluate(
    model_name: str,
    data_name: str,
    run_dir,
    config,
    *,
    data_dir=None,
    model_options: dict | None = None,
    conditional: bool = False,
    num_samples: int = 64,
    resume: bool = True,
    eval_k: int = 5000,
    fit: str | None = None,
    em_iterations: int | None = None,
    overrides=(),
    record: dict | None = None,
    test_max_images: int | None = None,
    report: bool = True,
    test_data: str | None = None,
) -> dict:
    """Train (resuming if possible), then score the full test split and write a sample grid.

    Scored and sampled are the best-validation weights when the run kept them (``config.keep_best``;
    with it off, the last ones), else the last ones; "weights" (in the results and in "test") says which,
    with step and score.

    ``fit`` = "closed-form" (naive Bayes: counting) or "em" (mixtures, HMM) fits without the trainer
    (``model.fit_data``); None: the model's ``default_fit``, gradient training if it has none.
    Writes into ``run_dir``: checkpoints, ``log.jsonl``, TensorBoard events, ``samples.png`` and
    ``results.json`` (with ``record``: e.g. the command and recipe). The run directory is locked for the
    whole call (``genzoo.runlock``). ``overrides``: training options a resumed run may change (see
    ``genzoo.train.train``). A test NLL that cannot be trusted (worse than the uniform model, a
    non-finite log Z) is recorded with the reason under "flagged" (``genzoo.evaluate.untrusted``).
    ``test_max_images``: score only the first N test images (the result says "partial"). ``report``:
    also write ``report.html`` (``genzoo.report``). ``test_data``: score the test split of that dataset
    instead (the same image format; e.g. a model trained on dynamic-mnist on the static binarized test).
    Returns the results dict (status 'interrupted', with "signal", if training was stopped).
    """

    select_device(config.device)  # an unavailable device is refused before any work
    dataset = load_task_dataset(data_name, data_dir)
    seed_everything(config.seed)  # the seed fixes the initial weights too
    model = build_model(model_name, dataset, model_options or {}, conditional)
    fit = fit or model.default_fit
    run_dir = Path(run_dir)
    if resume:
        check_run_dir(run_dir, model)
    test_set = dataset.test
    if test_data is not None:
        other = load_task_dataset(test_data, data_dir)
        if tuple(other.image_shape) != tuple(dataset.image_shape) or other.levels != dataset.levels:
            raise UsageError(f"--test-data {test_data} has images {other.image_shape} with {other.levels} levels, "
                             f"not {dataset.image_shape} with {dataset.levels} like {dataset.name}")  # fmt: skip
        test_set = other.test
        record = {**(record or {}), "test_data": other.name}  # results.json says which test split was scored
    with run_lock(run_dir, enabled=int(os.environ.get("RANK", "0")) == 0):  # checked first: a refusal writes nothing
        return _train_and_score(model, dataset, run_dir, config, data_dir, num_samples, resume, eval_k, fit,
                                em_iterations, overrides, record, test_max_images, report, test_set)  # fmt: skip


def _train_and_score(model, dataset, run_dir, config, data_dir, num_samples, resume, eval_k, fit, em_iterations,
                     overrides, record, test_max_images, report, test_set) -> dict:  # fmt: skip
    from genzoo.train import train

    data_info = {"name": dataset.name, "data_dir": None if data_dir is None else str(data_dir)}
    if fit is not None:  # closed-form / EM fitting instead of gradient steps
        start = time.perf_counter()
        x, y = dataset.train.full_batch(torch.Generator().manual_seed(config.seed))
        result = model.fit_data(x.to(model.device), None if y is None else y.to(model.device), fit,
                                torch.Generator().manual_seed(config.seed), em_iterations)  # fmt: skip
        result.update(status="finished", elapsed=time.perf_counter() - start)
        save_model(run_dir / MODEL_FILE, model, extra={"data": data_info, "fit": result})
        (run_dir / BEST_FILE).unlink(missing_ok=True)  # weights of an earlier gradient run are not this fit
    else:
        result = train(model, dataset, run_dir, config, resume=resume, data_info=data_info, overrides=overrides)
    if result.get("status") != "finished" or int(os.environ.get("RANK", "0")) != 0:
        return result
    start = time.perf_counter()
    weights = "auto" if config.keep_best else "last"
    trained = load(run_dir, weights=weights).to(select_device(config.device))
    trained.prepare_for_evaluation(progress=config.progress)
    scored = first_images(test_set, test_max_images)
    test = evaluate_model(
        trained,
        scored,
        batch_size=config.eval_batch_size,
        progress=config.progress,
        num_samples=eval_k,
        class_prior=train_class_prior(dataset),
    )
    test.update(partial_note(test_set, scored), weights=trained.checkpoint_info["weights"])
    if test["kind"] == "samples-only":  # no likelihood: judge the samples
        test["sample_metrics"] = evaluate_samples(trained, dataset, len(dataset.test), config.seed, data_dir)
    flagged = untrusted(test, trained)
    results = {
        "model": model.config["name"],
        "data": dataset.name,
        **(record or {}),
        "params": sum(p.numel() for p in model.parameters()),
        "device": device_description(trained.device),
        "torch_version": torch.__version__,
        **result,
        "weights": test["weights"],
        "test": test,
        **({"flagged": flagged} if flagged else {}),
        "eval_seconds": time.perf_counter() - start,
    }
    if isinstance(dataset, ConditionalImageDataset):  # the task's metrics, beside the baselines
        regression = fit_task_baseline(dataset, run_dir, config)
        results["task"] = score_task(trained, dataset, regression, data_dir, config.seed, test_max_images or 1000)
        if num_samples:
            from genzoo.tasks.conditional import sample_figure

            path = sample_figure(trained, run_dir / "samples.png", dataset=dataset, regression=regression)
            results["samples"] = str(path)
    elif num_samples:
        samples = sample_images(trained, num_samples, seed=config.seed)
        results["samples"] = str(save_grid(samples, dataset.levels, run_dir / "samples.png"))
    write_text(run_dir / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    if report:
        from genzoo.report import write_report

        results["report"] = str(write_report(run_dir, device=str(trained.device)))
    return results


def keep_mask(image_shape, keep: str | None = None, mask_file=None) -> torch.Tensor:
    """Boolean (C, H, W) mask of the subpixels to keep: 'top-half', 'left-half', or a PNG (nonzero = keep)."""
    c, h, w = image_shape
    mask = torch.zeros(image_shape, dtype=torch.bool)
    if mask_file is not None:
        from PIL import Image, UnidentifiedImageError

        try:
            picture = torch.as_tensor(np.array(Image.open(mask_file).convert("L")))
        except (OSError, UnidentifiedImageError) as err:
            raise UsageError(f"cannot read mask file {mask_file}: {err}") from None
        if tuple(picture.shape) != (h, w):
            raise UsageError(f"mask file {mask_file} is {tuple(picture.shape)}, expected {(h, w)}")
        mask[:] = picture > 0
    elif keep == "top-half":
        mask[:, : h // 2] = True
    elif keep == "left-half":
        mask[:, :, : w // 2] = True
    else:
        raise UsageError(f"--keep must be top-half or left-half (or give --mask), got {keep!r}")
    return mask


def complete_images(
    model, images: torch.Tensor, known: torch.Tensor, per_image: int, seed: int = 0, labels=None
) -> torch.Tensor:
    """``per_image`` completions of each image: the known subpixels kept, the rest sampled in order.

    Returns (len(images), per_image, C, H, W). Conditioning is exact for subpixels that come before
    every unknown one in the model's ordering (e.g. a kept top half) and ancestral beyond that.
    """
    generator = torch.Generator(device=model.device).manual_seed(seed)
    x = images.repeat_interleave(per_image, 0).to(model.device)
    mask = known.expand_as(images).repeat_interleave(per_image, 0).to(model.device)
    y = None if labels is None else torch.as_tensor(labels).repeat_interleave(per_image, 0)
    out = model.sample(x.shape[0], y, generator=generator, x=x, known=mask)
    return out.cpu().reshape(len(images), per_image, *images.shape[1:])
