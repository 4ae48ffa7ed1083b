"""Deterministic baselines for super-resolution and colorization, beside the conditional generative models.

Every baseline maps condition images y (N, C', h, w) in [0, condition_levels) to a prediction of the image,
float intensities (N, C, H, W) in [0, 1] (level / (levels - 1)):

- ``nearest``: each low-resolution pixel repeated s x s times;
- ``bicubic``: bicubic interpolation (``torch.nn.functional.interpolate``, align_corners=False), clipped;
- ``gray``: colorization's "do nothing" baseline, the luminance copied into R, G and B;
- ``RegressionCNN``: a deterministic CNN trained with the L2 loss, the conditioning network of the
  generative models (``genzoo.nn.conditioning.ConditionNet``) with a linear 1x1 head, its predictions
  clipped to [0, 1] (a sigmoid head, as checkpoints written before 2026-12-01 have, can saturate for good:
  on 8-bit MNIST one such run predicted black everywhere after its features grew to ~300). Its optimum is the
  posterior mean E[x | y]: for a multi-modal posterior a blurred average of the possible images, the
  "regression to the mean" that a sample from p(x | y) avoids (Dahl et al. 2017, section 1).

``fit_regression`` trains the CNN for a time or step budget with Adam, checkpointing to a safetensors file
it resumes from.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.checkpoint import flatten_state, load_tensors, save_tensors, unflatten_state
from genzoo.nn.conditioning import ConditionNet

FORMAT = "genzoo-regression-cnn/1"


def condition_intensity(y: torch.Tensor, condition_levels: int) -> torch.Tensor:
    """Condition levels as float intensities in [0, 1]."""
    return y.double() / (condition_levels - 1)


def nearest(y: torch.Tensor, scale: int, condition_levels: int) -> torch.Tensor:
    """Nearest-neighbour up-sampling by ``scale`` (intensities in [0, 1])."""
    return condition_intensity(y, condition_levels).repeat_interleave(scale, 2).repeat_interleave(scale, 3)


def bicubic(y: torch.Tensor, scale: int, condition_levels: int) -> torch.Tensor:
    """Bicubic up-sampling by ``scale``, clipped to [0, 1]."""
    up = F.interpolate(
        condition_intensity(y, condition_levels), scale_factor=scale, mode="bicubic", align_corners=False
    )
    return up.clamp(0.0, 1.0)


def gray(y: torch.Tensor, condition_levels: int) -> torch.Tensor:
    """The luminance (N, 1, H, W) as a gray RGB image (N, 3, H, W)."""
    return condition_intensity(y, condition_levels).expand(-1, 3, -1, -1)


def to_levels(intensity: torch.Tensor, levels: int) -> torch.Tensor:
    """Intensities in [0, 1] rounded to integer images in [0, levels) (for binary data: thresholded at 1/2)."""
    return (intensity.clamp(0, 1) * (levels - 1)).round().long()


class RegressionCNN(nn.Module):
    """y -> E[x | y]: ``ConditionNet`` features, ReLU, 1x1 convolution to C channels (module docstring).

    ``output``: "linear" (trained unclipped, ``predict`` clips to [0, 1]) or "sigmoid" (the head of
    checkpoints written before 2026-12-01). ``spec`` holds the constructor arguments (saved with the
    weights by ``fit_regression``).
    """

    def __init__(
        self,
        image_shape,
        levels: int,
        condition_shape,
        condition_levels: int,
        channels: int = 32,
        blocks: int = 2,
        output: str = "linear",
    ):
        super().__init__()
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"output must be 'linear' or 'sigmoid', got {output!r}")
        self.output = output
        self.image_shape, self.levels = tuple(int(s) for s in image_shape), int(levels)
        self.condition_shape, self.condition_levels = tuple(int(s) for s in condition_shape), int(condition_levels)
        self.spec = {
            "image_shape": list(self.image_shape),
            "levels": self.levels,
            "condition_shape": list(self.condition_shape),
            "condition_levels": self.condition_levels,
            "channels": channels,
            "blocks": blocks,
            "output": output,
        }
        self.body = ConditionNet(self.condition_shape, condition_levels, self.image_shape[1:], channels, blocks)
        self.head = nn.Conv2d(channels, self.image_shape[0], 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Predicted intensities (N, C, H, W): in [0, 1] for a sigmoid head, unclipped for a linear one."""
        out = self.head(F.relu(self.body(y)))
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Squared error of the intensities, summed over subpixels, mean over images."""
        target = x.float() / (self.levels - 1)
        return ((self(y) - target) ** 2).flatten(1).sum(1).mean()

    @torch.no_grad()
    def predict(self, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Intensities (N, C, H, W) in [0, 1], float64, in batches, in eval mode."""
        was = self.training
        self.eval()
        out = torch.cat([self(y[i : i + batch_size].long()).double() for i in range(0, len(y), batch_size)])
        self.train(was)
        return out.clamp_(0.0, 1.0)


