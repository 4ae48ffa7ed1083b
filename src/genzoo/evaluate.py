"""The one evaluator: negative log-likelihood over a whole split, in nats/example and bits/dim.

Used by the trainer (validation), the CLI (``genzoo eval``), the benchmarks and the tests. Every
image of the split is scored: the last, smaller batch is never dropped.
"""
from __future__ import annotations

import math

import torch

from genzoo.data.base import ImageSplit


@torch.no_grad()
def log_likelihoods(model, split: ImageSplit, batch_size: int = 256, generator: torch.Generator | None = None,
                    progress: bool = False) -> torch.Tensor:
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
    return {"n": n, "nll_nats": nll, "nll_nats_stderr": stderr,
            "bits_per_dim": nll * scale, "bits_per_dim_stderr": stderr * scale}


def evaluate_nll(model, split: ImageSplit, batch_size: int = 256, progress: bool = False, seed: int = 0) -> dict:
    """Test NLL of an explicit-density model over the full split: nats/example and bits/dim."""
    if not hasattr(model, "log_prob"):
        raise TypeError(f"{type(model).__name__} has no exact log_prob")
    generator = torch.Generator().manual_seed(seed)  # only used by dynamically binarized splits
    return summarize(log_likelihoods(model, split, batch_size, generator, progress), model.num_dims)
