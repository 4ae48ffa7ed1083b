"""What a training run writes and reads back: the resumable checkpoint and the best-weights file.

``checkpoint.safetensors`` holds the full training state (weights, EMA weights, every optimizer's
state, every rank's random state, the position in the data and the TrainConfig); ``model.safetensors``
the last weights and ``model_best.safetensors`` those at the best validation score (what
``genzoo.load`` reads). Every write is atomic (``genzoo.checkpoint.save_tensors``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

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
from genzoo.distributed import seed_everything, set_rng_state
from genzoo.optim import set_hyperparameters
from genzoo.train_config import config_from_json, resume_changes

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT = "genzoo-train/2"


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
    stale_validations: int = 0  # validations since the last new best (early stopping: ``patience``)


def jsonable(obj):
    return json.loads(json.dumps(obj))


def save_checkpoint(run_dir: Path, model, ema_state, optimizers: dict, config, state: TrainState, data_info: dict,
                    rngs: list[dict], world_size: int, window: dict | None = None) -> None:  # fmt: skip
    """Write checkpoint.safetensors and model.safetensors (the last weights) into ``run_dir``."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in (ema_state or {}).items()})
    meta = {
        "format": FORMAT,
        "model": jsonable(model.config),
        "train": asdict(config),
        "data": jsonable(data_info),
        "state": {**asdict(state), "window": window},  # the unfinished log window, for an exact record
        "has_ema": ema_state is not None,
        "world_size": world_size,
        "optimizers": flatten_state({n: o.state_dict() for n, o in optimizers.items()}, "optimizer", tensors),
        "rng": [flatten_state(r, f"rng.{i}", tensors) for i, r in enumerate(rngs)],
    }
    extra = {"data": data_info, "train": asdict(config), "step": state.step, "valid": state.valid}
    save_model(run_dir / MODEL_FILE, model, ema_state, extra=extra)
    save_tensors(run_dir / CHECKPOINT_FILE, tensors, meta)


def read_checkpoint(path: Path, model, image_shape, levels: int, dataset_name: str) -> tuple[dict, dict]:
    """(tensors, metadata) of a training checkpoint written for this model and this image format."""
    tensors, meta = load_tensors(path)
    hint = "use another run directory, or resume=False (--restart) to start over (and overwrite it)"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not a genzoo training checkpoint (format {found!r}); {hint}")
    saved = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    here = {"image_shape": list(image_shape), "levels": levels}
    if {k: saved.get(k) for k in here} != here:
        raise CheckpointError(
            f"{path} was trained on images {saved.get('image_shape')} with {saved.get('levels')} levels, "
            f"but {dataset_name} has {here['image_shape']} with {here['levels']} levels; {hint}"
        )
    theirs, ours = meta.get("model") if isinstance(meta.get("model"), dict) else {}, jsonable(model.config)
    if theirs != ours:
        diff = "; ".join(
            f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here"
            for k in sorted(set(theirs) | set(ours))
            if theirs.get(k) != ours.get(k)
        )
        raise CheckpointError(f"{path} belongs to a different model ({diff}); {hint}")
    return tensors, meta


def restore_model(model, tensors: dict, path: Path) -> dict | None:
    """Load the raw weights; returns the EMA weights stored beside them (or None)."""
    part = lambda prefix: {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(part("model."))
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match this model's weights: {err}") from None
    return part("ema.") or None


def restore_optimizers(optimizers: dict, meta: dict, tensors: dict, path: Path) -> None:
    states = unflatten_state(meta["optimizers"], tensors)
    if set(states) != set(optimizers):
        raise CheckpointError(f"{path} holds optimizers {sorted(states)}, this model trains {sorted(optimizers)}")
    for name, optimizer in optimizers.items():
        try:
            optimizer.load_state_dict(states[name])
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{path}: the {name!r} optimizer state does not fit this run ({err})") from None


def restore_rngs(meta: dict, tensors: dict) -> list[dict[str, torch.Tensor]]:
    return [unflatten_state(r, tensors) for r in meta["rng"]]


def stored_best(run_dir: Path, model) -> dict | None:
    """The "best" record of ``run_dir``'s best-weights file if it belongs to this model, else None."""
    path = run_dir / BEST_FILE
    try:
        meta = read_metadata(path)
    except CheckpointError:
        return None
    best = meta.get("best") if isinstance(meta, dict) else None
    if meta.get("model") != jsonable(model.config) or not isinstance(best, dict):
        return None
    return best if isinstance(best.get("score"), (int, float)) and isinstance(best.get("step"), int) else None


def save_best(run_dir: Path, model, ema_state, config, state: TrainState, data_info: dict, metric: str,
              score: float) -> None:  # fmt: skip
    """The weights just validated (raw and EMA, like model.safetensors) to model_best.safetensors."""
    best = {
        "step": state.step,
        "metric": metric,
        "score": score,
        "split": config.eval_split,
        "max_images": config.eval_max_images,
    }
    extra = {"data": data_info, "train": asdict(config), "step": state.step, "valid": state.valid, "best": best}
    save_model(run_dir / BEST_FILE, model, ema_state, extra=extra)


@dataclass
class Restored:
    """What ``restore_run`` brings back besides the weights and optimizer states it loads in place."""

    state: TrainState
    window: dict | None = None  # the unfinished log window
    ema_state: dict | None = None
    changes: dict = field(default_factory=dict)  # overridden options: {name: (stored, now)}


def restore_run(path: Path, model, dataset, optimizers: dict, group_configs: dict, config, overrides, rank: int,
                device) -> Restored:  # fmt: skip
    """Resume from checkpoint ``path``: check it belongs to this model and data and that ``config`` keeps
    its run-defining options (``resume_changes``), then load the weights and optimizer states in place,
    apply the config's hyperparameters, and restore this rank's random state (a rank the checkpoint did
    not have gets a fresh, distinct stream)."""
    tensors, meta = read_checkpoint(path, model, dataset.image_shape, dataset.levels, dataset.name)
    changes = resume_changes(config_from_json(meta["train"]), config, overrides)
    ema_state = restore_model(model, tensors, path)
    restore_optimizers(optimizers, meta, tensors, path)
    for name, optimizer in optimizers.items():  # an overridden weight decay or momentum
        set_hyperparameters(optimizer, group_configs[name])
    rngs = restore_rngs(meta, tensors)
    if rank < len(rngs):
        set_rng_state(rngs[rank], device)
    else:
        seed_everything(config.seed + rank + 1_000_003 * meta["state"]["step"])
    state = dict(meta["state"])
    window = state.pop("window", None)
    return Restored(TrainState(**state), window, ema_state if meta.get("has_ema") else None, changes)


def adopt_best_file(run_dir: Path, model, resumed: bool, state: TrainState) -> int | None:
    """A resumed run keeps the best-weights file of its own run, folds its score into
    ``state.best_valid`` and returns its step; a fresh run, or a file of another model or unreadable,
    deletes it (so that nothing scores stale weights) and returns None."""
    path = run_dir / BEST_FILE
    if not path.exists():
        return None
    best = stored_best(run_dir, model) if resumed else None
    if best is None:
        path.unlink()
        return None
    state.best_valid = best["score"] if state.best_valid is None else min(state.best_valid, best["score"])
    return best["step"]
