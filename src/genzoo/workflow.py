"""Train -> evaluate -> sample, as one call: what ``genzoo train`` and the benchmarks run.

Only wiring: the dataset, the registry, the trainer, the evaluator and the image writer do the work.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genzoo.checkpoint import BEST_FILE, MODEL_FILE, CheckpointError, load, read_metadata, save_model
from genzoo.data import load_dataset
from genzoo.evaluate import evaluate_model
from genzoo.images import save_grid
from genzoo.registry import create, model_class


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(model_name: str, dataset, options: dict[str, Any], conditional: bool = False):
    """The registered model sized for ``dataset``; ``conditional`` passes the dataset's class count."""
    model_class(model_name)  # unknown names fail here, before anything else
    options = dict(options)
    if conditional or getattr(model_class(model_name), "always_conditional", False):
        if not dataset.num_classes:
            raise ValueError(f"dataset {dataset.name} has no labels: it cannot train a class-conditional model")
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
            raise ValueError(f"cannot resume: {err}") from None
        saved = meta.get("model") or meta.get("model_config")
        if saved is not None and saved != model.config:
            raise ValueError(
                f"{run_dir} holds a different run ({saved.get('name')} for images "
                f"{saved.get('image_shape')} with {saved.get('levels')} levels); "
                f"choose another --run-dir"
            )


def model_run_data(run_dir: str | os.PathLike, data_dir: str | None = None, weights: str = "auto"):
    """Load the model of a run (EMA weights if any) and the dataset it was trained on.

    ``weights``: "auto" (the best-validation weights when the run kept them, else the last), "best" or
    "last" (see ``genzoo.checkpoint.load``); ``model.checkpoint_info["weights"]`` labels the choice."""
    model = load(run_dir, weights=weights)
    data = (model.checkpoint_info or {}).get("data") or {}
    if "name" not in data:
        raise ValueError(f"{run_dir} does not record its dataset; cannot evaluate it")
    dataset = load_dataset(data["name"], data_dir if data_dir is not None else data.get("data_dir"))
    if tuple(dataset.image_shape) != model.image_shape or dataset.levels != model.levels:
        raise ValueError(
            f"the model in {run_dir} expects images {model.image_shape} with {model.levels} "
            f"levels but {dataset.name} has {dataset.image_shape} with {dataset.levels}"
        )
    return model, dataset


def sample_images(
    model, n: int, seed: int = 0, labels=None, naive: bool = False, batch_size: int = 256
) -> torch.Tensor:
    """``n`` samples drawn in batches with a seeded generator on the model's device."""
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
        chunks.append(model.sample(count, y, generator=generator, **kwargs).cpu())
    return torch.cat(chunks)


def training_images(dataset, seed: int = 0) -> torch.Tensor:
    """The whole train split as integer images (one fixed draw for dynamically binarized data)."""
    return dataset.train.batch(torch.arange(len(dataset.train)), torch.Generator().manual_seed(seed))