def stored_spec(meta: dict) -> dict:
    """The constructor arguments a checkpoint was written with (no "output": the sigmoid head of old files)."""
    return {"output": "sigmoid", **meta["spec"]}


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def fit_regression(
    model: RegressionCNN,
    dataset,
    checkpoint: str | Path | None = None,
    max_time: float | None = None,
    max_steps: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    eval_every: int = 500,
    log=None,
) -> dict:
    """Train ``model`` on ``dataset.train`` (images x, conditions y) with Adam until a budget is reached.

    With ``checkpoint``, resumes from it when it exists and saves to it every ``eval_every`` steps and at
    the end (weights, Adam's state, step, elapsed seconds, and the best validation weights, which are
    restored at the end). The batches of a resumed run are drawn afresh (seeded by the step), so a resumed
    run is a faithful continuation but not bit-identical to an uninterrupted one. ``log(dict)`` receives a
    line per validation. Returns {step, elapsed, valid_loss (best), train_loss}.
    """
    if max_time is None and max_steps is None:
        raise ValueError("give max_time or max_steps")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step, elapsed, best, best_state = 0, 0.0, math.inf, None
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.exists():
        tensors, meta = load_tensors(path)
        stored = stored_spec(meta)
        if {k: v for k, v in stored.items() if k != "output"} != {k: v for k, v in model.spec.items() if k != "output"}:
            raise ValueError(f"{path} holds an L2 CNN of another configuration: {stored}, not {model.spec}")
        model.output = model.spec["output"] = stored["output"]  # a checkpoint keeps the head it was trained with
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
        step, elapsed, best = meta["step"], meta["elapsed"], meta["best"]
        if "optimizer" in meta:
            optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
    generator = torch.Generator().manual_seed(seed + step)
    split, valid = dataset.train, dataset.valid
    window = []

    def validate() -> float:
        total = 0.0
        model.eval()
        with torch.no_grad():
            for i in range(0, len(valid), 256):
                x, y = valid.batch(torch.arange(i, min(i + 256, len(valid))))
                total += float(model.loss(x, y)) * len(x)
        model.train()
        return total / len(valid)

    def save() -> None:
        if path is None:
            return
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"best.{k}": v for k, v in (best_state or {}).items()})
        meta = {"format": FORMAT, "spec": model.spec, "step": step, "elapsed": elapsed, "best": best}
        meta["optimizer"] = flatten_state(optimizer.state_dict(), "optimizer", tensors)
        save_tensors(path, tensors, meta)

    model.train()
    start = time.perf_counter() - elapsed
    while (max_steps is None or step < max_steps) and (max_time is None or elapsed < max_time):
        x, y = split.batch(torch.randint(len(split), (batch_size,), generator=generator))
        loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append(float(loss.detach()))
        step += 1
        elapsed = time.perf_counter() - start
        if step % eval_every == 0:
            score = validate()
            if score < best:
                best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
            if log is not None:
                log({"step": step, "elapsed": elapsed, "train_loss": sum(window) / len(window), "valid_loss": score})
            window = []
            save()
    score = validate()
    if score < best:
        best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
    save()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"step": step, "elapsed": elapsed, "valid_loss": best, "train_loss": sum(window) / max(len(window), 1)}


def load_regression(path: str | Path) -> RegressionCNN:
    """A ``RegressionCNN`` from a ``fit_regression`` checkpoint, with its best validation weights."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a regression-CNN checkpoint (format {meta.get('format')!r})")
    model = RegressionCNN(**stored_spec(meta))
    prefix = "best." if any(k.startswith("best.") for k in tensors) else "model."
    model.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    return model.eval()
