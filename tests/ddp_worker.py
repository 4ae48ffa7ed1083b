"""Tiny data and models for the trainer tests, and a script that trains them (under torchrun or not).

    python tests/ddp_worker.py RUN_DIR --steps 12
    torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py RUN_DIR --steps 12

Both write the same run (up to float rounding): ``batch_size`` is the global batch. With ``--gan`` the
script trains tiny GANs instead (``gan_runs``): ROOT/<variant>/full, and with ``--resume-at`` also
ROOT/<variant>/resumed (stopped by its budget, then resumed), and continues ROOT/<variant>/mixed if
it exists (a run started elsewhere, e.g. by one process).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from genzoo.data.base import DynamicallyBinarizedSplit, ImageDataset, ImageSplit
from genzoo.models.base import AdversarialModel, ExplicitDensityModel
from genzoo.nn.distributions import discrete_log_prob, discrete_sample, num_params


class TinyDensity(ExplicitDensityModel):
    """Independent subpixels whose logits come from a 2-layer MLP of a learned embedding.

    Normalized for any weights (a product of per-subpixel categoricals); real layers so that the
    optimizer state is non-trivial, and optional dropout so that training draws random numbers.
    """

    def __init__(self, image_shape, levels: int, hidden: int = 8, dropout: float = 0.0):
        super().__init__(image_shape, levels)
        self.k = num_params(levels)
        self.embedding = nn.Parameter(torch.randn(hidden))
        self.net = nn.Sequential(
            nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, self.num_dims * self.k)
        )

    def log_prob(self, x, y=None):
        self.check_images(x)
        logits = self.net(self.embedding).reshape(*self.image_shape, *(() if self.k == 1 else (self.k,)))
        return discrete_log_prob(logits.expand(x.shape[0], *logits.shape), x, self.levels).flatten(1).sum(1)

    def sample(self, n, y=None, *, generator=None):
        logits = self.net(self.embedding).reshape(*self.image_shape, *(() if self.k == 1 else (self.k,)))
        return discrete_sample(logits.expand(n, *logits.shape), self.levels, generator)


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
    return ImageDataset(
        name="tiny",
        levels=2 if binarized else levels,
        train=kind(images(n)),
        valid=kind(images(n // 4)),
        test=kind(images(n // 4)),
    )


def tiny_model(shape=(1, 4, 4), levels: int = 3, dropout: float = 0.0, seed: int = 0) -> TinyDensity:
    torch.manual_seed(seed)
    return TinyDensity(shape, levels, dropout=dropout)


class TinyPlayers(AdversarialModel):
    """Two players with deterministic updates (no random draws, no batch norm): under DDP their
    per-optimizer gradient averaging must make 2 processes train what 1 process trains."""

    def __init__(self, image_shape, levels: int, hidden: int = 4):
        super().__init__(image_shape, levels)
        self.a, self.b = nn.Linear(self.num_dims, hidden), nn.Linear(hidden, 1)

    def parameter_groups(self):
        return {"a": list(self.a.parameters()), "b": list(self.b.parameters())}

    def train_step(self, batch, step, optimizers, loss_fn=None):
        x = batch.x.float().flatten(1) / self.levels
        b_loss = (self.b(torch.tanh(self.a(x)).detach()) - 1).square().mean()
        optimizers["b"].zero_grad(set_to_none=True)
        b_loss.backward()
        optimizers["b"].step()
        a_loss = self.b(torch.tanh(self.a(x))).square().mean()
        optimizers["a"].zero_grad(set_to_none=True)
        a_loss.backward()
        optimizers["a"].step()
        return {"loss": a_loss.detach(), "b_loss": b_loss.detach()}

    def loss(self, x, y=None):
        return self.b(torch.tanh(self.a(x.float().flatten(1) / self.levels))).square().mean()

    def sample(self, n, y=None, *, generator=None):
        return torch.zeros(n, *self.image_shape, dtype=torch.long)


# Tiny two-player models: each variant exercises another part of two-player DDP.
GANS = {
    "players": (TinyPlayers, {}),  # deterministic: 2 processes = 1 process
    "dcgan": ("dcgan", {"label_smoothing": 0.1}),  # batch norm in G and D (each process's statistics on CPU)
    "wgan-gp": ("wgan-gp", {"n_critic": 2}),  # layer-norm critic, gradient penalty
    "cgan": ("cgan", {"num_classes": 3, "spectral_norm": True, "objective": "minimax"}),  # labels, power iteration
}
GAN_SHAPE, GAN_LEVELS = (1, 8, 8), 5


def tiny_gan_dataset(n: int = 48, classes: int = 3) -> ImageDataset:
    """``tiny_dataset`` images of GAN_SHAPE with labels (image index mod ``classes``)."""
    data = tiny_dataset(n, GAN_SHAPE, GAN_LEVELS)
    labelled = lambda split: ImageSplit(split.images, torch.arange(len(split)) % classes)  # noqa: E731
    return dataclasses.replace(data, train=labelled(data.train), valid=labelled(data.valid), test=labelled(data.test))


def tiny_gan(variant: str, seed: int = 0):
    import genzoo

    name, options = GANS[variant]
    torch.manual_seed(seed)
    if not isinstance(name, str):
        return name(GAN_SHAPE, GAN_LEVELS, **options)
    return genzoo.create(name, GAN_SHAPE, GAN_LEVELS, channels=4, latent=4, lr=2e-3, **options)


def gan_config(steps: int):
    from genzoo.train import TrainConfig

    return TrainConfig(
        batch_size=8,
        max_steps=steps,
        log_every=1,
        eval_every=2,
        checkpoint_every=100,
        eval_max_images=8,
        ema_decay=0.9,
        progress=False,
        device="cpu",
    )


def gan_runs(root, variants, steps: int, resume_at: int | None = None) -> None:
    """Train the tiny GANs into ROOT/<variant>/... (see the module docstring).

    Every rank builds its model with another seed: rank 0's weights must reach the others. Each rank
    also writes its final parameters to ROOT/<variant>/full/rank<R>.safetensors (the replicas must agree)."""
    from genzoo.checkpoint import save_tensors
    from genzoo.train import train

    root, rank, data = Path(root), int(os.environ.get("RANK", "0")), tiny_gan_dataset()
    for variant in variants:
        model = tiny_gan(variant, seed=rank)
        assert train(model, data, root / variant / "full", gan_config(steps))["step"] == steps
        save_tensors(root / variant / "full" / f"rank{rank}.safetensors", dict(model.named_parameters()), {})
        if resume_at is not None:
            first = train(tiny_gan(variant, seed=rank), data, root / variant / "resumed", gan_config(resume_at))
            assert first["step"] == resume_at
            again = train(tiny_gan(variant, seed=rank + 7), data, root / variant / "resumed", gan_config(steps))
            assert again["step"] == steps
        mixed = root / variant / "mixed"
        if mixed.exists():
            assert train(tiny_gan(variant, seed=rank + 7), data, mixed, gan_config(steps))["step"] == steps


def main(argv=None) -> int:
    from genzoo.train import TrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gan", help="comma-separated GANS variants: train those instead, into RUN_DIR/<variant>")
    parser.add_argument("--resume-at", type=int, help="--gan: also a run stopped at this step and resumed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.gan:
        import torch.distributed as dist

        owned = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
        if owned:  # one process group for all the runs (train() leaves a group it did not create alone)
            dist.init_process_group("gloo")
        gan_runs(args.run_dir, args.gan.split(","), args.steps, args.resume_at)
        if owned:  # every rank done talking before the group goes (else gloo may abort a peer)
            dist.barrier()
            dist.destroy_process_group()
        return 0
    config = TrainConfig(
        batch_size=args.batch_size,
        lr=0.05,
        optimizer="adamw",
        weight_decay=0.01,
        ema_decay=0.9,
        max_steps=args.steps,
        log_every=1,
        eval_every=5,
        progress=False,
        device="cpu",
    )
    result = train(tiny_model(), tiny_dataset(), args.run_dir, config)
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    from genzoo.distributed import exit_process

    exit_process(main())
