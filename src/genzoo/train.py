"""The one trainer: any genzoo model, one process or many (DDP), with checkpoints and exact resume.

One process (CPU, or one GPU):

    genzoo train pixelcnn --data binarized-mnist --epochs 20 --ema 0.999

DDP on the 8 GPUs of one node (PyTorch's own launcher; NCCL on GPUs, gloo on CPU):

    torchrun --standalone --nproc_per_node=8 -m genzoo.cli train pixelcnn --data binarized-mnist --epochs 20

DDP across 2 nodes (run on each node: --node_rank=0 on the master, 1 on the other):

    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=10.0.0.1 --master_port=29500 \\
        -m genzoo.cli train pixelcnn --data binarized-mnist --epochs 20

From Python: ``train(model, dataset, "runs/x", TrainConfig(batch_size=64, max_steps=10_000))``; the tiny
example ``tests/ddp_worker.py`` runs the same way with ``python`` or ``torchrun``.

``batch_size`` is the global batch: each of N processes takes a contiguous 1/N slice and DDP averages
the gradients, so a step equals the 1-process step on the whole batch (up to float rounding; for a
``loss`` model that draws random numbers, each rank has its own stream). DDP needs every parameter to
receive a gradient at every step (no ``find_unused_parameters``).
Everything lands in ``run_dir``: ``checkpoint.safetensors`` (the full training state, for resume),
``model.safetensors`` (the last weights: what ``genzoo.load(run_dir)`` reads), ``model_best.safetensors``
(see below), ``log.jsonl`` and ``tb/`` (TensorBoard).

Early stopping, as papers report it: with ``keep_best`` (the default), each validation that improves
on the best score so far (``nll_nats``, else the mean ``loss``; lower is better: ``best_valid``)
writes the evaluated weights to ``model_best.safetensors`` (the same layout as ``model.safetensors``:
raw and EMA weights; the step, metric and score under "best" in its metadata).
``genzoo.load(run_dir, weights="best")`` reads it, and ``genzoo eval``/``train_and_evaluate`` score
it when it exists. Training itself does not stop early: the budget decides, the file keeps the best.
Models whose validation score is no measure of fit keep no best file: two-player models (the
discriminator's loss) and energy models (validated on their contrastive-divergence surrogate); a
model may decide with a ``select_by_validation`` attribute. A fresh run (``resume=False``, or no
checkpoint) deletes a best file left in ``run_dir``; a resumed run folds the file's score into
``best_valid``, so it never replaces the file with worse weights, even when the file was written
after the checkpoint it resumes from.
SIGINT/SIGTERM finish the current step, save, and return with status "interrupted"; calling ``train``
again on the same ``run_dir`` continues exactly where it stopped: same batches, same random numbers,
same losses to the last bit.

Two-player models (GANs) declare ``parameter_groups() -> {name: [parameters]}`` and
``train_step(x, y, optimizers, step) -> {name: scalar tensor}``: the trainer builds one optimizer per
group (the config's, updated by the model's ``optimizer_options(name)`` if it has one), sets each one's
scheduled learning rate, clips each group's gradient norm just before its ``optimizer.step()`` (a step
pre-hook; ``grad_clip=None``: no clipping), and lets ``train_step`` do its own alternating updates.
The returned scalars are logged (the entry "loss", else the first one, is the run's "loss"); every
optimizer's state is checkpointed, so resume stays exact. No compile.

Two-player models under DDP are not wrapped in ``DistributedDataParallel`` (it hooks one ``forward``
and one backward per step; ``train_step`` makes several of each, for different players). Instead each
rank runs ``train_step`` on its slice of the global batch and the trainer makes the result that of one
process on the whole batch (up to float rounding), with the pieces of ``genzoo.distributed``:

- gradients: each player's step pre-hook first averages that player's gradients over the ranks (one
  all-reduce of the flattened gradients), then clips them, so every rank takes the same update;
- noise: all ranks share one random stream (seeded, checkpointed and restored as rank 0's), and while
  ``train_step`` runs, ``GlobalBatch`` makes each ``torch.rand``/``randn``/``randint`` of a per-example
  size (leading dimension = this rank's batch) draw the global batch's numbers and keep this rank's
  rows: z of G, the dequantization noise and the gradient penalty's interpolation weights are bitwise
  those of the 1-process run (dropout and other random ops raise there; the GANs use none);
- batch norm: in training mode it normalizes with the global batch's statistics (a differentiable
  all-reduce, so the gradient penalty's double backward is right too); its running statistics, the
  spectral-norm power-iteration vectors and the EMA are then computed from the same numbers on every
  rank and stay identical, and rank 0's weights and buffers are broadcast at the start;
- the logged scalars are the means over ranks; rank 0 writes the checkpoints. Resume stays exact, in
  the same or another number of processes (the shared stream does not depend on the rank).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genzoo.checkpoint import (
    BEST_FILE,
    MODEL_FILE,
    CheckpointError,
    flatten_state,
    load_tensors,
    read_metadata,
    save_model,
    save_tensors,
    unflatten_state,
)
from genzoo.data.base import ImageDataset, ImageSplit
from genzoo.distributed import (
    Distributed,
    GlobalBatch,
    gather_rng_states,
    seed_everything,
    select_device,
    set_rng_state,
)
from genzoo.ema import EMA
from genzoo.evaluate import evaluate_nll
from genzoo.optim import (
    SCHEDULES,
    learning_rate,
    make_optimizer,
    player_config,
    player_groups,
    set_hyperparameters,
    step_limit,
)
from genzoo.runlog import LossWindow, RunLog, StopSignals

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT = "genzoo-train/1"


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored as JSON in every checkpoint."""

    batch_size: int = 64  # GLOBAL images per step, split evenly over the DDP processes
    lr: float = 1e-3  # peak learning rate
    optimizer: str = "adam"  # adam | adamw (decoupled weight decay) | sgd (with momentum)
    momentum: float = 0.0  # sgd only: heavy-ball momentum (e.g. 0.9 for RBMs)
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)  # Adam's moment decay rates
    schedule: str = "constant"  # constant | cosine (down to 0 at decay_steps) | exponential
    warmup_steps: int = 0  # linear warmup from lr/warmup_steps up to lr
    decay_steps: int | None = None  # cosine horizon in steps; None: the step budget (max_steps or max_epochs)
    lr_decay: float = 0.9999  # exponential schedule: lr multiplied by this after every step
    grad_clip: float | None = 1.0  # max global L2 norm of the gradient; None: no clipping
    ema_decay: float | None = None  # e.g. 0.999: evaluate and save an EMA of the weights; None: off
    max_steps: int | None = None  # budgets: stop at the first one reached; at least one is required
    max_epochs: float | None = None  # passes over the train split (fractions allowed)
    max_time: float | None = None  # seconds of training wall time, accumulated across resumes
    eval_every: int = 1000  # steps between validations (and one at the end)
    eval_batch_size: int = 256
    eval_split: str = "valid"
    eval_max_images: int | None = None  # validate on the first N images only, for speed; None: all
    keep_best: bool = True  # write model_best.safetensors at each new best validation score
    checkpoint_every: int = 1000  # steps between checkpoints (and one at the end or on a signal)
    log_every: int = 50  # steps between log lines; a line's loss is the mean since the last
    seed: int = 0  # data order, batch randomness, torch/numpy/random seeds (+ rank)
    device: str = "auto"  # auto (CUDA if available) | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 autocast on CUDA, off on CPU) | bf16 | off
    compile: bool = False  # torch.compile the loss module
    progress: bool = True  # tqdm progress bar on rank 0

    def validate(self) -> None:
        """Raise ValueError for a config that cannot run."""
        checks = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (
                self.optimizer in ("adam", "adamw", "sgd"),
                f"optimizer must be adam, adamw or sgd, got {self.optimizer!r}",
            ),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.lr > 0 and self.warmup_steps >= 0, "lr must be > 0 and warmup_steps >= 0"),
            (
                any(b is not None for b in (self.max_steps, self.max_epochs, self.max_time)),
                "set a training budget: max_steps, max_epochs or max_time",
            ),
            (
                min(self.eval_every, self.checkpoint_every, self.log_every, self.eval_batch_size) >= 1,
                "eval_every, checkpoint_every, log_every and eval_batch_size must be >= 1",
            ),
            (self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.ema_decay is None or 0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1) or None"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or None"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class NonFiniteLossError(RuntimeError, FloatingPointError):
    """The loss or the gradient norm became NaN/inf; nothing was saved after the last good step."""


