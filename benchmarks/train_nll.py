"""Benchmark: train a model under a wall-time budget, then score the full test split.

    python benchmarks/train_nll.py --model pixelcnn --data binarized-mnist --data-dir ../shared/data --time 1800
    python benchmarks/train_nll.py --model made -o hidden=[8000] -o num_masks=32 --time 900 --threads 2

Prints one JSON line (test NLL in nats and bits/dim with standard errors, training images/s, parameter
count, device, torch version, the validation curve, the exact command) and appends it to
benchmarks/results.jsonl. The run directory (checkpoints, log.jsonl, TensorBoard events, samples.png)
goes under benchmarks/runs/ (not committed). Runs resume from their checkpoint when repeated.
"""

from __future__ import annotations

import argparse
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
    from genzoo.train import TrainConfig
    from genzoo.workflow import train_and_evaluate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="binarized-mnist")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--time", type=float, required=True, help="training wall-time budget, seconds")
    p.add_argument("--steps", type=int, help="optional step budget as well")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="constant")
    p.add_argument("--ema", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-max-images", type=int, default=2000, help="validation subset during training")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--name", help="run name (default MODEL-DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fit", choices=["em", "closed-form"], help="fit without gradient steps (mixtures, naive Bayes)")
    p.add_argument("--em-iterations", type=int, help="EM iterations at most (with --fit em)")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples for latent-variable models")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty (sgd/adam) or decoupled (adamw)")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    options = dict(parse_option(o) for o in args.option)
    name = args.name or f"{args.model}-{args.data}"
    run_dir = HERE / "runs" / name
    config = TrainConfig(
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        ema_decay=args.ema,
        optimizer=args.optimizer,
        momentum=args.momentum,
        grad_clip=args.grad_clip or None,
        weight_decay=args.weight_decay,
        max_time=args.time,
        max_steps=args.steps,
        eval_every=args.eval_every,
        eval_max_images=args.eval_max_images,
        checkpoint_every=500,
        log_every=50,
        seed=args.seed,
        device=args.device,
        compile=args.compile,
        progress=sys.stderr.isatty(),
    )
    start = time.time()
    results = train_and_evaluate(
        args.model,
        args.data,
        run_dir,
        config,
        data_dir=args.data_dir,
        model_options=options,
        num_samples=64,
        fit=args.fit,
        eval_k=args.eval_k,
        em_iterations=args.em_iterations,
    )
    record = {
        "benchmark": "train_nll",
        "name": name,
        "model": args.model,
        "data": args.data,
        "options": options,
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
        "device": device_name(select_device(args.device)),
        "torch": torch.__version__,
        "command": command_line(),
        "valid_curve": validation_curve(run_dir),
    }
    record_result(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
