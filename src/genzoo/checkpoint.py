"""Checkpoints: tensors in safetensors, everything else as JSON in the same file's metadata.

Nothing here ever unpickles: a ``torch.save``/pickle file passed as a checkpoint is refused with a
clear message. Writes are atomic (temporary file + rename), so an interrupted save never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from genzoo.atomic import atomic_path
from genzoo.errors import CheckpointError, UsageError

METADATA_KEY = "genzoo"
MODEL_FILE = "model.safetensors"  # a run's last weights
BEST_FILE = "model_best.safetensors"  # a run's weights at its best validation score (early stopping)
WEIGHTS = ("last", "best", "auto")  # which weights of a run directory ``load`` reads


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and JSON ``metadata`` to one safetensors file."""
    # clone: safetensors refuses tensors that share memory (tied weights, expanded views)
    contiguous = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(contiguous, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
        except SafetensorError as err:  # e.g. "No space left on device"
            raise OSError(str(err)) from None


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    """Explain why ``path`` is not a safetensors file; pickles get a message of their own."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" or head == b"PK":
        return CheckpointError(
            f"{path} is a pickle/torch.save file; genzoo only loads safetensors checkpoints "
            "and never unpickles (pickles can run arbitrary code)"
        )
    return CheckpointError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated): {err}")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a file written by ``save_tensors``, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _unreadable(path, err) from None
    if raw is None:
        raise CheckpointError(
            f"{path} is a safetensors file but not a genzoo checkpoint (no '{METADATA_KEY}' metadata)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} has unreadable metadata: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has forged or corrupt metadata (a JSON {type(meta).__name__}, not an object)")
    return meta


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by ``save_tensors``: (tensors, metadata). Only safetensors is ever parsed."""
    metadata = read_metadata(path)  # checks the file and its genzoo metadata first
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _unreadable(Path(path), err) from None
    return tensors, metadata


# Nested state (optimizer state dicts, RNG states) <-> flat tensors + a JSON skeleton.


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in ``obj`` by a reference, storing it in ``tensors``; returns JSON-able data."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"cannot serialize dict keys at {prefix}")
        return {"__dict__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot serialize {type(obj).__name__} at {prefix}")


def unflatten_state(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``flatten_state``."""
    if isinstance(data, dict):
        if "__tensor__" in data:
            return tensors[data["__tensor__"]]
        if "__tuple__" in data:
            return tuple(unflatten_state(v, tensors) for v in data["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in data["__dict__"]}
    if isinstance(data, list):
        return [unflatten_state(v, tensors) for v in data]
    return data


# Models.


def save_model(
    path: str | os.PathLike,
    model,
    ema_state: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save weights (and EMA weights, if any) with the model's config; ``extra`` is free JSON (data, results)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema_state is not None:
        tensors.update({f"ema.{k}": v for k, v in ema_state.items()})
    save_tensors(
        path,
        tensors,
        {"format": "genzoo-model/1", "model": model.config, "has_ema": ema_state is not None, **(extra or {})},
    )


def resolve_model_file(path: str | os.PathLike, weights: str = "last") -> Path:
    """The model file that ``load(path, weights=...)`` reads.

    A run directory holds the last weights (``model.safetensors``) and, when it validated and kept
    them, the best-validation weights (``model_best.safetensors``): ``weights`` = "last", "best" (an
    error if there are none) or "auto" (best when present, else last). A file is read as it is
    ("best" then requires it to hold best-validation weights, checked by ``load``).
    """
    if weights not in WEIGHTS:
        raise UsageError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    path = Path(path)
    if not path.is_dir():
        return path
    best = path / BEST_FILE
    if weights == "best" and not best.is_file():
        raise CheckpointError(
            f"{path} has no best-validation weights ({BEST_FILE}): the run never validated, or "
            "trained with keep_best off or a model that is not selected by validation; "
            "use the last weights"
        )
    return best if weights == "best" or (weights == "auto" and best.is_file()) else path / MODEL_FILE


def describe_weights(meta: dict[str, Any], note: str = "") -> str:
    """A short label of the weights a model file holds, e.g. 'best (step 12000, valid nll_nats 95.3124)'
    or 'last (step 30000)'; ``note`` is appended inside the parentheses."""
    best = meta.get("best")
    if isinstance(best, dict):
        parts = [f"step {best.get('step')}", f"valid {best.get('metric', 'score')} {float(best.get('score')):.6g}"]
        head = "best"
    else:
        parts = [f"step {meta['step']}"] if meta.get("step") is not None else []
        head = "last"
    parts += [note] if note else []
    return f"{head} ({', '.join(parts)})" if parts else head


def load(path: str | os.PathLike, *, weights: str = "auto", ema: bool = True, device: str | torch.device = "cpu"):
    """Load a model saved by genzoo: a run directory or a ``.safetensors`` file.

    From a run directory, ``weights`` picks the file: "auto" (the default, as the CLI: the best-validation
    weights when the run kept them, else the last), "last" (``model.safetensors``, the weights at the end
    of training) or "best" (``model_best.safetensors``, the weights at the best validation score: the
    early-stopped model). ``model.checkpoint_info["weights"]`` says which were loaded.
    Returns the model in eval mode with its EMA (Polyak-averaged) weights when the file has them and
    ``ema`` is true. ``model.checkpoint_info`` holds the file's other metadata (dataset, results), the
    file read ("file") and a label of its weights ("weights", see ``describe_weights``).
    """
    from genzoo.registry import create

    file = resolve_model_file(path, weights)
    tensors, meta = load_tensors(file, device="cpu")
    if meta.get("format") != "genzoo-model/1" or "model" not in meta:
        raise CheckpointError(f"{file} is not a genzoo model file (format {meta.get('format')!r})")
    if weights == "best" and not isinstance(meta.get("best"), dict):
        raise CheckpointError(f"{file} does not hold best-validation weights; use weights='last'")
    config = meta["model"]
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise CheckpointError(f"{file} has forged or corrupt metadata: no model name in its config")
    config = dict(config)
    name = config.pop("name")
    try:
        model = create(name, **config)
    except (UsageError, TypeError) as err:
        raise CheckpointError(f"{file} has a model config genzoo cannot build: {err}") from None
    which = "ema." if ema and meta.get("has_ema") else "model."
    state = {k[len(which) :]: v for k, v in tensors.items() if k.startswith(which)}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{file} does not match its model config: {err}") from None
    fell_back = weights == "auto" and Path(path).is_dir() and file.name == MODEL_FILE
    label = describe_weights(meta, "no best-validation weights saved" if fell_back else "")
    model.checkpoint_info = {
        **{k: v for k, v in meta.items() if k not in ("model",)},
        "file": str(file),
        "weights": label,
    }
    return model.to(device).eval()
