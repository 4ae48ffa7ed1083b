"""The one evaluator: negative log-likelihood over a whole split, in nats/example and bits/dim.

Used by the trainer (validation), the CLI (``genzoo eval``), the benchmarks and the tests. Every
image of the split is scored: the last, smaller batch is never dropped.
"""

from __future__ import annotations

import math

import torch

from genzoo.data.base import ImageSplit


def map_batches(
    model, split: ImageSplit, fn, batch_size: int = 256, seed: int = 0, progress: bool = False, desc: str = "eval"
) -> dict[str, torch.Tensor]:
    """Run ``fn(x, y) -> {name: per-image tensor}`` over the whole split in batches (the last, smaller one
    included), in eval mode without gradients; returns each name's values for every image, float64 on CPU
    in split order. Dynamically binarized splits draw from a generator seeded with ``seed``."""
    from tqdm.auto import tqdm

    was_training, device = model.training, model.device
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {}
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(split), batch_size), desc=desc, disable=not progress, leave=False):
                x, y = split.batch(torch.arange(start, min(start + batch_size, len(split))), generator)
                values = fn(x.to(device), None if y is None else y.to(device))
                for name, value in values.items():
                    out.setdefault(name, []).append(value.double().cpu().expand(x.shape[0]))
    finally:
        model.train(was_training)
    return {name: torch.cat(parts) for name, parts in out.items()}


def log_likelihoods(model, split: ImageSplit, batch_size: int = 256, seed: int = 0, progress: bool = False):
    """log p(x) in nats of every image in ``split`` (float64 on CPU, in split order)."""
    values = map_batches(model, split, lambda x, y: {"log_p": model.log_prob(x, y)}, batch_size, seed, progress)
    return values.get("log_p", torch.zeros(0, dtype=torch.float64))


