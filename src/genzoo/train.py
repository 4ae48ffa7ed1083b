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

import os
from pathlib import Path

from genzoo.data.base import ImageDataset
from genzoo.distributed import Distributed, select_device
from genzoo.errors import UsageError
from genzoo.models.base import checked_inputs
from genzoo.runlock import run_lock
from genzoo.train_checkpoint import CHECKPOINT_FILE, TrainState
from genzoo.train_config import TrainConfig
from genzoo.train_loop import NonFiniteLossError, Run
from genzoo.train_setup import TrainingLoss

__all__ = ["train", "TrainConfig", "TrainState", "TrainingLoss", "NonFiniteLossError", "CHECKPOINT_FILE"]


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
    check_levels(dataset)
    device = select_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    with run_lock(run_dir, enabled=int(os.environ.get("RANK", "0")) == 0):
        ctx, run, failed = Distributed.from_env(device), None, True
        try:
            run = Run(model, dataset, Path(run_dir), config, ctx, device, data_info)
            run.setup(resume, overrides)
            with checked_inputs():  # the images were checked once above: no range check (sync) per batch
                result = run.run()
            failed = False
            return result
        finally:
            if run is not None:
                run.loss_module = None  # the DDP wrapper holds the process group: free it before the group
            ctx.close(synchronize=not failed)


def check_levels(dataset: ImageDataset) -> None:
    """Every image of every split is in [0, levels) (so that the models need not check each batch)."""
    for name in ("train", "valid", "test"):
        split = dataset.split(name)
        if split.draws_randomly:  # its batches are drawn in range (e.g. binarized afresh)
            continue
        images = split.images
        if images.numel() and (int(images.min()) < 0 or int(images.max()) >= dataset.levels):
            raise UsageError(f"{dataset.name}'s {name} split has values outside [0, {dataset.levels})")


def check_model_fits(model, dataset: ImageDataset) -> None:
    if tuple(model.image_shape) != tuple(dataset.image_shape) or model.levels != dataset.levels:
        raise UsageError(
            f"the model is built for images {tuple(model.image_shape)} with {model.levels} levels, "
            f"but {dataset.name} has {tuple(dataset.image_shape)} with {dataset.levels} levels"
        )
    if model.conditional and dataset.train.labels is None:
        raise UsageError(f"the model is class-conditional but {dataset.name} has no labels")