def prepare_for_evaluation(model, **partition_options) -> None:
    """Energy models need log Z before log_prob: enumerated when small, else AIS (see the model)."""
    if hasattr(model, "compute_partition") and not model.has_partition:
        model.compute_partition(**partition_options)


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
) -> dict:
    """Test NLL of a run over the full split (nats and bits/dim), EMA weights when present: exact for
    explicit-density models, ELBO and ``num_samples``-sample importance estimate for latent models.

    ``weights`` picks the run's weights ("auto": the best-validation ones when kept, else the last; see
    ``model_run_data``); the result's "weights" says which were scored, e.g. "best (step 12000, valid
    nll_nats 95.3124)". With ``sample_count`` (default: 0, or the split's size for models without a
    likelihood), also the sample-quality metrics of that many samples under "sample_metrics"."""
    model, dataset = model_run_data(run_dir, data_dir, weights)
    model.to(pick_device(device))
    prepare_for_evaluation(model)
    result = evaluate_model(
        model, dataset.split(split), batch_size=batch_size, progress=progress, num_samples=num_samples
    )
    if sample_count is None:
        sample_count = len(dataset.split(split)) if result["kind"] == "samples-only" else 0
    if sample_count:
        root = data_dir if data_dir is not None else (model.checkpoint_info.get("data") or {}).get("data_dir")
        result["sample_metrics"] = evaluate_samples(model, dataset, sample_count, data_dir=root, split=split)
    return {"split": split, "dataset": dataset.name, "weights": model.checkpoint_info["weights"], **result}


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
) -> dict:
    """Train (resuming if possible), then score the full test split and write a sample grid.

    Scored and sampled are the best-validation weights when the run kept them (``config.keep_best``;
    with it off, the last ones), else the last ones; "weights" (in the results and in "test") says which,
    with step and score.

    ``fit`` = "closed-form" (naive Bayes: counting) or "em" (mixtures) fits without the trainer.
    Writes into ``run_dir``: checkpoints, ``log.jsonl``, TensorBoard events, ``samples.png`` and
    ``results.json``. Returns the results dict (status 'interrupted' if training was stopped).
    """
    from genzoo.train import train

    dataset = load_dataset(data_name, data_dir)
    model = build_model(model_name, dataset, model_options or {}, conditional)
    run_dir = Path(run_dir)
    if resume:
        check_run_dir(run_dir, model)
    data_info = {"name": dataset.name, "data_dir": None if data_dir is None else str(data_dir)}
    if fit is not None:  # closed-form / EM fitting instead of gradient steps
        start = time.perf_counter()
        result = fit_model(model, dataset, fit, config.seed, em_iterations)
        result["elapsed"] = time.perf_counter() - start
        save_model(run_dir / MODEL_FILE, model, extra={"data": data_info, "fit": result})
        (run_dir / BEST_FILE).unlink(missing_ok=True)  # weights of an earlier gradient run are not this fit
    else:
        if hasattr(model, "init_from_data"):  # e.g. an RBM's visible biases from the data marginals
            x, _ = training_images(dataset, config.seed)
            model.init_from_data(x)
        result = train(model, dataset, run_dir, config, resume=resume, data_info=data_info)
    if result.get("status") != "finished" or int(os.environ.get("RANK", "0")) != 0:
        return result
    start = time.perf_counter()
    weights = "auto" if getattr(config, "keep_best", True) else "last"
    trained = load(run_dir, weights=weights).to(pick_device(config.device))
    prepare_for_evaluation(trained)
    test = evaluate_model(
        trained, dataset.test, batch_size=config.eval_batch_size, progress=config.progress, num_samples=eval_k
    )
    test["weights"] = trained.checkpoint_info["weights"]
    if test["kind"] == "samples-only":  # no likelihood: judge the samples
        test["sample_metrics"] = evaluate_samples(trained, dataset, len(dataset.test), config.seed, data_dir)
    results = {
        "model": model_name,
        "data": dataset.name,
        "params": sum(p.numel() for p in model.parameters()),
        **result,
        "weights": test["weights"],
        "test": test,
        "eval_seconds": time.perf_counter() - start,
    }
    if num_samples:
        samples = sample_images(trained, num_samples, seed=config.seed)
        results["samples"] = str(save_grid(samples, dataset.levels, run_dir / "samples.png"))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def fit_model(model, dataset, method: str, seed: int = 0, iterations: int | None = None) -> dict:
    """Fit without gradient steps: 'closed-form' (``model.fit(images, labels)``) or 'em' (``model.fit_em``,
    at most ``iterations`` EM iterations; default: the model's)."""
    x, y = training_images(dataset, seed)
    x = x.to(model.device)
    if method == "closed-form" and hasattr(model, "fit"):
        if model.conditional and y is None:
            raise ValueError(f"{dataset.name} has no labels: {model.config['name']} needs them")
        model.fit(x, None if y is None else y.to(model.device))
        return {"status": "finished", "method": method}
    if method == "em" and hasattr(model, "fit_em"):
        limit = {} if iterations is None else {"iterations": iterations}
        history = model.fit_em(x, generator=torch.Generator().manual_seed(seed), **limit)
        return {
            "status": "finished",
            "method": method,
            "iterations": len(history["log_likelihood"]),
            "train_log_likelihood": history["log_likelihood"][-1],
        }
    raise ValueError(f"{model.config['name']} cannot be fitted by {method!r}")


def keep_mask(image_shape, keep: str | None = None, mask_file=None) -> torch.Tensor:
    """Boolean (C, H, W) mask of the subpixels to keep: 'top-half', 'left-half', or a PNG (nonzero = keep)."""
    c, h, w = image_shape
    mask = torch.zeros(image_shape, dtype=torch.bool)
    if mask_file is not None:
        from PIL import Image, UnidentifiedImageError

        try:
            picture = torch.as_tensor(np.array(Image.open(mask_file).convert("L")))
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"cannot read mask file {mask_file}: {err}") from None
        if tuple(picture.shape) != (h, w):
            raise ValueError(f"mask file {mask_file} is {tuple(picture.shape)}, expected {(h, w)}")
        mask[:] = picture > 0
    elif keep == "top-half":
        mask[:, : h // 2] = True
    elif keep == "left-half":
        mask[:, :, : w // 2] = True
    else:
        raise ValueError(f"--keep must be top-half or left-half (or give --mask), got {keep!r}")
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
