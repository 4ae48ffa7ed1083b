"""Benchmark: ``torch.tanh`` against 2 sigmoid(2x) - 1 (``genzoo.nn.activations``), and sigmoid beside them.

    python benchmarks/activation_speed.py --threads 1 > benchmarks/logs/activation-speed.log

On the shapes where genzoo applies tanh (the VAE MLP's 256 x 200 hidden layer, a Diagonal BiLSTM
diagonal, a Gated PixelCNN gate), in one process, interleaved: microseconds per call of the forward alone
and of forward + backward, the ratio torch.tanh / sigmoid form, the largest absolute difference of the
values and of the gradients, and which of the two ``genzoo.nn.activations.tanh`` uses on this machine.
One JSON line per shape, appended to benchmarks/results.jsonl unless ``--no-save``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_nll import command_line, device_name, record_result  # noqa: E402

SHAPES = {
    "vae hidden layer (batch 256 x 200)": (256, 200),
    "diagonal BiLSTM step (16 x 28 x 64)": (16, 28, 64),
    "gated PixelCNN gate (16 x 32 x 28 x 28)": (16, 32, 28, 28),
}


def per_call(fn, seconds: float) -> float:
    """Microseconds per call of ``fn``, timed for about ``seconds`` after a warm-up."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.0, help="timing per function, per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from genzoo.nn.activations import sigmoid_form, tanh_by_sigmoid

    for label, shape in SHAPES.items():
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        xg = x.clone().requires_grad_()
        grad = torch.randn_like(x)
        functions = {"torch.tanh": torch.tanh, "2 sigmoid(2x) - 1": tanh_by_sigmoid, "torch.sigmoid": torch.sigmoid}
        times = {name: {"forward": 0.0, "forward_backward": 0.0} for name in functions}
        for _ in range(args.rounds):
            for name, f in functions.items():
                with torch.no_grad():
                    times[name]["forward"] += per_call(lambda f=f, x=x: f(x), args.seconds) / args.rounds
                backward = lambda f=f, x=xg, g=grad: torch.autograd.grad(f(x), x, g)  # noqa: E731
                times[name]["forward_backward"] += per_call(backward, args.seconds) / args.rounds
        reference, ours = torch.tanh(xg), tanh_by_sigmoid(xg)
        (g_reference,), (g_ours,) = torch.autograd.grad(reference, xg, grad), torch.autograd.grad(ours, xg, grad)
        record = {
            "benchmark": "activation_speed",
            "shape": list(shape),
            "where": label,
            "microseconds": times,
            "forward_ratio": times["torch.tanh"]["forward"] / times["2 sigmoid(2x) - 1"]["forward"],
            "forward_backward_ratio": times["torch.tanh"]["forward_backward"]
            / times["2 sigmoid(2x) - 1"]["forward_backward"],
            "genzoo_tanh_here": "2 sigmoid(2x) - 1" if sigmoid_form(x) else "torch.tanh",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "max_abs_difference": float((reference - ours).detach().abs().max()),
            "max_abs_gradient_difference": float((g_reference - g_ours).abs().max()),
            "threads": torch.get_num_threads(),
            "device": device_name(torch.device("cpu")),
            "torch": torch.__version__,
            "command": command_line(),
        }
        print(
            f"{label}: forward {times['torch.tanh']['forward']:.1f} us (torch.tanh) vs "
            f"{times['2 sigmoid(2x) - 1']['forward']:.1f} us (2 sigmoid(2x) - 1), x{record['forward_ratio']:.2f}; "
            f"forward+backward x{record['forward_backward_ratio']:.2f}; max |difference| "
            f"{record['max_abs_difference']:.2e}; genzoo's tanh here: {record['genzoo_tanh_here']}",
            file=sys.stderr,
        )
        record_result(record, save=not args.no_save)


if __name__ == "__main__":
    main()
