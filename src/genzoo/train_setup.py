"""Setting up one training run: optimizers, EMA, the DDP-wrapped loss, a fresh start or a resume."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from genzoo.atomic import ensure_directory, remove_stale_temporaries
from genzoo.distributed import seed_everything
from genzoo.ema import EMA
from genzoo.errors import UsageError
from genzoo.optim import make_optimizer, optimizer_config, optimizer_groups, step_limit
from genzoo.train_checkpoint import CHECKPOINT_FILE, Restored, TrainState, adopt_best_file, jsonable, restore_run


class TrainingLoss(nn.Module):
    """``forward(x, y, step) = model.training_loss(x, y, step)``: what DDP wraps (it hooks ``forward``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        return self.model.training_loss(x, y, step)


class RunSetup:
    """One call of ``train``: its objects (optimizers with their step hooks, EMA, the DDP-wrapped loss),
    built fresh or restored from the run's checkpoint. ``genzoo.train_loop.Run`` adds the loop."""

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
        path = self.run_dir / CHECKPOINT_FILE
        resumed = resume and path.exists()
        if resumed:
            restored = restore_run(path, model, self.dataset, self.optimizers, self.group_configs, cfg, overrides,
                                   ctx.rank, self.device)  # fmt: skip
            self.state, self.saved_step = restored.state, restored.state.step
        else:
            restored = Restored(self.state)
            seed_everything(cfg.seed + ctx.rank)
            model.init_from_data(self.dataset.train)
        self.changes, self.window_state, ema_state = restored.changes, restored.window, restored.ema_state
        if ctx.is_main:
            self.best_step = adopt_best_file(self.run_dir, model, resumed, self.state)
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
        clip = self.config.grad_clip
        average = self.ctx.enabled and self.model.gradient_sync == "per-optimizer"

        def hook(optimizer, args, kwargs):
            if average:
                self.ctx.average_gradients_(params)
            if clip is not None and not all(group.get("fused") for group in optimizer.param_groups):
                self.grad_norms[name] = nn.utils.clip_grad_norm_(params, clip)
                return
            grads = [p.grad for p in params if p.grad is not None]
            norm = nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
            self.grad_norms[name] = norm
            if clip is not None:  # clip_grad_norm_'s factor, applied by the fused step as it reads each gradient
                # (param_groups, not defaults, say whether the step is fused: a restored state sets them)
                optimizer.grad_scale = (norm + 1e-6).div(clip).clamp_(min=1.0)  # (no pass over them here)

        return hook
