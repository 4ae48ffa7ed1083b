"""torch.distributed plumbing for the trainer: one process per device, launched by ``torchrun``.

Nothing here launches processes: ``torchrun`` starts them and sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; ``Distributed.from_env`` joins the process group they describe (NCCL for CUDA, gloo for
CPU). Decisions taken on the CPU side (stop on a signal, stop on a time budget) travel over a gloo group
so that they never force a GPU synchronization. Also here: the per-process random state, which the
checkpoint stores for every rank so that a resumed run draws the same numbers as an uninterrupted one.

Two-player models (GANs) are not wrapped in ``DistributedDataParallel``: their ``train_step`` runs its
own alternating updates, and the trainer keeps a 2-process step equal to the 1-process step on the whole
global batch with three pieces from here:

- ``Distributed.average_gradients_``: each player's gradients are averaged over the ranks (one
  all-reduce of the flattened gradients per dtype) just before that player's ``optimizer.step()``.
- ``GlobalBatch``: a ``TorchFunctionMode`` active during ``train_step`` that makes per-rank code compute
  what one process computes on the global batch: random draws with a per-example leading dimension are
  drawn at the global size from a stream shared by all ranks and each rank keeps its rows; batch norm in
  training mode normalizes with the statistics of the global batch (a differentiable all-reduce).
- ``Distributed.broadcast_``: rank 0's weights and buffers go to every rank at the start.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA when available, else CPU. Under torchrun each process takes GPU ``local_rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


@dataclass
class Distributed:
    """This process's place in the job: rank, world size and the groups to talk over."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
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
        return cls(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            owns_group=owns,
            control=control,
        )

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

    def close(self) -> None:
        """Destroy the process group if this object created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


# Per-rank code that computes what one process computes on the global batch.

_SIZED_DRAWS = {torch.rand, torch.randn, torch.randint}  # size given as arguments
_LIKE_DRAWS = {torch.rand_like, torch.randn_like, torch.randint_like}  # size of the first argument
_DROPOUTS = {
    F.dropout: True,
    F.dropout1d: True,
    F.dropout2d: True,
    F.dropout3d: True,  # -> default training
    F.alpha_dropout: False,
    F.feature_alpha_dropout: False,
}
_OTHER_DRAWS = {
    torch.bernoulli,
    torch.multinomial,
    torch.normal,
    torch.poisson,
    torch.randperm,
    torch.Tensor.bernoulli,
    torch.Tensor.bernoulli_,
    torch.Tensor.uniform_,
    torch.Tensor.normal_,
    torch.Tensor.random_,
    torch.Tensor.exponential_,
    torch.Tensor.geometric_,
    torch.Tensor.log_normal_,
    torch.Tensor.cauchy_,
    torch.Tensor.multinomial,
}


class GlobalBatch(TorchFunctionMode):
    """While active on rank r of N, each holding rows [r*b, (r+1)*b) of a global batch of N*b examples:

    - ``torch.rand``/``randn``/``randint`` (and their ``_like`` forms) whose leading dimension is ``b``
      draw the global ``(N*b, ...)`` tensor and return rows [r*b, (r+1)*b). Every rank must start from
      the same random state (the trainer seeds two-player runs the same on every rank), so each rank's
      rows are exactly those a 1-process run draws for its examples, and the streams stay in step with it.
      Draws of another leading size are made as they are (the same on every rank, as in one process).
    - ``F.batch_norm`` in training mode (every ``nn.BatchNorm*``) uses the mean and variance of the global
      batch, summed over ranks by a differentiable all-reduce (so gradients, even the double backward of
      a gradient penalty, match one process); the running statistics get the same update on every rank.
    - other random functions (dropout, bernoulli, in-place fills, randperm, ...) raise: their draws could
      not match a 1-process run. Random numbers drawn by other means (an op the mode does not see, say
      inside a custom autograd function) are not covered.
    """

    def __init__(self, ctx: "Distributed", local_batch: int):
        super().__init__()
        self.ctx, self.local = ctx, int(local_batch)
        self.rows = slice(ctx.rank * self.local, (ctx.rank + 1) * self.local)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _SIZED_DRAWS:
            return self._sized_draw(func, args, kwargs)
        if func in _LIKE_DRAWS:
            first = args[0] if args else kwargs.get("input")
            if isinstance(first, torch.Tensor) and first.dim() >= 1 and first.shape[0] == self.local:
                whole = first.new_empty((self.ctx.world_size * self.local, *first.shape[1:]))
                rest = {k: v for k, v in kwargs.items() if k != "input"}
                return func(whole, *args[1:], **rest)[self.rows]
        elif func is F.batch_norm:
            return self._batch_norm(*args, **kwargs)
        elif func in _DROPOUTS:
            p, training = _argument(args, kwargs, 1, "p", 0.5), _argument(args, kwargs, 2, "training", _DROPOUTS[func])
            if training and p > 0:
                raise _unsupported(func)
        elif func in _OTHER_DRAWS:
            raise _unsupported(func)
        return func(*args, **kwargs)

    def _sized_draw(self, func, args, kwargs):
        if "out" in kwargs:
            raise _unsupported(func, " with out=")
        if "size" in kwargs:
            size, rebuild = kwargs["size"], lambda new: (args, {**kwargs, "size": new})
        elif func is torch.randint:  # randint(high, size) or randint(low, high, size)
            size, rebuild = args[-1], lambda new: ((*args[:-1], new), kwargs)
        elif len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
            size, rebuild = args[0], lambda new: ((new,), kwargs)
        else:
            size, rebuild = args, lambda new: (tuple(new), kwargs)
        size = tuple(size)
        if not size or size[0] != self.local:
            return func(*args, **kwargs)
        requires_grad = kwargs.pop("requires_grad", False)
        new_args, new_kwargs = rebuild((self.ctx.world_size * self.local, *size[1:]))
        out = func(*new_args, **new_kwargs)[self.rows]
        return out.detach().requires_grad_() if requires_grad else out

    def _batch_norm(self, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
        if not training:
            return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
        all_reduce = _SumOverRanks.apply
        dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16 (autocast) in fp32
        sums = all_reduce(torch.cat([xf.sum(dims), xf.new_full((1,), x.numel() // x.shape[1])]))
        count, mean = sums[-1], sums[:-1] / sums[-1]
        centered = xf - mean.reshape(shape)
        var = all_reduce(centered.square().sum(dims)) / count  # biased, as used for normalizing
        out = centered * torch.rsqrt(var + eps).reshape(shape)
        if weight is not None:
            out = out * weight.reshape(shape)
        if bias is not None:
            out = out + bias.reshape(shape)
        if running_mean is not None:
            with torch.no_grad():
                unbiased = var * (count / (count - 1).clamp(min=1))
                running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
                running_var.mul_(1 - momentum).add_(unbiased.detach().to(running_var.dtype), alpha=momentum)
        return out.to(x.dtype)


class _SumOverRanks(torch.autograd.Function):
    """A differentiable all-reduce (sum): the gradient of each rank's input is the sum over ranks of the
    gradients of the output, itself differentiable (for double backward)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(grad)


def _argument(args, kwargs, index: int, name: str, default):
    return args[index] if len(args) > index else kwargs.get(name, default)


def _unsupported(func, how: str = "") -> RuntimeError:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return RuntimeError(
        f"{name}{how} in a two-player train_step under DDP: only torch.rand/randn/randint "
        "(and their _like forms) can be drawn so that the ranks together match one process"
    )


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
