"""Tiny data and model for the trainer tests, and a script that trains them (under torchrun or not).

    python tests/ddp_worker.py RUN_DIR --steps 12
    torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py RUN_DIR --steps 12

Both write the same run (up to float rounding): ``batch_size`` is the global batch.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from genzoo.data.base import DynamicallyBinarizedSplit, ImageDataset, ImageSplit
from genzoo.models.base import ExplicitDensityModel
from genzoo.nn.distributions import discrete_log_prob, num_params


class TinyDensity(ExplicitDensityModel):
    """Independent subpixels whose logits come from a 2-layer MLP of a learned embedding.

    Normalized for any weights (a product of per-subpixel categoricals); real layers so that the
    optimizer state is non-trivial, and optional dropout so that training draws random numbers.
    """

    def __init__(self, image_shape, levels: int, hidden: int = 8, dropout: float = 0.0):
        super().__init__(image_shape, levels)
        self.k = num_params(levels)
        self.embedding = nn.Parameter(torch.randn(hidden))
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
                                 nn.Linear(hidden, self.num_dims * self.k))
        self.config = {"name": "tiny-density", "image_shape": list(self.image_shape), "levels": levels,
                       "hidden": hidden, "dropout": dropout}

    def log_prob(self, x, y=None):
        self.check_images(x)
        logits = self.net(self.embedding).reshape(*self.image_shape, *(() if self.k == 1 else (self.k,)))
        return discrete_log_prob(logits.expand(x.shape[0], *logits.shape), x, self.levels).flatten(1).sum(1)


def tiny_dataset(n: int = 96, shape=(1, 4, 4), levels: int = 3, seed: int = 0, binarized: bool = False) -> ImageDataset:
    """Random images with a per-subpixel bias (so there is something to learn).

    ``binarized``: 8-bit intensities in a ``DynamicallyBinarizedSplit`` (levels 2, fresh draws per batch).
    """
    g = torch.Generator().manual_seed(seed)
    top = 256 if binarized else levels
    bias = torch.rand(shape, generator=g)

    def images(count):
        u = torch.rand((count, *shape), generator=g) * 0.5 + bias * 0.5
        return (u * top).long().clamp_(0, top - 1).to(torch.uint8)

    kind = DynamicallyBinarizedSplit if binarized else ImageSplit
    return ImageDataset(name="tiny", levels=2 if binarized else levels, train=kind(images(n)),
                        valid=kind(images(n // 4)), test=kind(images(n // 4)))


def tiny_model(shape=(1, 4, 4), levels: int = 3, dropout: float = 0.0, seed: int = 0) -> TinyDensity:
    torch.manual_seed(seed)
    return TinyDensity(shape, levels, dropout=dropout)


def main(argv=None) -> int:
    from genzoo.train import TrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = TrainConfig(batch_size=args.batch_size, lr=0.05, optimizer="adamw", weight_decay=0.01,
                         ema_decay=0.9, max_steps=args.steps, log_every=1, eval_every=5, progress=False,
                         device="cpu")
    result = train(tiny_model(), tiny_dataset(), args.run_dir, config)
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
