"""Benchmark: sample-quality metrics of a trained run (any model), beside the real-data floor.

    python benchmarks/sample_quality.py --run benchmarks/runs/pixelcnn-small --samples 10000 --threads 1

Draws ``--samples`` images, embeds them with the dataset's cached feature network (a classifier where
the data has labels, else an auto-encoder's encoder) and reports the Fréchet distance, KID,
precision/recall and the class histogram, with the same metrics for the held-out test split as the
floor. Prints one JSON line and appends it to benchmarks/results.jsonl.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> int:
    from train_nll import command_line, device_name, record_result

    from genzoo.workflow import evaluate_run, pick_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    result = evaluate_run(args.run, args.data_dir, "test", device=args.device, num_samples=100,
                          sample_count=args.samples)
    record = {"benchmark": "sample_quality", "run": args.run, "name": Path(args.run).name,
              "kind": result.get("kind"), "sample_metrics": result.get("sample_metrics"),
              "seconds": time.time() - start, "device": device_name(pick_device(args.device)),
              "torch": torch.__version__, "command": command_line()}
    record_result(record)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
