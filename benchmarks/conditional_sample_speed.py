"""Benchmark: cached against naive sampling of a trained image-conditioned model, on the same conditions.

    python benchmarks/conditional_sample_speed.py benchmarks/runs/conditional-binarized-mnist-sr4-pixelcnn -n 16

Draws ``n`` images given the first ``n`` test conditions of the run's data, with the cached sampler and
with one full forward pass per subpixel (``naive=True``), from the same seed; prints one JSON line (both
times, their ratio, whether the images are identical) and appends it to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_nll import command_line, device_name, record_result  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("-n", type=int, default=16)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import genzoo
    from genzoo.data.pairs import load_task_dataset

    model = genzoo.load(args.run, weights="auto")
    data = load_task_dataset(model.checkpoint_info["data"]["name"], args.data_dir)
    y = data.test.labels[: args.n].long()
    times, images = {}, {}
    for naive in (False, True):
        start = time.perf_counter()
        images[naive] = model.sample(args.n, y, generator=torch.Generator().manual_seed(0), naive=naive)
        times[naive] = time.perf_counter() - start
    record_result(
        {
            "benchmark": "conditional_sample_speed",
            "run": Path(args.run).name,
            "model": model.config["name"],
            "data": data.name,
            "n": args.n,
            "cached_seconds": times[False],
            "naive_seconds": times[True],
            "speedup": times[True] / times[False],
            "identical": bool(torch.equal(images[False], images[True])),
            "device": device_name(torch.device("cpu")),
            "torch": torch.__version__,
            "command": command_line(),
        },
        save=not args.no_save,
    )


if __name__ == "__main__":
    main()