def summarize(log_p: torch.Tensor, num_dims: int) -> dict:
    """NLL mean and standard error in nats/example and bits/dim."""
    n = log_p.numel()
    nll = float(-log_p.mean()) if n else float("nan")
    stderr = float(log_p.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    scale = 1.0 / (num_dims * math.log(2))
    return {
        "n": n,
        "nll_nats": nll,
        "nll_nats_stderr": stderr,
        "bits_per_dim": nll * scale,
        "bits_per_dim_stderr": stderr * scale,
    }


def evaluate_nll(model, split: ImageSplit, batch_size: int = 256, progress: bool = False, seed: int = 0) -> dict:
    """NLL of a model with an exact (or partition-normalized) ``log_prob`` over the full split."""
    return summarize(log_likelihoods(model, split, batch_size, seed, progress), model.num_dims)


# Latent-variable models (VAE, IWAE, DBN): a bound and an importance-sampling estimate, never an exact NLL.


def latent_bounds(
    model, split: ImageSplit, num_samples: int = 5000, batch_size: int = 100, seed: int = 0, progress: bool = False
) -> dict[str, torch.Tensor]:
    """Per-image ELBO and ``num_samples``-sample estimate of log p(x), nats (float64 on CPU, split order).

    Also the ELBO's two terms ("reconstruction", "kl") where the model's ``elbo_terms`` gives them. The
    model's random numbers come from torch's generator seeded with ``seed`` (the caller's random state
    is restored).
    """

    def bounds(x, y):
        terms = model.elbo_terms(x, y)
        if terms is None:
            values = {"elbo": model.elbo(x, y)}
        else:
            values = {"reconstruction": terms[0], "kl": terms[1], "elbo": terms[0] - terms[1]}
        values["estimate"] = model.log_prob_estimate(x, y, num_samples=num_samples)
        return values

    cuda = list(range(torch.cuda.device_count())) if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return map_batches(model, split, bounds, batch_size, seed, progress)


def evaluate_bound(
    model, split: ImageSplit, num_samples: int = 5000, batch_size: int = 100, seed: int = 0, progress: bool = False
) -> dict:
    """Bound and estimate of the test NLL of a latent-variable model over the full split.

    Returns n, k (= num_samples) and, each with a standard error over the images:
    elbo_nats — the mean negative ELBO, an upper bound on the NLL (nats/example);
    nll_estimate_nats — the mean negative k-sample importance-sampling estimate (Burda et al. 2016), an
    upper bound in expectation that tightens as k grows; both also in bits/dim (``*_bits_per_dim``);
    and, where the model splits its bound, reconstruction_nats (mean -E_q log p(x|z)) and kl_nats.
    """
    values = latent_bounds(model, split, num_samples, batch_size, seed, progress)
    empty = torch.zeros(0, dtype=torch.float64)
    result = {"n": len(split), "k": int(num_samples)}
    for name, key in (("elbo", "elbo"), ("nll_estimate", "estimate")):
        s = summarize(values.get(key, empty), model.num_dims)
        result.update(
            {
                f"{name}_nats": s["nll_nats"],
                f"{name}_nats_stderr": s["nll_nats_stderr"],
                f"{name}_bits_per_dim": s["bits_per_dim"],
                f"{name}_bits_per_dim_stderr": s["bits_per_dim_stderr"],
            }
        )
    if "kl" in values:
        result["reconstruction_nats"] = float(-values["reconstruction"].mean())
        result["kl_nats"] = float(values["kl"].mean())
    return result


def evaluate_reconstruction(
    model, split: ImageSplit, batch_size: int = 256, seed: int = 0, progress: bool = False
) -> dict:
    """Mean reconstruction NLL -log p(x | z = e(x)) over the full split, nats/example and bits/dim, for
    auto-encoders (``likelihood == "reconstruction"``): NOT an NLL of the data."""
    fn = lambda x, y: {"log_p": model.reconstruction_log_prob(x)}
    log_p = map_batches(model, split, fn, batch_size, seed, progress).get("log_p", torch.zeros(0, dtype=torch.float64))
    s = summarize(log_p, model.num_dims)
    return {
        "n": s["n"],
        "reconstruction_nats": s["nll_nats"],
        "reconstruction_nats_stderr": s["nll_nats_stderr"],
        "reconstruction_bits_per_dim": s["bits_per_dim"],
    }


def evaluate_model(model, split: ImageSplit, **kwargs) -> dict:
    """The final score of any model over the full split, by what it declares (``model.likelihood``).

    The result's "kind": "exact" (``evaluate_nll``), "estimate" (an energy model's NLL with an AIS log Z:
    an estimate with that uncertainty, under "partition"), "bound" (``evaluate_bound``; a DBN's rests on
    its top RBM's log Z, under "partition"), "reconstruction" (``evaluate_reconstruction``: no
    likelihood) or "samples-only" (GANs: judge them by ``genzoo.metrics.sample_metrics``).
    ``num_samples`` (k) only matters for bounds. A class-conditional model's NLL is -log p(x | y)
    ("conditional": true); one that always uses labels (naive Bayes) also reports its Bayes-rule
    "accuracy" (with ``class_prior``, log p(y), when given).
    """
    kind = model.likelihood
    num_samples = kwargs.pop("num_samples", 5000)
    class_prior = kwargs.pop("class_prior", None)
    note = model.partition_details()
    extra = {"partition": note} if note else {}
    if kind == "none":
        return {"kind": "samples-only"}
    if kind == "reconstruction":
        return {"kind": "reconstruction", **evaluate_reconstruction(model, split, **kwargs)}
    if kind == "bound":
        return {"kind": "bound", **extra, **evaluate_bound(model, split, num_samples=num_samples, **kwargs)}
    if kind == "partition":  # exact only if log Z was enumerated; otherwise an AIS estimate with its error
        kind = "exact" if note and note["method"] == "exact" else "estimate"
    result = {"kind": kind, **extra, **evaluate_nll(model, split, **kwargs)}
    if model.conditional:  # the NLL is of x given its label, -log p(x | y), not -log p(x)
        result["conditional"] = True
        if model.label_use == "always" and split.labels is not None:  # a classifier by nature (naive Bayes)
            result["accuracy"] = classification_accuracy(model, split, class_prior)
    return result


def classification_accuracy(model, split: ImageSplit, class_prior: torch.Tensor | None = None) -> float:
    """Accuracy of the Bayes-rule classifier p(y | x) ∝ p(x | y) p(y) of a class-conditional explicit model
    on ``split`` (``class_prior``: log p(y), e.g. from the train labels; None: uniform)."""
    from genzoo.classify import GenerativeClassifier

    x, y = split.full_batch(torch.Generator().manual_seed(0))
    return GenerativeClassifier(model, log_prior=class_prior).accuracy(x, y)


def validation_metrics(model, split: ImageSplit, batch_size: int = 256, seed: int = 0) -> dict:
    """What the trainer validates on: the exact NLL (nats and bits/dim) of models with one; otherwise the
    mean ``loss`` (nats/example; a bound, a surrogate or a discriminator's loss: see ``likelihood``)."""
    if model.likelihood == "exact":
        return evaluate_nll(model, split, batch_size, seed=seed)
    values = map_batches(model, split, lambda x, y: {"loss": model.loss(x, y).reshape(1)}, batch_size, seed)
    loss = values.get("loss", torch.zeros(0, dtype=torch.float64))
    return {"n": len(split), "loss": float(loss.mean()) if len(split) else float("nan")}


def untrusted(result: dict, model) -> str | None:
    """Why a reported score cannot be taken as a result, or None: an NLL (or bound, or estimate) above the
    uniform model's D*ln(levels) nats means the model diverged or is broken; an energy model's log Z that
    is not finite means its AIS failed."""
    uniform = model.num_dims * math.log(model.levels)
    note = result.get("partition") or {}
    if note and not math.isfinite(float(note.get("log_z", math.nan))):
        return f"the estimate of log Z is not finite ({note.get('log_z')}): the model diverged"
    names = {"nll_nats": "NLL", "elbo_nats": "negative ELBO", "nll_estimate_nats": "NLL estimate"}
    for key, what in names.items():
        value = result.get(key)
        if value is not None and not (math.isfinite(value) and value <= uniform * (1 + 1e-6) + 1e-6):
            return (
                f"the {what} of {value:.6g} nats is worse than the uniform model's {uniform:.6g} nats: the "
                "model diverged or is broken; not a result"
            )
    return None
