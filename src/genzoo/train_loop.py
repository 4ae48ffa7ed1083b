"""The training loop of one run: steps, log lines, validation, checkpoints, budgets and signals."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time

import torch

from genzoo.distributed import gather_rng_states
from genzoo.errors import TrainingError
from genzoo.evaluate import validation_metrics
from genzoo.optim import learning_rate
from genzoo.runlog import LossWindow, RunLog, StopSignals
from genzoo.train_batches import epoch_order, rank_batch
from genzoo.train_checkpoint import jsonable, save_best, save_checkpoint
from genzoo.train_setup import RunSetup

DIVERGED_WEIGHT = 1e8  # a parameter larger than this in magnitude: the run diverged


class NonFiniteLossError(TrainingError, FloatingPointError):
    """The loss, the gradient norm or the weights became NaN/inf or exploded; nothing was saved after the
    last good step."""


class Run(RunSetup):
    """A set-up run (``RunSetup``) and its loop."""

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
        scalars = {
            k: v.detach().reshape(()) if torch.is_tensor(v) else torch.tensor(float(v)) for k, v in returned.items()
        }
        if self.ctx.enabled:  # each rank's means over its slice -> the means over the global batch
            means = self.ctx.sum_(torch.stack([v.float() for v in scalars.values()])) / self.ctx.world_size
            scalars = dict(zip(scalars, means.unbind()))
        loss = scalars.pop("loss", None)
        loss = next(iter(scalars.values())) if loss is None else loss
        norms = list(self.grad_norms.values())
        if len(norms) == 1:
            grad_norm = norms[0]
        else:
            grad_norm = torch.stack(norms).norm() if norms else torch.zeros((), device=self.device)
            scalars.update({f"grad_norm/{name}": n.detach() for name, n in self.grad_norms.items()})
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
