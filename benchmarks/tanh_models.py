"""Benchmark: the models that use tanh, trained with each of genzoo's two exact tanh forms, in one process.

    python benchmarks/tanh_models.py --threads 1 > benchmarks/logs/tanh-models.log

``genzoo.nn.activations.tanh`` is ``torch.tanh`` or 2 sigmoid(2x) - 1, chosen by the CPU's ATen capability
(``activations.SIGMOID_FORM_ON_CPU``). For each model at its throughput-benchmark size and batch
(``throughput.PAPER``), two copies with the same weights train on the same fixed batches, one with each
form, in interleaved chunks (``throughput.interleaved``): images/s of both and ``torch_over_sigmoid``, the
ratio. One JSON line per model, appended to benchmarks/results.jsonl unless ``--no-save``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402
from train_nll import cpu_provenance, record_result  # noqa: E402

MODELS = ["vae", "iwae", "autoencoder", "gated-pixelcnn", "row-lstm", "diagonal-bilstm"]


def measure(name: str, seconds: float, rounds: int, data_dir) -> dict:
    from genzoo.data import load_dataset
    from genzoo.nn import activations
    from genzoo.registry import create

    spec = throughput.PAPER[name]
    dataset = load_dataset(spec["data"], data_dir)
    torch.manual_seed(0)
    model = create(name, dataset.image_shape, dataset.levels, **spec["options"])
    model.init_from_data(dataset.train)
    batches = throughput.fixed_batches(dataset.train, spec["batch"])
    loops = {}
    for form, flag in (("torch.tanh", False), ("2 sigmoid(2x) - 1", True)):
        inner = throughput.train_step_loop(copy.deepcopy(model), batches)

        def step(i, inner=inner, flag=flag):
            activations.SIGMOID_FORM_ON_CPU = flag
            inner.step(i)

        loops[form] = throughput.Loop(step, spec["batch"])
        loops[form].warm_up()
    saved = activations.SIGMOID_FORM_ON_CPU
    try:
        throughput.interleaved(list(loops.values()), [seconds] * len(loops), rounds)
    finally:
        activations.SIGMOID_FORM_ON_CPU = saved
    rate = {form: loop.rate for form, loop in loops.items()}
    return {
        "benchmark": "tanh_models",
        "model": name,
        "batch_size": spec["batch"],
        "images_per_sec": rate,
        "torch_over_sigmoid": rate["torch.tanh"] / rate["2 sigmoid(2x) - 1"],
        "default_here": "2 sigmoid(2x) - 1" if saved else "torch.tanh",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **cpu_provenance(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", choices=MODELS, help="default: all of them")
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds of each form")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=str(throughput.DEFAULT_DATA_DIR))
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.model or MODELS:
        record = measure(name, args.seconds, args.rounds, args.data_dir)
        rates = ", ".join(f"{form} {r:.4g} img/s" for form, r in record["images_per_sec"].items())
        print(f"{name}: {rates}; torch.tanh / sigmoid form x{record['torch_over_sigmoid']:.2f}", file=sys.stderr)
        record_result(record, save=not args.no_save)


if __name__ == "__main__":
    main()
