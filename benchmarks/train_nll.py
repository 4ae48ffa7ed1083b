"""Benchmark: train a model under a wall-time budget, then score the full test split.

    python benchmarks/train_nll.py --model pixelcnn --data binarized-mnist --time 1800
    python benchmarks/train_nll.py --model made --preset germain2015-1mask --threads 1 --name made-8000

The flags are those of ``genzoo train`` (generated from TrainConfig, with its defaults), plus --threads and
--name; ``--preset`` takes a paper's recipe (genzoo.recipes). Each record holds the equivalent
``genzoo train`` line ("genzoo_command").

Prints one JSON line (test NLL in nats and bits/dim with standard errors, training images/s, parameter
count, device, torch version, the validation curve, the exact command) and appends it to
benchmarks/results.jsonl. The run directory (checkpoints, log.jsonl, TensorBoard events, samples.png)
goes under benchmarks/runs/ (not committed). Runs resume from their checkpoint when repeated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def command_line() -> str:
    """The exact command that is running, for the record."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def cpu_provenance() -> dict:
    """Where and how a CPU measurement ran: threads, device, torch version and the exact command."""
    return {
        "threads": torch.get_num_threads(),
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "command": command_line(),
    }


def record_result(record: dict, save: bool = True) -> None:
    """Print ``record`` as one JSON line and (``save``) append it to benchmarks/results.jsonl."""
    line = json.dumps(record)
    print(line)
    if save:
        with open(HERE / "results.jsonl", "a") as f:
            f.write(line + "\n")


def validation_curve(run_dir: Path) -> list[dict]:
    """(step, elapsed seconds, valid NLL) at every validation of the run, from its log.jsonl."""
    curve = []
    log = run_dir / "log.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            valid = record.get("valid")
            if isinstance(valid, dict) and "nll_nats" in valid:
                curve.append(
                    {
                        "step": record.get("step"),
                        "elapsed": record.get("elapsed"),
                        "valid_nll_nats": valid["nll_nats"],
                        "valid_bits_per_dim": valid.get("bits_per_dim"),
                    }
                )
    return curve


def main() -> int:
    from genzoo.cli import parse_option
    from genzoo.distributed import select_device
    from genzoo.recipes import recipe
    from genzoo.train_config import add_train_arguments, given_options, make_config
    from genzoo.workflow import train_and_evaluate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--preset", help="a recipe of genzoo.recipes (model options, data, training config)")
    p.add_argument("--data", help="dataset (default: the recipe's, else binarized-mnist)")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--name", help="run name (default MODEL-DATA); the run directory is benchmarks/runs/NAME")
    p.add_argument("--fit", choices=["em", "closed-form"], help="fit without gradient steps (mixtures, naive Bayes)")
    p.add_argument("--em-iterations", type=int, help="EM iterations at most (with --fit em)")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples for latent-variable models")
    add_train_arguments(p)  # the same flags, defaults and checks as `genzoo train`
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = recipe(args.model, args.preset) if args.preset else None
    options = {**(chosen.options if chosen else {}), **dict(parse_option(o) for o in args.option)}
    data = args.data or (chosen.data if chosen else "binarized-mnist")
    given = {"progress": sys.stderr.isatty(), **given_options(args)}
    if args.fit:
        given.setdefault("max_steps", 1)
    config = make_config(given, chosen.train if chosen else None)
    name = args.name or f"{args.model}-{data}"
    run_dir = HERE / "runs" / name
    start = time.time()
    results = train_and_evaluate(
        args.model,
        data,
        run_dir,
        config,
        data_dir=args.data_dir,
        model_options=options,
        num_samples=64,
        fit=args.fit,
        eval_k=args.eval_k,
        em_iterations=args.em_iterations,
        test_data=chosen.test_data if chosen else None,
    )
    record = {
        "benchmark": "train_nll",
        "name": name,
        "model": args.model,
        "preset": args.preset,
        "data": data,
        "options": options,
        "train_config": dataclasses.asdict(config),
        "status": results.get("status"),
        "test_nll_nats": results.get("test", {}).get("nll_nats"),
        "test_nll_nats_stderr": results.get("test", {}).get("nll_nats_stderr"),
        "test_bits_per_dim": results.get("test", {}).get("bits_per_dim"),
        "test": results.get("test"),
        "train_images_per_sec": results.get("images_per_sec"),
        "params": results.get("params"),
        "steps": results.get("step"),
        "epochs": results.get("epoch"),
        "train_seconds": results.get("elapsed"),
        "wall_seconds": time.time() - start,
        "cpu_seconds": time.process_time(),
        "device": device_name(select_device(config.device)),
        "torch": torch.__version__,
        "command": command_line(),
        "genzoo_command": genzoo_command(args.model, data, args.data_dir, run_dir),
        "valid_curve": validation_curve(run_dir),
    }
    record_result(record)
    return 0


def genzoo_command(model: str, data: str, data_dir: str, run_dir: Path) -> str:
    """The ``genzoo train`` line equivalent to this benchmark run (its flags are the same)."""
    skip = {"--model", "--name", "--threads", "--data", "--data-dir"}
    argv, out, i = sys.argv[1:], [], 0
    while i < len(argv):
        if argv[i] in skip:
            i += 2
            continue
        out.append(argv[i])
        i += 1
    rest = " ".join(shlex.quote(a) for a in out)
    where = f"--data-dir {shlex.quote(data_dir)} --run-dir {run_dir.relative_to(HERE.parent)}"
    return f"OMP_NUM_THREADS=1 genzoo train {model} --data {data} {rest} {where}"


if __name__ == "__main__":
    sys.exit(main())
