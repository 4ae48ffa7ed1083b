"""Benchmark: sample-quality metrics of a trained run (any model), beside the real-data floor.

    python benchmarks/sample_quality.py --run benchmarks/runs/pixelcnn-small --samples 10000 --threads 1
    python benchmarks/sample_quality.py --floor binarized-mnist --data-dir ../shared/data --samples 2000 --threads 1

``--run``: draws ``--samples`` images, embeds them with the dataset's cached feature network (a classifier
where the data has labels; for binary MNIST a digit classifier trained on MNIST binarized at every draw;
else an auto-encoder's encoder) and reports the Fréchet distance, KID, precision/recall and the class
histogram, with the same metrics for a seeded random subset of the held-out test split as the floor.

``--floor DATASET``: no model; the real-data floors alone at N = ``--samples``: a seeded random subset of
the valid split scored as if it were samples (top-level metrics) and of the test split (under "floor"),
each against the same train reference. Two held-out splits agreeing shows the floor is stable.

Prints one JSON line and appends it to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def floor_metrics(name: str, n: int, data_dir=None, seed: int = 0, kid_subsets: int = 100) -> dict:
    """The floors of dataset ``name`` at N = ``n``: a random valid subset as 'samples', the test split as floor."""
    from genzoo.data import load_dataset
    from genzoo.metrics import sample_metrics

    dataset = load_dataset(name, data_dir)
    n = min(n, len(dataset.valid))
    generator = torch.Generator().manual_seed(seed + 1)  # not the reference's stream
    held_out, _ = dataset.valid.batch(torch.randperm(len(dataset.valid), generator=generator)[:n], generator)
    return sample_metrics(
        held_out, dataset, data_dir=data_dir, seed=seed, floor_split="test", kid_subsets=kid_subsets, inception=False
    )


def main() -> int:
    from genzoo.distributed import select_device
    from genzoo.workflow import evaluate_run
    from train_nll import command_line, device_name, record_result

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="a run directory: score its model's samples")
    what.add_argument("--floor", metavar="DATASET", help="no model: the real-data floors of DATASET")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0, help="--floor: the seed of the subsets")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    if args.floor:
        metrics = floor_metrics(args.floor, args.samples, args.data_dir, args.seed)
        record = {
            "benchmark": "sample_quality_floor",
            "data": args.floor,
            "n": metrics["n"],
            "held_out": {"valid": "top level", "test": "floor"},
            "sample_metrics": metrics,
        }
    else:
        result = evaluate_run(
            args.run, args.data_dir, "test", device=args.device, num_samples=100, sample_count=args.samples
        )
        record = {
            "benchmark": "sample_quality",
            "run": args.run,
            "name": Path(args.run).name,
            "kind": result.get("kind"),
            "sample_metrics": result.get("sample_metrics"),
        }
    record.update(
        {
            "seconds": time.time() - start,
            "device": device_name(select_device(args.device)),
            "torch": torch.__version__,
            "command": command_line(),
        }
    )
    record_result(record)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
