"""Benchmark: training steps per second of every model with its DEFAULT options on the bundled digits
(8x8, 17 levels), one thread, through ``genzoo.train`` with its defaults (batch 64): what a newcomer's
``genzoo train MODEL --data digits`` gets (issue 15: "a model on 8x8 digits trains at interactive speed").

    OMP_NUM_THREADS=1 python benchmarks/digits_speed.py [--models gated-pixelcnn pixelcnn++ ...] [--steps 60]

Each model trains ``--steps`` steps after 5 warm-up steps (not timed), no validation inside the window.
Prints one JSON line per model (steps/s by wall clock and per CPU-second, the process's CPU share while
timed: below 1 when the machine is shared) and appends it to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_nll import command_line, device_name, record_result  # noqa: E402

GRADIENT_MODELS = ["pixelcnn", "gated-pixelcnn", "pixelcnn++", "pixelsnail", "row-lstm", "diagonal-bilstm",
                   "made", "nade", "fvsbn", "vae", "iwae", "rbm", "dcgan"]  # fmt: skip


def time_model(name: str, dataset, steps: int, warmup: int = 5) -> dict:
    from genzoo.train import TrainConfig, train
    from genzoo.workflow import build_model

    torch.manual_seed(0)
    model = build_model(name, dataset, {})
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        common = {"eval_every": 10**9, "checkpoint_every": 10**9, "progress": False, "device": "cpu"}
        train(model, dataset, Path(tmp) / "run", TrainConfig(max_steps=warmup, **common))
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(model, dataset, Path(tmp) / "run", TrainConfig(max_steps=warmup + steps, **common))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result["step"] == warmup + steps, result
    return {
        "benchmark": "digits_speed",
        "model": name,
        "options": "defaults",
        "config": model.config,
        "params": params,
        "batch_size": TrainConfig().batch_size,
        "steps": steps,
        "steps_per_sec": steps / wall,
        "steps_per_cpu_sec": steps / cpu,
        "cpu_share": cpu / wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=GRADIENT_MODELS)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from genzoo.data import load_dataset

    dataset = load_dataset("digits")
    print("| model | params | steps/s (wall) | steps per CPU-second | CPU share |", file=sys.stderr)
    print("|---|---|---|---|---|", file=sys.stderr)
    for name in args.models:
        record = time_model(name, dataset, args.steps)
        record.update(
            threads=args.threads,
            device=device_name(torch.device("cpu")),
            torch=torch.__version__,
            command=command_line(),
        )
        record_result(record, save=not args.no_save)
        print(
            f"| {name} | {record['params']:,} | {record['steps_per_sec']:.2f} | {record['steps_per_cpu_sec']:.2f} "
            f"| {record['cpu_share']:.2f} |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
