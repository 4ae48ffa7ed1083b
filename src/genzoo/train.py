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

What the trainer asks of a model is declared in ``genzoo.models.base`` (and nothing else): every step
is the model's ``train_step(batch, step, optimizers, loss_fn)``, by default one backward pass of
``training_loss`` and one optimizer step; a GAN makes its players' alternating updates. There is one
optimizer per entry of ``parameter_groups()`` (the run's config, updated by ``optimizer_options(name)``),
each with the scheduled learning rate and a step pre-hook that clips its gradient norm (``grad_clip``;
None: no clipping). At the start of a fresh run the model gets ``init_from_data(train split)``.

``batch_size`` is the global batch: each of N processes takes a contiguous 1/N slice. Gradients are
averaged over the processes by DistributedDataParallel around ``training_loss`` (``gradient_sync =
"ddp"``: then a step equals the 1-process step on the whole batch, up to float rounding, for models
whose loss draws no random numbers; DDP needs every parameter to get a gradient at every step) or, for
models whose ``train_step`` makes several backward passes (``"per-optimizer"``: GANs), in each
optimizer's step pre-hook, just before clipping. Each process draws its own random numbers (seeded
with seed + rank); batch norm uses SyncBatchNorm on GPUs and each process's statistics on CPUs. Rank 0
writes the files; logged values are means over the processes.

Everything lands in ``run_dir``: ``checkpoint.safetensors`` (the full training state, for resume),
``model.safetensors`` (the last weights: what ``genzoo.load(run_dir)`` reads), ``model_best.safetensors``
(below), ``log.jsonl`` and ``tb/`` (TensorBoard); see ``genzoo.train_checkpoint``.

Early stopping, as papers report it: with ``keep_best`` (the default) and a model that
``selects_by_validation``, each validation that improves on the best score so far (``nll_nats``, else the
mean ``loss``; lower is better) writes the evaluated weights to ``model_best.safetensors``. With
``patience`` P, training stops after P validations in a row without a new best; otherwise the budget
decides and the file keeps the best. A fresh run deletes a best file
left in ``run_dir``; a resumed run folds the file's score into ``best_valid``, so it never replaces the
file with worse weights.
SIGINT/SIGTERM finish the current step, save, and return with status "interrupted"; calling ``train``
again on the same ``run_dir`` continues exactly where it stopped: same batches, same random numbers,
same losses to the last bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from pathlib import Path

import torch
from torch import nn

from genzoo.atomic import ensure_directory, remove_stale_temporaries
from genzoo.checkpoint import BEST_FILE
from genzoo.data.base import ImageDataset
from genzoo.distributed import Distributed, gather_rng_states, seed_everything, select_device, set_rng_state
from genzoo.ema import EMA
from genzoo.errors import TrainingError, UsageError
from genzoo.evaluate import validation_metrics
from genzoo.optim import (
    learning_rate,
    make_optimizer,
    optimizer_config,
    optimizer_groups,
    set_hyperparameters,
    step_limit,
)
from genzoo.runlock import run_lock
from genzoo.runlog import LossWindow, RunLog, StopSignals
from genzoo.train_batches import epoch_order, rank_batch
from genzoo.train_checkpoint import (
    CHECKPOINT_FILE,
    TrainState,
    jsonable,
    read_checkpoint,
    restore_model,
    restore_optimizers,
    restore_rngs,
    save_best,
    save_checkpoint,
    stored_best,
)
from genzoo.train_config import TrainConfig, config_from_json, resume_changes

__all__ = ["train", "TrainConfig", "TrainState", "NonFiniteLossError", "CHECKPOINT_FILE"]


class NonFiniteLossError(TrainingError, FloatingPointError):
    """The loss, the gradient norm or the weights became NaN/inf or exploded; nothing was saved after the
    last good step."""


DIVERGED_WEIGHT = 1e8  # a parameter larger than this in magnitude: the run diverged


