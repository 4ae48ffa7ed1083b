"""Optimizers, learning-rate schedules and step budgets of the trainer (``genzoo.train``).

Everything here is a pure function of a ``TrainConfig`` (and the step), so that resuming a run needs
only the step count: the learning rate of update ``s`` is ``learning_rate(config, s, horizon)``.
Every model has one optimizer per entry of its ``parameter_groups()`` (GANs: one per player; others
one, "model"): ``optimizer_groups`` checks them and ``optimizer_config`` applies the model's
``optimizer_options(name)`` to the run's config.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from genzoo.train_config import TrainConfig

OPTIMIZER_OPTIONS = ("optimizer", "lr", "betas", "momentum", "weight_decay")  # what a player may override


def make_optimizer(params, cfg: "TrainConfig") -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with momentum, as the config says."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    opt_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # torch's fused Adam: one kernel for all parameters (MADE's 12.6M: 7 ms per step on one CPU core
    # instead of 58 ms; benchmarks/throughput.py --fused-adam)
    return opt_class(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=True)


def set_hyperparameters(optimizer: torch.optim.Optimizer, cfg: "TrainConfig") -> None:
    """Put ``cfg``'s weight decay and momentum/betas into a (restored) optimizer: this call's config wins."""
    for group in optimizer.param_groups:
        group.update(
            weight_decay=cfg.weight_decay,
            **({"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {"betas": tuple(cfg.betas)}),
        )


def optimizer_groups(model) -> dict[str, list[nn.Parameter]]:
    """The trainable parameters of each of the model's optimizers (``model.parameter_groups()``), checked
    to be disjoint, non-empty and to cover every trainable parameter."""
    groups = {str(name): [p for p in params if p.requires_grad] for name, params in model.parameter_groups().items()}
    ids = [id(p) for params in groups.values() for p in params]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if not groups or not all(groups.values()) or len(ids) != len(set(ids)) or set(ids) != trainable:
        sizes = {k: len(v) for k, v in groups.items()}
        raise ValueError(
            "parameter_groups() must split the model's trainable parameters into disjoint, non-empty groups; "
            f"got {sizes}"
        )
    return groups


def optimizer_config(model, name: str, cfg: "TrainConfig") -> "TrainConfig":
    """The config of optimizer ``name``: ``cfg`` with the model's ``optimizer_options(name)``."""
    options = dict(model.optimizer_options(name))
    unknown = sorted(set(options) - set(OPTIMIZER_OPTIONS))
    if unknown:
        raise ValueError(f"optimizer_options({name!r}) may set {', '.join(OPTIMIZER_OPTIONS)}; got {unknown}")
    return dataclasses.replace(cfg, **options)


def learning_rate(config: "TrainConfig", step: int, horizon: int | None) -> float:
    """Learning rate of update ``step`` (0-based): linear warmup, then the schedule."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = step - config.warmup_steps
    if config.schedule == "cosine":
        span = max(1, horizon - config.warmup_steps)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
    if config.schedule == "exponential":
        return config.lr * config.lr_decay**t
    return config.lr


def step_limit(config: "TrainConfig", steps_per_epoch: int) -> int | None:
    """The step budget from max_steps and max_epochs (None when only max_time is set)."""
    limits = [] if config.max_steps is None else [config.max_steps]
    if config.max_epochs is not None:
        limits.append(math.ceil(config.max_epochs * steps_per_epoch - 1e-9))
    return min(limits) if limits else None