@dataclass
class TrainState:
    """Where a run stands; with the weights and random states, all a resume needs."""

    step: int = 0  # optimizer updates done
    epoch: int = 0  # current pass over the train split (0-based)
    batch_in_epoch: int = 0  # batches of that pass already used
    elapsed: float = 0.0  # seconds of training wall time, across resumes
    loss: float | None = None  # last logged train loss (mean nats per example)
    valid: dict | None = None  # last validation metrics
    best_valid: float | None = None  # lowest validation NLL (nats) or loss seen (the score of model_best)


# Batches: pure functions of (config, step), so resuming needs only the step.


def _generator(*keys: int) -> torch.Generator:
    """A torch generator seeded by integer keys (mixed by numpy's SeedSequence)."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(seed)


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the train split used in pass ``epoch``."""
    return torch.randperm(num_images, generator=_generator(seed, 0, epoch))


def rank_batch(
    split: ImageSplit, order: torch.Tensor, state: TrainState, config: TrainConfig, ctx: Distributed
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """This process's slice of the global batch at ``state``'s position.

    Every rank draws the whole global batch (indexing and binarization are cheap) and keeps its slice,
    so dynamically binarized images are the same as in a 1-process run.
    """
    start = state.batch_in_epoch * config.batch_size
    index = order[start : start + config.batch_size]
    x, y = split.batch(index, _generator(config.seed, 1, state.step))
    per_rank = config.batch_size // ctx.world_size
    part = slice(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
    return x[part], None if y is None else y[part]


def validate(model, split: ImageSplit, batch_size: int, seed: int = 0) -> dict:
    """NLL in nats and bits/dim for models with a usable ``log_prob``; otherwise the mean loss (nats/example).

    (An RBM's log_prob needs a partition function for the present weights, which training changes.)"""
    if hasattr(model, "log_prob") and getattr(model, "has_partition", True):
        return evaluate_nll(model, split, batch_size, seed=seed)
    generator, total = torch.Generator().manual_seed(seed), 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            x, y = split.batch(torch.arange(start, min(start + batch_size, len(split))), generator)
            y = None if y is None else y.to(model.device)
            total += float(model.loss(x.to(model.device), y)) * x.shape[0]
    model.train(was_training)
    return {"n": len(split), "loss": total / max(len(split), 1)}


def validation_score(metrics: dict) -> tuple[str, float]:
    """(metric name, value) that ranks validations: ``nll_nats`` when measured, else ``loss``; lower is better."""
    metric = "nll_nats" if "nll_nats" in metrics else "loss"
    return metric, float(metrics[metric])


def selects_by_validation(model, two_player: bool = False) -> bool:
    """Whether a lower validation score means a better model, so that the best-scoring weights are worth
    keeping. Not for two-player models (their score is the discriminator's loss) nor for energy models
    (an RBM's or DBN's score is its contrastive-divergence surrogate). A model's ``select_by_validation``
    attribute overrides this."""
    own = getattr(model, "select_by_validation", None)
    if own is not None:
        return bool(own)
    return not two_player and not hasattr(type(model), "has_partition")


class LossModule(nn.Module):
    """``forward(x, y) = model.loss(x, y)``: what DDP wraps, since DDP only hooks ``forward``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.loss(x, y)


def train(
    model, dataset: ImageDataset, run_dir, config: TrainConfig, *, resume: bool = True, data_info: dict | None = None
) -> dict:
    """Train ``model`` on ``dataset.train`` until a budget is reached or a signal arrives.

    Continues from ``run_dir/checkpoint.safetensors`` when ``resume`` and it exists. Returns a dict:
    status ("finished" | "interrupted"), step, epoch (float), elapsed (s), loss (last logged train loss,
    nats/example), valid (last validation metrics), best_valid, best_step (the step of the weights in
    model_best.safetensors, None without one), images_per_sec (this call, training only).
    ``data_info`` is stored in model.safetensors so that the dataset can be named when the model is loaded.
    """
    config.validate()
    _check_model_fits(model, dataset)
    device = select_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    ctx, run = Distributed.from_env(device), None
    try:
        run = _Run(model, dataset, Path(run_dir), config, ctx, device, data_info)
        run.setup(resume)
        return run.run()
    finally:
        if run is not None:
            run.loss_module = None  # the DDP wrapper holds the process group: free it before the group
        ctx.close()


def _check_model_fits(model, dataset: ImageDataset) -> None:
    if tuple(model.image_shape) != tuple(dataset.image_shape) or model.levels != dataset.levels:
        raise ValueError(
            f"the model is built for images {tuple(model.image_shape)} with {model.levels} levels, "
            f"but {dataset.name} has {tuple(dataset.image_shape)} with {dataset.levels} levels"
        )
    if getattr(model, "conditional", False) and dataset.train.labels is None:
        raise ValueError(f"the model is class-conditional but {dataset.name} has no labels")


def _jsonable(obj):
    return json.loads(json.dumps(obj))


def _check_checkpoint(meta: dict, model, dataset: ImageDataset, path: Path) -> None:
    """Raise ValueError unless the checkpoint was written for this model and this image format."""
    hint = "use another run directory, or resume=False to start over (and overwrite it)"
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a genzoo training checkpoint (format {meta.get('format')!r}); {hint}")
    saved = meta.get("data") or {}
    here = {"image_shape": list(dataset.image_shape), "levels": dataset.levels}
    if {k: saved.get(k) for k in here} != here:
        raise ValueError(
            f"{path} was trained on images {saved.get('image_shape')} with {saved.get('levels')} levels, "
            f"but {dataset.name} has {here['image_shape']} with {here['levels']} levels; {hint}"
        )
    theirs, ours = meta.get("model") or {}, _jsonable(model.config)
    if theirs != ours:
        diff = "; ".join(
            f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here"
            for k in sorted(set(theirs) | set(ours))
            if theirs.get(k) != ours.get(k)
        )
        raise ValueError(f"{path} belongs to a different model ({diff}); {hint}")


class _Run:
    """One call of ``train``: the objects of a run and the steps of its loop."""

    def __init__(self, model, dataset, run_dir, config, ctx, device, data_info):
        self.model, self.dataset, self.run_dir, self.config = model, dataset, run_dir, config
        self.ctx, self.device = ctx, device
        self.data_info = (
            data_info
            if data_info is not None
            else {"name": dataset.name, "image_shape": list(dataset.image_shape), "levels": dataset.levels}
        )
        if config.batch_size % ctx.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by {ctx.world_size} processes")
        self.steps_per_epoch = len(dataset.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size {config.batch_size} exceeds the {len(dataset.train)} training images")
        self.limit = step_limit(config, self.steps_per_epoch)
        self.horizon = config.decay_steps or self.limit
        if config.schedule == "cosine" and self.horizon is None:
            raise ValueError("the cosine schedule needs decay_steps, max_steps or max_epochs")
        self.state, self.saved_step, self.images, self.seconds = TrainState(), None, 0, 0.0
        self.best_step = None  # the step of the weights in model_best.safetensors (rank 0)
        use_amp = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
        )

    def setup(self, resume: bool) -> None:
        """Build optimizer and EMA, restore a checkpoint or seed a fresh run, wrap for DDP/compile."""
        cfg, model = self.config, self.model
        model.to(self.device).train()
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.players = player_groups(model)
        if self.players is None:
            self.optimizer = make_optimizer(self.params, cfg)
        else:
            self._setup_players()
        path, ema_state = self.run_dir / CHECKPOINT_FILE, None
        resumed = resume and path.exists()
        if resumed:
            ema_state = self._restore(path)
        else:  # two-player runs: one random stream, the same on every rank (see GlobalBatch)
            seed_everything(cfg.seed + (0 if self.players is not None else self.ctx.rank))
        self.keep_best = cfg.keep_best and selects_by_validation(model, self.players is not None)
        self._adopt_best_file(resumed)
        if self.players is not None:  # no DDP wrapper to broadcast rank 0's weights: do it here
            for tensor in model.state_dict().values():
                self.ctx.broadcast_(tensor)
        self.ema = None if cfg.ema_decay is None else EMA(model, cfg.ema_decay)
        if self.ema is not None and ema_state:
            self.ema.load_state_dict(ema_state)
        if self.players is not None:
            self.loss_module = None
            return
        module = LossModule(model)
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        self.loss_module = torch.compile(module) if cfg.compile else module

    def _setup_players(self) -> None:
        """One optimizer per parameter group; right before it steps, its gradients are averaged over the
        ranks (DDP) and clipped."""
        if self.config.compile:
            raise ValueError("models with train_step train without compile")
        self.global_batch = (
            (lambda: GlobalBatch(self.ctx, self.config.batch_size // self.ctx.world_size))
            if self.ctx.enabled
            else contextlib.nullcontext
        )
        self.player_configs = {name: player_config(self.model, name, self.config) for name in self.players}
        self.optimizers, self.grad_norms = {}, {}
        for name, params in self.players.items():
            self.optimizers[name] = make_optimizer(params, self.player_configs[name])
            self.optimizers[name].register_step_pre_hook(self._pre_step_hook(name, params))

    def _pre_step_hook(self, name: str, params: list):
        """Average player ``name``'s gradients over the ranks, then clip them (and note their norm)."""
        clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf  # inf: norm only

        def hook(optimizer, args, kwargs):
            self.ctx.average_gradients_(params)
            self.grad_norms[name] = nn.utils.clip_grad_norm_(params, clip)

        return hook

    def _restore(self, path: Path) -> dict | None:
        """Load weights, optimizer, random states and position; returns the EMA weights (or None)."""
        tensors, meta = load_tensors(path)
        _check_checkpoint(meta, self.model, self.dataset, path)
        part = lambda prefix: {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            self.model.load_state_dict(part("model."))
        except RuntimeError as err:
            raise ValueError(f"{path} does not match this model's weights: {err}") from None
        if self.players is None:
            self.optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
            set_hyperparameters(self.optimizer, self.config)
        else:
            states = unflatten_state(meta["optimizers"], tensors)
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(states[name])
                set_hyperparameters(optimizer, self.player_configs[name])
        rngs = [unflatten_state(r, tensors) for r in meta["rng"]]
        if self.players is not None:  # one stream shared by all ranks, whatever the world size
            set_rng_state(rngs[0], self.device)
        elif self.ctx.rank < len(rngs):
            set_rng_state(rngs[self.ctx.rank], self.device)
        else:  # more processes than when saved: a fresh, distinct stream for the new ranks
            seed_everything(self.config.seed + self.ctx.rank + 1_000_003 * meta["state"]["step"])
        self.state = TrainState(**meta["state"])
        self.saved_step = self.state.step
        return part("ema.") if meta.get("has_ema") else None

    def _adopt_best_file(self, resumed: bool) -> None:
        """Rank 0: a resumed run keeps the best-weights file of its own run and folds its score into
        ``best_valid``; a fresh run, or a file of another model or unreadable, deletes it (so that nothing
        scores stale weights)."""
        path = self.run_dir / BEST_FILE
        if not self.ctx.is_main or not path.exists():
            return
        best = None
        if resumed:
            try:
                meta = read_metadata(path)
            except CheckpointError:
                meta = {}
            mine = meta.get("model") == _jsonable(self.model.config)
            if mine and isinstance(meta.get("best"), dict) and isinstance(meta["best"].get("score"), (int, float)):
                best = meta["best"]
        if best is None:
            path.unlink()
            return
        st = self.state
        st.best_valid = best["score"] if st.best_valid is None else min(st.best_valid, best["score"])
        self.best_step = best["step"]

    def _save_best(self, metric: str, score: float) -> None:
        """Rank 0: the weights just validated (raw and EMA, like model.safetensors) to model_best.safetensors."""
        if not self.ctx.is_main:
            return
        st = self.state
        ema_state = None if self.ema is None else self.ema.state_dict()
        save_model(
            self.run_dir / BEST_FILE,
            self.model,
            ema_state,
            extra={
                "data": self.data_info,
                "train": asdict(self.config),
                "step": st.step,
                "valid": st.valid,
                "best": {
                    "step": st.step,
                    "metric": metric,
                    "score": score,
                    "split": self.config.eval_split,
                    "max_images": self.config.eval_max_images,
                },
            },
        )
        self.best_step = st.step

    def _save(self) -> None:
        """Write checkpoint.safetensors and model.safetensors (rank 0; every rank must call)."""
        rngs = gather_rng_states(self.ctx, self.device)
        if self.ctx.is_main:
            cfg, st = self.config, self.state
            tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
            ema_state = None if self.ema is None else self.ema.state_dict()
            tensors.update({f"ema.{k}": v for k, v in (ema_state or {}).items()})
            meta = {
                "format": FORMAT,
                "model": _jsonable(self.model.config),
                "train": asdict(cfg),
                "data": _jsonable(
                    dict(self.data_info, image_shape=list(self.dataset.image_shape), levels=self.dataset.levels)
                ),
                "state": asdict(st),
                "has_ema": ema_state is not None,
                "world_size": self.ctx.world_size,
                **(
                    {"optimizer": flatten_state(self.optimizer.state_dict(), "optimizer", tensors)}
                    if self.players is None
                    else {
                        "optimizers": flatten_state(
                            {name: opt.state_dict() for name, opt in self.optimizers.items()}, "optimizer", tensors
                        )
                    }
                ),
                "rng": [flatten_state(r, f"rng.{i}", tensors) for i, r in enumerate(rngs)],
            }
            save_model(
                self.run_dir / MODEL_FILE,
                self.model,
                ema_state,
                extra={"data": self.data_info, "train": asdict(cfg), "step": st.step, "valid": st.valid},
            )
            save_tensors(self.run_dir / CHECKPOINT_FILE, tensors, meta)
        self.saved_step = self.state.step
        self.ctx.barrier()

    def _validate(self) -> dict | None:
        """Validation metrics with the EMA weights if any; the training random streams are untouched."""
        cfg = self.config
        split = self.dataset.split(cfg.eval_split)
        if cfg.eval_max_images is not None:
            n = cfg.eval_max_images
            split = dataclasses.replace(
                split, images=split.images[:n], labels=None if split.labels is None else split.labels[:n]
            )
        if len(split) == 0:
            return None
        cuda = [self.device.index] if self.device.type == "cuda" else []
        ema = self.ema.applied_to(self.model) if self.ema is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=cuda), ema:
            metrics = validate(self.model, split, cfg.eval_batch_size, cfg.seed)
        self.model.train()
        return metrics

    def _step(self, x, y, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer update on this rank's slice; returns (loss, gradient norm) as device tensors."""
        x = x.to(self.device, non_blocking=True)
        y = None if y is None else y.to(self.device, non_blocking=True)
        with self.autocast():
            loss = self.loss_module(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf  # inf: norm only
        grad_norm = nn.utils.clip_grad_norm_(self.params, clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.state.step + 1)
        return loss.detach().float(), grad_norm

    def _players_step(self, x, y, lr: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The model's own alternating updates (``train_step``); returns (loss, gradient norm, scalars)."""
        x = x.to(self.device, non_blocking=True)
        y = None if y is None else y.to(self.device, non_blocking=True)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:  # the schedule, relative to each player's own lr
                group["lr"] = lr * self.player_configs[name].lr / self.config.lr
        self.grad_norms = {}
        with self.autocast(), self.global_batch():
            returned = self.model.train_step(x, y, self.optimizers, self.state.step)
        if not returned:
            raise ValueError(f"{type(self.model).__name__}.train_step must return a dict of scalar losses")
        scalars = {
            name: torch.as_tensor(v, device=self.device).detach().float().reshape(()) for name, v in returned.items()
        }
        if self.ctx.enabled:  # each rank's means over its slice -> the means over the global batch
            means = self.ctx.sum_(torch.stack(list(scalars.values()))) / self.ctx.world_size
            scalars = dict(zip(scalars, means.unbind()))
        loss = scalars.get("loss", next(iter(scalars.values())))
        norms = [n.float() for n in self.grad_norms.values()]
        grad_norm = torch.stack(norms).norm() if norms else torch.zeros((), device=self.device)
        scalars.update({f"grad_norm/{name}": n.detach().float() for name, n in self.grad_norms.items()})
        if self.ema is not None:
            self.ema.update(self.state.step + 1)
        return loss, grad_norm, scalars

    def _budget_reached(self) -> bool:
        st, cfg = self.state, self.config
        return (self.limit is not None and st.step >= self.limit) or (
            cfg.max_time is not None and st.elapsed >= cfg.max_time
        )

    def _epoch(self) -> float:
        return self.state.epoch + self.state.batch_in_epoch / self.steps_per_epoch

    def run(self) -> dict:
        """Install the signal handlers around the loop and report the result."""
        signals = StopSignals()
        self.log = RunLog(self.run_dir, self.state.step, self.limit, self.config, self.ctx.is_main)
        signals.install()
        try:
            status = "finished" if self._budget_reached() else self._loop(signals)
        finally:
            signals.restore()
            self.log.close()
        st = self.state
        return {
            "status": status,
            "step": st.step,
            "epoch": self._epoch(),
            "elapsed": st.elapsed,
            "loss": st.loss,
            "valid": st.valid,
            "best_valid": st.best_valid,
            "best_step": self.best_step,
            "images_per_sec": self.images / self.seconds if self.seconds else None,
        }

    def _loop(self, signals: StopSignals) -> str:
        cfg, st, split = self.config, self.state, self.dataset.train
        window, order, order_epoch = LossWindow(self.device), None, None
        start, elapsed_before = time.perf_counter(), st.elapsed
        while True:
            if order_epoch != st.epoch:
                order, order_epoch = epoch_order(len(split), cfg.seed, st.epoch), st.epoch
            lr = learning_rate(cfg, st.step, self.horizon)
            batch, scalars = rank_batch(split, order, st, cfg, self.ctx), None
            if self.players is None:
                loss, grad_norm = self._step(*batch, lr)
            else:
                loss, grad_norm, scalars = self._players_step(*batch, lr)
            st.step += 1
            st.batch_in_epoch += 1
            if st.batch_in_epoch == self.steps_per_epoch:
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
            window.add(loss, grad_norm, st.step, scalars)
            st.elapsed = elapsed_before + time.perf_counter() - start
            # ranks may see a signal or the time budget at different steps: agree before acting
            signalled, done = self.ctx.any([signals.received is not None, self._budget_reached()])
            self._boundary(window, lr, last=signalled or done, interrupted=signalled and not done)
            st.elapsed = elapsed_before + time.perf_counter() - start
            self.log.advance()
            if signalled or done:
                if signalled and not done:
                    name = signal.Signals(signals.received).name if signals.received else "a signal"
                    self.log.write({"step": st.step, "event": "interrupted", "signal": name})
                    self.log.message(f"interrupted by {name} at step {st.step}; saved to {self.run_dir}")
                    return "interrupted"
                return "finished"

    def _boundary(self, window: LossWindow, lr: float, last: bool, interrupted: bool) -> None:
        """Between steps: check finiteness, validate, log and checkpoint when due."""
        cfg, st = self.config, self.state
        do_eval = st.step % cfg.eval_every == 0 or (last and not interrupted)
        do_log = do_eval or last or st.step % cfg.log_every == 0
        do_save = last or st.step % cfg.checkpoint_every == 0
        if not (do_log or do_save):
            return
        bad = window.first_non_finite(self.ctx)
        if bad is not None:
            self._fail(bad)
        record = None
        if do_log:
            summary = window.summary(self.ctx, cfg.batch_size)
            self.images, self.seconds = self.images + summary["images"], self.seconds + summary["seconds"]
            st.loss = summary["loss"]
            record = {
                "step": st.step,
                "epoch": self._epoch(),
                "loss": st.loss,
                "lr": lr,
                "grad_norm": summary["grad_norm"],
                "images_per_sec": summary["images"] / summary["seconds"],
                "elapsed": st.elapsed,
            }
            if self.players is not None:  # each player's own lr, and the model's named scalars
                del record["lr"]
                record["lrs"] = {name: lr * c.lr / cfg.lr for name, c in self.player_configs.items()}
                record["scalars"] = summary["scalars"]
        began = time.perf_counter()
        if do_eval:
            st.valid = self._validate()
            if st.valid is not None:
                metric, score = validation_score(st.valid)
                if math.isfinite(score) and (st.best_valid is None or score < st.best_valid):
                    st.best_valid = score
                    if self.keep_best:
                        self._save_best(metric, score)
                record["valid"] = st.valid
        if record is not None:
            self.log.write(record)
        if do_save:
            self._save()
        window.exclude(time.perf_counter() - began)

    def _fail(self, bad_step: int) -> None:
        where = (
            f"the checkpoint in {self.run_dir} (step {self.saved_step}) is the last good state"
            if self.saved_step is not None
            else "no checkpoint was written"
        )
        message = (
            f"non-finite loss or gradient norm at step {bad_step}; nothing was saved after it, {where}. "
            "Try a lower lr, grad_clip, or check the model and data."
        )
        self.log.write({"step": self.state.step, "event": "error", "error": message})
        raise NonFiniteLossError(message)