class TrainingLoss(nn.Module):
    """``forward(x, y, step) = model.training_loss(x, y, step)``: what DDP wraps (it hooks ``forward``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        return self.model.training_loss(x, y, step)


def train(
    model,
    dataset: ImageDataset,
    run_dir,
    config: TrainConfig,
    *,
    resume: bool = True,
    data_info: dict | None = None,
    overrides=(),
) -> dict:
    """Train ``model`` on ``dataset.train`` until a budget is reached or a signal arrives.

    Continues from ``run_dir/checkpoint.safetensors`` when ``resume`` and it exists. Returns a dict:
    status ("finished" | "interrupted"), step, epoch (float), elapsed (s), loss (last logged train loss,
    nats/example), valid (last validation metrics), best_valid, best_step (the step of the weights in
    model_best.safetensors, None without one), images_per_sec (this call, training only), and "signal"
    (its name) when interrupted.
    ``data_info`` is stored in model.safetensors so that the dataset can be named when the model is loaded.

    Resuming is strict: the checkpoint's training config is the contract. A run-defining option that
    differs (``genzoo.train_config.resume_changes``) is refused, unless named in ``overrides``; the change
    is then recorded in log.jsonl. Budgets, the device and similar session options may change freely.
    The run directory is locked for the call (``genzoo.runlock``): a second process is refused.
    """
    config.validate()
    check_model_fits(model, dataset)
    device = select_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    with run_lock(run_dir, enabled=int(os.environ.get("RANK", "0")) == 0):
        ctx, run = Distributed.from_env(device), None
        try:
            run = _Run(model, dataset, Path(run_dir), config, ctx, device, data_info)
            run.setup(resume, overrides)
            return run.run()
        finally:
            if run is not None:
                run.loss_module = None  # the DDP wrapper holds the process group: free it before the group
            ctx.close()


def check_model_fits(model, dataset: ImageDataset) -> None:
    if tuple(model.image_shape) != tuple(dataset.image_shape) or model.levels != dataset.levels:
        raise UsageError(
            f"the model is built for images {tuple(model.image_shape)} with {model.levels} levels, "
            f"but {dataset.name} has {tuple(dataset.image_shape)} with {dataset.levels} levels"
        )
    if model.conditional and dataset.train.labels is None:
        raise UsageError(f"the model is class-conditional but {dataset.name} has no labels")


class _Run:
    """One call of ``train``: the objects of a run and the steps of its loop."""

    def __init__(self, model, dataset, run_dir, config, ctx, device, data_info):
        self.model, self.dataset, self.run_dir, self.config = model, dataset, run_dir, config
        self.ctx, self.device = ctx, device
        info = data_info if data_info is not None else {"name": dataset.name}
        self.data_info = jsonable(dict(info, image_shape=list(dataset.image_shape), levels=dataset.levels))
        if config.batch_size % ctx.world_size:
            raise UsageError(f"batch_size {config.batch_size} is not divisible by {ctx.world_size} processes")
        self.steps_per_epoch = len(dataset.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise UsageError(f"batch_size {config.batch_size} exceeds the {len(dataset.train)} training images")
        self.limit = step_limit(config, self.steps_per_epoch)
        self.horizon = config.decay_steps or self.limit
        if config.schedule == "cosine" and self.horizon is None:
            raise UsageError("the cosine schedule needs decay_steps, max_steps or max_epochs")
        self.state, self.saved_step, self.images, self.seconds = TrainState(), None, 0, 0.0
        self.best_step = None  # the step of the weights in model_best.safetensors (rank 0)
        use_amp = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
        )
        self.keep_best = config.keep_best and model.selects_by_validation

    # -- setup ---------------------------------------------------------------------------------------
    def setup(self, resume: bool, overrides=()) -> None:
        """Build optimizers and EMA, restore a checkpoint or start a fresh run, wrap for DDP/compile."""
        cfg, model, ctx = self.config, self.model, self.ctx
        if ctx.enabled and self.device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device).train()
        if ctx.is_main:
            ensure_directory(self.run_dir)
            remove_stale_temporaries(self.run_dir)  # left by a process killed while writing
        self.groups = optimizer_groups(model)
        self.group_configs = {name: optimizer_config(model, name, cfg) for name in self.groups}
        self.optimizers, self.grad_norms = {}, {}
        for name, params in self.groups.items():
            self.optimizers[name] = make_optimizer(params, self.group_configs[name])
            self.optimizers[name].register_step_pre_hook(self._pre_step_hook(name, params))
        path, ema_state = self.run_dir / CHECKPOINT_FILE, None
        resumed = resume and path.exists()
        self.changes, self.window_state = {}, None
        if resumed:
            ema_state = self._restore(path, overrides)
        else:
            seed_everything(cfg.seed + ctx.rank)
            model.init_from_data(self.dataset.train)
            if ctx.is_main:
                (self.run_dir / BEST_FILE).unlink(missing_ok=True)  # stale weights of an earlier run
        self._adopt_best_file(resumed)
        per_optimizer = model.gradient_sync == "per-optimizer"
        if ctx.enabled and per_optimizer:  # no DDP wrapper to broadcast rank 0's weights: do it here
            for tensor in model.state_dict().values():
                ctx.broadcast_(tensor)
        self.ema = None if cfg.ema_decay is None else EMA(model, cfg.ema_decay)
        if self.ema is not None and ema_state:
            self.ema.load_state_dict(ema_state)
        module = TrainingLoss(model)
        if ctx.enabled and not per_optimizer:
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        if cfg.compile and per_optimizer:
            raise UsageError(f"{model.config.get('name')} trains with its own train_step: run it without compile")
        self.loss_module = torch.compile(module) if cfg.compile else module

    def _pre_step_hook(self, name: str, params: list):
        """Average optimizer ``name``'s gradients over the ranks (per-optimizer models), then clip them."""
        clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf  # inf: norm only
        average = self.ctx.enabled and self.model.gradient_sync == "per-optimizer"

        def hook(optimizer, args, kwargs):
            if average:
                self.ctx.average_gradients_(params)
            self.grad_norms[name] = nn.utils.clip_grad_norm_(params, clip)

        return hook

    def _restore(self, path: Path, overrides) -> dict | None:
        """Load weights, optimizers, random states and position; returns the EMA weights (or None)."""
        tensors, meta = read_checkpoint(
            path, self.model, self.dataset.image_shape, self.dataset.levels, self.dataset.name
        )
        self.changes = resume_changes(config_from_json(meta["train"]), self.config, overrides)
        ema_state = restore_model(self.model, tensors, path)
        restore_optimizers(self.optimizers, meta, tensors, path)
        for name, optimizer in self.optimizers.items():  # an overridden weight decay or momentum
            set_hyperparameters(optimizer, self.group_configs[name])
        rngs = restore_rngs(meta, tensors)
        if self.ctx.rank < len(rngs):
            set_rng_state(rngs[self.ctx.rank], self.device)
        else:  # more processes than when saved: a fresh, distinct stream for the new ranks
            seed_everything(self.config.seed + self.ctx.rank + 1_000_003 * meta["state"]["step"])
        state = dict(meta["state"])
        self.window_state = state.pop("window", None)
        self.state = TrainState(**state)
        self.saved_step = self.state.step
        return ema_state if meta.get("has_ema") else None

    def _adopt_best_file(self, resumed: bool) -> None:
        """Rank 0: a resumed run keeps the best-weights file of its own run and folds its score into
        ``best_valid``; a file of another model, or unreadable, is deleted (nothing scores stale weights)."""
        path = self.run_dir / BEST_FILE
        if not self.ctx.is_main or not path.exists():
            return
        best = stored_best(self.run_dir, self.model) if resumed else None
        if best is None:
            path.unlink()
            return
        st = self.state
        st.best_valid = best["score"] if st.best_valid is None else min(st.best_valid, best["score"])
        self.best_step = best["step"]

    # -- saving and validating -----------------------------------------------------------------------
    def _save(self, window: LossWindow) -> None:
        """Write checkpoint.safetensors and model.safetensors (rank 0; every rank must call)."""
        rngs = gather_rng_states(self.ctx, self.device)
        if self.ctx.is_main:
            ema_state = None if self.ema is None else self.ema.state_dict()
            save_checkpoint(self.run_dir, self.model, ema_state, self.optimizers, self.config, self.state,
                            self.data_info, rngs, self.ctx.world_size, window.state_dict())  # fmt: skip
        self.saved_step = self.state.step
        self.ctx.barrier()

    def _save_best(self, metric: str, score: float) -> None:
        if self.ctx.is_main:
            ema_state = None if self.ema is None else self.ema.state_dict()
            save_best(self.run_dir, self.model, ema_state, self.config, self.state, self.data_info, metric, score)
            self.best_step = self.state.step

    def _validate(self) -> dict | None:
        """Validation metrics with the EMA weights if any; the training random streams are untouched."""
        cfg = self.config
        split = self.dataset.split(cfg.eval_split)
        if cfg.eval_max_images is not None:
            n = cfg.eval_max_images
            labels = None if split.labels is None else split.labels[:n]
            split = dataclasses.replace(split, images=split.images[:n], labels=labels)
        if len(split) == 0:
            return None
        cuda = [self.device.index] if self.device.type == "cuda" else []
        ema = self.ema.applied_to(self.model) if self.ema is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=cuda), ema:
            metrics = validation_metrics(self.model, split, cfg.eval_batch_size, cfg.seed)
        self.model.train()
        return metrics

    # -- the loop ------------------------------------------------------------------------------------
    def _step(self, batch, lr: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """One ``train_step``; returns (loss, gradient norm, the named scalars) as device tensors."""
        x = batch.x.to(self.device, non_blocking=True)
        y = None if batch.y is None else batch.y.to(self.device, non_blocking=True)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:  # the schedule, relative to each optimizer's own lr
                group["lr"] = lr * self.group_configs[name].lr / self.config.lr
        self.grad_norms = {}
        with self.autocast():
            returned = self.model.train_step(type(batch)(x, y), self.state.step, self.optimizers, self.loss_module)
        if not returned:
            raise ValueError(f"{type(self.model).__name__}.train_step must return a dict of scalar losses")
        scalars = {k: torch.as_tensor(v, device=self.device).detach().float().reshape(()) for k, v in returned.items()}
        if self.ctx.enabled:  # each rank's means over its slice -> the means over the global batch
            means = self.ctx.sum_(torch.stack(list(scalars.values()))) / self.ctx.world_size
            scalars = dict(zip(scalars, means.unbind()))
        loss = scalars.pop("loss", None)
        loss = next(iter(scalars.values())) if loss is None else loss
        norms = [n.float() for n in self.grad_norms.values()]
        grad_norm = torch.stack(norms).norm() if norms else torch.zeros((), device=self.device)
        if len(self.grad_norms) > 1:
            scalars.update({f"grad_norm/{name}": n.detach().float() for name, n in self.grad_norms.items()})
        if self.ema is not None:
            self.ema.update(self.state.step + 1)
        return loss, grad_norm, scalars

    def _budget_reached(self) -> bool:
        st, cfg = self.state, self.config
        return (
            (self.limit is not None and st.step >= self.limit)
            or (cfg.max_time is not None and st.elapsed >= cfg.max_time)
            or (cfg.patience is not None and st.stale_validations >= cfg.patience)
        )

    def _epoch(self) -> float:
        return self.state.epoch + self.state.batch_in_epoch / self.steps_per_epoch

    def run(self) -> dict:
        """Install the signal handlers around the loop and report the result."""
        signals = StopSignals()
        self.log = RunLog(self.run_dir, self.state.step, self.limit, self.config, self.ctx.is_main)
        if self.changes:
            changes = {k: {"stored": old, "now": new} for k, (old, new) in self.changes.items()}
            self.log.write({"step": self.state.step, "event": "override", "changes": jsonable(changes)})
        signals.install()
        try:
            status = "finished" if self._budget_reached() else self._loop(signals)
        finally:
            signals.restore()
            self.log.close()
        st = self.state
        interrupted = status == "interrupted" and signals.received is not None
        return {
            **({"signal": signal.Signals(signals.received).name} if interrupted else {}),
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
        cfg, st, split, ctx = self.config, self.state, self.dataset.train, self.ctx
        window, order, order_epoch = LossWindow(self.device), None, None
        window.load_state_dict(self.window_state)
        start, elapsed_before = time.perf_counter(), st.elapsed
        while True:
            if order_epoch != st.epoch:
                order, order_epoch = epoch_order(len(split), cfg.seed, st.epoch), st.epoch
            lr = learning_rate(cfg, st.step, self.horizon)
            batch = rank_batch(split, order, st.batch_in_epoch, st.step, cfg.batch_size, cfg.seed,
                               ctx.rank, ctx.world_size)  # fmt: skip
            loss, grad_norm, scalars = self._step(batch, lr)
            st.step += 1
            st.batch_in_epoch += 1
            if st.batch_in_epoch == self.steps_per_epoch:
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
            window.add(loss, grad_norm, st.step, scalars)
            st.elapsed = elapsed_before + time.perf_counter() - start
            # ranks may see a signal or the time budget at different steps: agree before acting
            signalled, done = ctx.any([signals.received is not None, self._budget_reached()])
            done = self._boundary(window, lr, last=signalled or done, interrupted=signalled and not done) or done
            st.elapsed = elapsed_before + time.perf_counter() - start
            self.log.advance()
            if signalled and not done:
                name = signal.Signals(signals.received).name if signals.received else "a signal"
                self.log.message(f"interrupted by {name} at step {st.step}; saved to {self.run_dir}")
                return "interrupted"
            if done:
                return "finished"

    def _boundary(self, window: LossWindow, lr: float, last: bool, interrupted: bool) -> bool:
        """Between steps: check finiteness, validate, log and checkpoint when due. Returns True when early
        stopping ends the run here (``patience`` validations without a new best; then it also saves)."""
        cfg, st = self.config, self.state
        # an interruption saves (with the unfinished log window) but validates and logs nothing, so the
        # resumed run writes the lines of the uninterrupted one
        do_eval = st.step % cfg.eval_every == 0 or (last and not interrupted)
        do_log = do_eval or (last and not interrupted) or st.step % cfg.log_every == 0
        do_save = last or st.step % cfg.checkpoint_every == 0
        if not (do_log or do_save):
            return False
        bad = window.first_non_finite(self.ctx)
        if bad is not None:
            self._fail(f"non-finite loss or gradient norm at step {bad}")
        diverged = self._diverged()
        if diverged:
            self._fail(diverged)
        record = timing = None
        if do_log:
            summary = window.summary(self.ctx, cfg.batch_size)
            self.images, self.seconds = self.images + summary["images"], self.seconds + summary["seconds"]
            st.loss = summary["loss"]
            record = {"step": st.step, "epoch": self._epoch(), "loss": st.loss}
            if list(self.optimizers) == ["model"]:
                record["lr"] = lr
            else:  # each optimizer's own lr
                record["lrs"] = {name: lr * c.lr / cfg.lr for name, c in self.group_configs.items()}
            record["grad_norm"] = summary["grad_norm"]
            if summary["scalars"]:
                record["scalars"] = summary["scalars"]
            timing = {"step": st.step, "elapsed": st.elapsed, "images_per_sec": summary["images"] / summary["seconds"]}
        began = time.perf_counter()
        if do_eval:
            st.valid = self._validate()
            if st.valid is not None:
                metric = "nll_nats" if "nll_nats" in st.valid else "loss"
                score = float(st.valid[metric])
                if math.isfinite(score) and (st.best_valid is None or score < st.best_valid):
                    st.best_valid, st.stale_validations = score, 0
                    if self.keep_best:
                        self._save_best(metric, score)
                else:
                    st.stale_validations += 1
                record["valid"] = st.valid
        stop = cfg.patience is not None and st.stale_validations >= cfg.patience and not last
        if stop:
            record["event"] = "early stopping"
            do_save = True
        if record is not None:
            if do_eval:
                timing["valid_seconds"] = time.perf_counter() - began
            self.log.write(record, timing)
        if do_save:
            self._save(window)
        window.exclude(time.perf_counter() - began)
        return stop

    def _diverged(self) -> str | None:
        """Why the weights cannot be trusted (a non-finite or exploded parameter), or None. One host sync
        per log line or checkpoint; a loss can stay finite while the weights blow up (an RBM at a huge lr)."""
        params = [p.detach() for p in self.model.parameters()]
        if not params:
            return None
        worst = float(torch.stack([p.abs().max() if p.numel() else p.new_zeros(()) for p in params]).max())
        if not math.isfinite(worst) or worst > DIVERGED_WEIGHT:
            return f"the weights diverged by step {self.state.step} (largest |weight| {worst:.3g})"
        return None

    def _fail(self, what: str) -> None:
        where = (
            f"the checkpoint in {self.run_dir} (step {self.saved_step}) is the last good state"
            if self.saved_step is not None
            else "no checkpoint was written"
        )
        message = (
            f"{what}; nothing was saved after it, {where}. Try a lower lr, grad_clip, or check the model and data."
        )
        self.log.write({"step": self.state.step, "event": "error", "error": message})
        raise NonFiniteLossError(message)
