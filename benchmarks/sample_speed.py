"""Benchmark: cached vs naive sampling of an autoregressive model, measured in the same run.

    python benchmarks/sample_speed.py --run benchmarks/runs/pixelcnn-binarized-mnist --threads 2
    python benchmarks/sample_speed.py --model pixelcnn --shape 1 28 28 --levels 2 --threads 2
    python benchmarks/sample_speed.py --model pixelcnn --shape 3 32 32 --levels 256 --naive-images 4 --device cuda
    python benchmarks/sample_speed.py --model vae -o decoder=pixelcnn --shape 1 28 28 --levels 2 --threads 1

Any model with a cached sampler and ``sample(..., naive=True)`` works, e.g. a VAE with the PixelCNN
decoder (its PixelCNN's cached sampler, conditioned on m(z), against one decoder pass per subpixel).

Draws ``--n`` images (default 64) with the model's cached sampler and with ``sample(naive=True)`` (one
full forward pass per subpixel) from the same seed, and reports both wall times, their ratio and whether
the two gave identical images. ``--naive-images M`` times the naive sampler on only M images, all
subpixels of them; its time is then scaled by n/M (stated in the output as ``naive_scaled``; sampling
cost is roughly linear in the batch on a CPU, less than linear on a GPU, which makes the ratio
conservative there) and the identity check is skipped. Then reports the cached sampler's images/s at
each ``--batches`` size (default 64 and 1024). Without ``--run`` a freshly initialised model is timed
(its weights do not change the cost). Prints one JSON line and appends it to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_nll import command_line, device_name, record_result  # noqa: E402


def timed_sample(model, n: int, seed: int, naive: bool) -> tuple[float, torch.Tensor]:
    """(seconds, images) of drawing ``n`` images in one batch."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    start = time.perf_counter()
    images = model.sample(n, generator=generator, naive=naive)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return time.perf_counter() - start, images.cpu()


def build(args):
    from genzoo.checkpoint import load
    from genzoo.cli import parse_option
    from genzoo.registry import create

    if args.run:
        return load(args.run).eval(), {}
    if not (args.model and args.shape and args.levels):
        raise SystemExit("give --run, or --model, --shape C H W and --levels")
    options = dict(parse_option(o) for o in args.option)
    torch.manual_seed(args.seed)
    return create(args.model, args.shape, args.levels, **options).eval(), options


def main() -> int:
    from genzoo.distributed import select_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run directory or model .safetensors file")
    p.add_argument("--model", help="registered model name, freshly initialised (when no --run)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("C", "H", "W"))
    p.add_argument("--levels", type=int)
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="model option")
    p.add_argument("--n", type=int, default=64, help="images per timed batch, cached and naive")
    p.add_argument("--naive-images", type=int, help="time naive sampling on only this many images and scale")
    p.add_argument("--batches", default="64,1024", help="batch sizes for the cached images/s")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-save", action="store_true", help="print only; do not append to results.jsonl")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    model, options = build(args)
    model.to(device)
    if not getattr(model, "has_cached_sampling", False):
        raise SystemExit(f"{type(model).__name__} has no cached sampler to compare")
    naive_images = min(args.naive_images or args.n, args.n)

    model.sample(2, generator=torch.Generator(device=device).manual_seed(0))  # warm-up: allocator, kernels
    cached_s, cached = timed_sample(model, args.n, args.seed, naive=False)
    naive_s, naive = timed_sample(model, naive_images, args.seed, naive=True)
    naive_scaled_s = naive_s * args.n / naive_images
    images_per_sec = {}
    for batch in (int(b) for b in args.batches.split(",") if b):
        seconds = cached_s if batch == args.n else timed_sample(model, batch, args.seed, naive=False)[0]
        images_per_sec[str(batch)] = batch / seconds

    record = {
        "benchmark": "sample_speed",
        "model": model.config.get("name"),
        "run": args.run,
        "options": options or None,
        "image_shape": list(model.image_shape),
        "levels": model.levels,
        "params": sum(p.numel() for p in model.parameters()),
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n": args.n,
        "cached_seconds": cached_s,
        "naive_images": naive_images,
        "naive_seconds": naive_s,
        "naive_scaled": naive_images != args.n,
        "naive_seconds_for_n": naive_scaled_s,
        "speedup": naive_scaled_s / cached_s,
        "identical_samples": bool(torch.equal(cached, naive)) if naive_images == args.n else None,
        "cached_images_per_sec": images_per_sec,
        "command": command_line(),
    }
    record_result(record, save=not args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
