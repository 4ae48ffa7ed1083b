"""The batches of a run: pure functions of (config, step), so that resuming needs only the position."""

from __future__ import annotations

import numpy as np
import torch

from genzoo.data.base import ImageSplit
from genzoo.models.base import Batch


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU torch generator seeded by integer keys (mixed by numpy's SeedSequence)."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(seed)


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the train split used in pass ``epoch``."""
    return torch.randperm(num_images, generator=keyed_generator(seed, 0, epoch))


def rank_batch(
    split: ImageSplit, order: torch.Tensor, batch_in_epoch: int, step: int, batch_size: int, seed: int,
    rank: int, world_size: int,
) -> Batch:  # fmt: skip
    """This process's slice of the global batch number ``batch_in_epoch`` of the epoch ``order``.

    Every rank draws the whole global batch (indexing and binarization are cheap) and keeps its slice,
    so dynamically binarized images are the same as in a 1-process run.
    """
    start = batch_in_epoch * batch_size
    generator = keyed_generator(seed, 1, step) if split.draws_randomly else None  # seeding costs ~0.2 ms
    x, y = split.batch(order[start : start + batch_size], generator)
    per_rank = batch_size // world_size
    part = slice(rank * per_rank, (rank + 1) * per_rank)
    return Batch(x[part], None if y is None else y[part])
