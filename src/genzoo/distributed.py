"""torch.distributed plumbing for the trainer: one process per device, launched by ``torchrun``.

Nothing here launches processes: ``torchrun`` starts them and sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; ``Distributed.from_env`` joins the process group they describe (NCCL for CUDA, gloo for
CPU). Decisions taken on the CPU side (stop on a signal, stop on a time budget) travel over a gloo group
so that they never force a GPU synchronization. Also here: the per-process random state, which the
checkpoint stores for every rank so that a resumed run draws the same numbers as an uninterrupted one.

Models whose ``train_step`` makes several backward passes (GANs) are not wrapped in
``DistributedDataParallel``: ``Distributed.average_gradients_`` averages each optimizer's gradients over
the ranks (one all-reduce of the flattened gradients per dtype) just before its ``step()``, and
``Distributed.broadcast_`` sends rank 0's weights and buffers to every rank at the start.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from genzoo.errors import UsageError


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA when available, else CPU. Under torchrun each process takes GPU ``local_rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} requested but CUDA is not available (this torch build or machine)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


@dataclass
class Distributed:
    """This process's place in the job: rank, world size and the groups to talk over."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # True when this object initialized the process group (and must destroy it)
    control: Any = None  # gloo group for CPU tensors; None means the default group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """Join the torchrun job described by the environment, or a 1-process 'job' without one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        control = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), owns_group=owns, control=control)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks of a tensor on this process's device."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def min_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place minimum over ranks of a tensor on this process's device."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def any(self, flags: list[bool]) -> list[bool]:
        """Element-wise OR of CPU-side flags over ranks (so every rank takes the same decision)."""
        if not self.enabled:
            return list(flags)
        tensor = torch.tensor([int(f) for f in flags], dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.control)
        return [bool(v) for v in tensor.tolist()]

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """In-place: rank ``src``'s values of a tensor on this process's device, on every rank."""
        if self.enabled:
            dist.broadcast(tensor, src)
        return tensor

    def average_gradients_(self, params) -> None:
        """Replace every gradient of ``params`` by its mean over the ranks (one all-reduce per dtype).

        Parameters without a gradient are skipped: they must be the same on every rank (they are when
        every rank runs the same code), as all-reduces pair up by order.
        """
        if not self.enabled:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is not None:
                by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a CPU tensor of the same shape on every rank, in rank order."""
        if not self.enabled:
            return [tensor]
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor.contiguous(), group=self.control)
        return out

    def close(self, synchronize: bool = True) -> None:
        """Destroy the process group if this object created it.

        ``synchronize``: first wait for every rank (a rank that tears gloo down while a peer still talks to
        it aborts the peer); False on the way out of an error, when the peers may never arrive."""
        if self.owns_group and dist.is_initialized():
            if synchronize:
                dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def exit_process(code: int) -> NoReturn:
    """End the process with ``code``; a process started by torchrun skips the interpreter's finalization.

    After a run whose model DDP wrapped, the gloo process group outlives ``destroy_process_group`` (held
    from C++), and its threads, torn down during finalization, now and then abort the finished process
    (SIGABRT, "terminate called without an active exception"): torchrun then reports a run that completed
    and saved everything as failed. Everything of ours is written and closed by then, so a launched
    process flushes its streams and leaves at once."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


# Per-process random state, as tensors (the checkpoint never pickles).


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch/CUDA/numpy/Python generator states as a flat dict of CPU tensors."""
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    _, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": torch.tensor([np_pos, np_has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_gauss], dtype=torch.float64),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": torch.tensor([math.nan if py_gauss is None else py_gauss], dtype=torch.float64),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(state["torch"].to(torch.uint8))
    pos, has_gauss = state["numpy_pos"].tolist()
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, float(state["numpy_gauss"][0]))
    )
    gauss = float(state["python_gauss"][0])
    random.setstate((3, tuple(state["python"].tolist()), None if math.isnan(gauss) else gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].to(torch.uint8), device)


def gather_rng_states(ctx: Distributed, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """``rng_state`` of every rank, in rank order (a collective: every rank must call it)."""
    mine = rng_state(device)
    gathered = {key: ctx.gather(value) for key, value in mine.items()}
    return [{key: gathered[key][r] for key in mine} for r in range(ctx.world_size)]
