"""What a run directory holds, read without loading the model, and the numbers a report prints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class ReportError(ValueError):
    """The report cannot be made at all (no such run directory); partial runs give notes, not errors."""


# -- reading a run directory -------------------------------------------------------------------------------


def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else None
    except (OSError, ValueError) as err:
        notes.append(f"{path.name} is unreadable ({err})")
        return None


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(record, dict):
                records.append(record)
    return records


def read_run(run_dir) -> dict[str, Any]:
    """Everything a report reads from a run directory, without loading the model: results.json, the
    metadata of its model files and checkpoint, log.jsonl merged with timing.jsonl (by step), pictures."""
    from genzoo.checkpoint import BEST_FILE, MODEL_FILE, read_metadata

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"no run directory at {run_dir}")
    notes: list[str] = []
    meta = {}
    for file in (BEST_FILE, MODEL_FILE, "checkpoint.safetensors"):
        if (run_dir / file).is_file():
            try:
                meta[file] = read_metadata(run_dir / file)
            except ValueError as err:
                notes.append(str(err))
    first = next((m for m in meta.values() if isinstance(m.get("model"), dict)), {})
    timing = {r["step"]: r for r in _read_jsonl(run_dir / "timing.jsonl") if "step" in r}
    log = [{**timing.get(r.get("step"), {}), **r} for r in _read_jsonl(run_dir / "log.jsonl")]
    results = _read_json(run_dir / "results.json", notes)
    pictures = sorted(
        p
        for p in run_dir.rglob("*.png")
        if not any(part.startswith(".") or part == "tb" for part in p.relative_to(run_dir).parts)
        and len(p.relative_to(run_dir).parts) <= 3
    )
    train = (meta.get("checkpoint.safetensors") or first).get("train") or first.get("train") or {}
    return {
        "dir": run_dir,
        "name": run_dir.resolve().name,
        "results": results,
        "meta": meta,
        "model": first.get("model") or {},
        "data": first.get("data") or {},
        "train": train,
        "fit": (meta.get(MODEL_FILE) or {}).get("fit"),
        "has_ema": first.get("has_ema"),
        "log": log,
        "pictures": pictures,
        "notes": notes,
    }


# -- numbers and text --------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return "nan" if not math.isfinite(value) else f"{value:.{digits}g}" if abs(value) >= 1e5 else f"{value:.{digits}f}"


def _pm(r: dict, key: str, digits: int = 3) -> str:
    value, err = r.get(key), r.get(f"{key}_stderr")
    if value is None:
        return "—"
    return f"{_num(value, digits)} ± {_num(err, digits)}" if err is not None else _num(value, digits)


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    if value < 1:
        return f"{value:.2g} s"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.2f} h"


def test_score(results: dict | None) -> tuple[float | None, str]:
    """(bits/dim to sort by, a short label of the test result): the exact NLL, the AIS estimate, or a
    bound's importance-sampling estimate; None for runs without a likelihood (or not evaluated yet)."""
    t = (results or {}).get("test") or {}
    kind = t.get("kind")
    if kind in ("exact", "estimate"):
        mark = "" if kind == "exact" else "≈ "
        return t.get("bits_per_dim"), f"{mark}{_pm(t, 'nll_nats')} nats"
    if kind == "bound":
        return t.get("nll_estimate_bits_per_dim"), f"≤ {_num(t.get('elbo_nats'), 3)}, ≈ {_pm(t, 'nll_estimate_nats')}"
    if kind == "reconstruction":
        return None, f"reconstruction {_pm(t, 'reconstruction_nats')} nats"
    if kind == "samples-only":
        m = t.get("sample_metrics") or {}
        return None, f"samples only (FD {_num(m.get('frechet_distance'), 3)})" if m else "samples only"
    return None, "not evaluated yet" if not results else str((results or {}).get("status", "—"))


# -- pictures ----------------------------------------------------------------------------------------------
