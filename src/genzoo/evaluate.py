"""The one evaluator: negative log-likelihood over a whole split, in nats/example and bits/dim.

Used by the trainer (validation), the CLI (``genzoo eval``), the benchmarks and the tests. Every
image of the split is scored: the last, smaller batch is never dropped.
"""

from __future__ import annotations

import math

import torch

from genzoo.data.base import ImageSplit


@torch.no_grad()
def log_likelihoods(
    model, split: ImageSplit, batch_size: int = 256, generator: torch.Generator | None = None, progress: bool = False
) -> torch.Tensor:
    """log p(x) in nats of every image in ``split`` (float64 on CPU, in split order)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(split), batch_size)
    for start in tqdm(starts, desc="eval", disable=not progress, leave=False):
        index = torch.arange(start, min(start + batch_size, len(split)))
        x, y = split.batch(index, generator)
        x = x.to(model.device)
        y = None if y is None else y.to(model.device)
        out.append(model.log_prob(x, y).double().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def summarize(log_p: torch.Tensor, num_dims: int) -> dict:
    """NLL mean and standard error in nats/example and bits/dim."""
    n = log_p.numel()
    nll = float(-log_p.mean())
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
    """Test NLL of an explicit-density model over the full split: nats/example and bits/dim."""
    if not hasattr(model, "log_prob"):
        raise TypeError(f"{type(model).__name__} has no exact log_prob")
    generator = torch.Generator().manual_seed(seed)  # only used by dynamically binarized splits
    return summarize(log_likelihoods(model, split, batch_size, generator, progress), model.num_dims)


# Latent-variable models (VAE, IWAE, ...): a bound and an importance-sampling estimate, never an exact NLL.


@torch.no_grad()
def latent_bounds(
    model, split: ImageSplit, num_samples: int = 5000, batch_size: int = 100, seed: int = 0, progress: bool = False
) -> dict[str, torch.Tensor]:
    """Per-image ELBO and ``num_samples``-sample estimate of log p(x), nats (float64 on CPU, split order).

    Also the ELBO's two terms ("reconstruction", "kl") when the model has ``elbo_terms``. The model's
    random numbers come from a generator seeded with ``seed`` (the caller's random state is restored).
    """
    from tqdm.auto import tqdm

    device, was_training = model.device, model.training
    model.eval()
    images = torch.Generator().manual_seed(seed)  # only used by dynamically binarized splits
    out: dict[str, list[torch.Tensor]] = {"elbo": [], "estimate": [], "reconstruction": [], "kl": []}
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for start in tqdm(range(0, len(split), batch_size), desc="eval", disable=not progress, leave=False):
            x, y = split.batch(torch.arange(start, min(start + batch_size, len(split))), images)
            x, y = x.to(device), None if y is None else y.to(device)
            if hasattr(model, "elbo_terms"):
                reconstruction, kl = model.elbo_terms(x, y)
                out["reconstruction"].append(reconstruction.double().cpu())
                out["kl"].append(kl.double().cpu())
                out["elbo"].append(out["reconstruction"][-1] - out["kl"][-1])
            else:
                out["elbo"].append(model.elbo(x, y).double().cpu())
            out["estimate"].append(model.log_prob_estimate(x, y, num_samples=num_samples).double().cpu())
    model.train(was_training)
    empty = torch.zeros(0, dtype=torch.float64)
    if not out["kl"]:
        del out["reconstruction"], out["kl"]
    return {key: torch.cat(parts) if parts else empty for key, parts in out.items()}


def evaluate_bound(
    model, split: ImageSplit, num_samples: int = 5000, batch_size: int = 100, seed: int = 0, progress: bool = False
) -> dict:
    """Bound and estimate of the test NLL of a latent-variable model over the full split.

    Returns n, k (= num_samples) and, each with a standard error over the images:
    elbo_nats — the mean negative ELBO, an upper bound on the NLL (nats/example);
    nll_estimate_nats — the mean negative k-sample importance-sampling estimate (Burda et al. 2016), an
    upper bound in expectation that tightens as k grows; both also in bits/dim (``*_bits_per_dim``);
    and, for models with ``elbo_terms``, reconstruction_nats (mean -E_q log p(x|z)) and kl_nats.
    """
    values = latent_bounds(model, split, num_samples, batch_size, seed, progress)
    result = {"n": len(split), "k": int(num_samples)}
    for name, key in (("elbo", "elbo"), ("nll_estimate", "estimate")):
        s = summarize(values[key], model.num_dims)
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


@torch.no_grad()
def evaluate_reconstruction(
    model, split: ImageSplit, batch_size: int = 256, seed: int = 0, progress: bool = False
) -> dict:
    """Mean reconstruction NLL -log p(x | z = e(x)) over the full split, nats/example and bits/dim, for
    models with ``reconstruction_log_prob`` and no likelihood (auto-encoders): NOT an NLL of the data."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    generator, out = torch.Generator().manual_seed(seed), []  # only used by dynamically binarized splits
    for start in tqdm(range(0, len(split), batch_size), desc="eval", disable=not progress, leave=False):
        x, _ = split.batch(torch.arange(start, min(start + batch_size, len(split))), generator)
        out.append(model.reconstruction_log_prob(x.to(model.device)).double().cpu())
    model.train(was_training)
    s = summarize(torch.cat(out) if out else torch.zeros(0, dtype=torch.float64), model.num_dims)
    return {
        "n": s["n"],
        "reconstruction_nats": s["nll_nats"],
        "reconstruction_nats_stderr": s["nll_nats_stderr"],
        "reconstruction_bits_per_dim": s["bits_per_dim"],
    }


def evaluate_model(model, split: ImageSplit, **kwargs) -> dict:
    """``evaluate_nll`` for models with an exact ``log_prob``, ``evaluate_bound`` for latent-variable models.

    The result's "kind" says which: "exact" or "bound". ``num_samples`` only matters for bounds and is
    ignored for exact models. Models with neither ``log_prob`` nor ``log_prob_estimate`` (GANs) give
    {"kind": "samples-only"}: judge them by ``genzoo.metrics.sample_metrics``; auto-encoders (with
    ``reconstruction_log_prob``) give {"kind": "reconstruction", ...} from ``evaluate_reconstruction``.
    """
    from genzoo.models.base import LatentVariableModel

    if not hasattr(model, "log_prob") and hasattr(model, "reconstruction_log_prob"):
        kwargs.pop("num_samples", None)
        return {"kind": "reconstruction", **evaluate_reconstruction(model, split, **kwargs)}

    if not isinstance(model, LatentVariableModel) and not any(
        hasattr(model, a) for a in ("log_prob", "log_prob_estimate")
    ):
        return {"kind": "samples-only"}
    if isinstance(model, LatentVariableModel) or (
        not hasattr(model, "log_prob") and hasattr(model, "log_prob_estimate")
    ):
        note = partition_note(model)  # a DBN's bound rests on its top RBM's log Z (exact or AIS)
        return {"kind": "bound", **({"partition": note} if note else {}), **evaluate_bound(model, split, **kwargs)}
    kwargs.pop("num_samples", None)
    note = partition_note(model)
    if note is None:
        return {"kind": "exact", **evaluate_nll(model, split, **kwargs)}
    # an energy model: exact only if its log Z was enumerated; otherwise an AIS estimate with its error
    kind = "exact" if note["method"] == "exact" else "estimate"
    return {"kind": kind, "partition": note, **evaluate_nll(model, split, **kwargs)}


def partition_note(model) -> dict | None:
    """How the normalizer behind ``model.log_prob`` was obtained, to label the NLL it gives; None for
    models that need none (autoregressive, mixtures, ...).

    For energy models (RBM): {"method": "exact" | "ais", "log_z": nats, "log_z_stderr": nats (0 if exact),
    "log_z_interval": [low, high] (the AIS +-3 sigma interval), "current": whether it was computed for the
    present weights}. An AIS-based NLL is an estimate with that uncertainty, not an exact value.
    """
    details = getattr(model, "partition_details", None)
    return details() if callable(details) else None
