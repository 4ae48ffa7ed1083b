"""Benchmark: super-resolution or colorization by an image-conditioned autoregressive model, beside the
baselines, in one run (same data, same test conditions).

    python benchmarks/conditional.py --task superres --scale 4 --data binarized-mnist --data-dir ../shared/data \\
        --model pixelcnn -o channels=64 -o num_blocks=8 --time 1500 --regression-time 300
    python benchmarks/conditional.py --task colorize --data photos32 --model pixelcnn++ --time 1500
    python benchmarks/conditional.py --task superres --scale 2 --data digits --model gated-pixelcnn --time 120

Trains the model with the shared trainer (``genzoo.train``, resumable, best-validation weights kept) on
the pairs of ``genzoo.data.pairs``, trains the L2 CNN baseline (``genzoo.tasks.baselines``; the model's
conditioning network with a 1x1 head, unless ``--regression-channels``/``--regression-blocks`` say
otherwise), then scores on the test split: the model's exact -log p(x | y) on the whole split, and on a
seeded subset of ``--eval-images`` conditions PSNR, SSIM, consistency, diversity over ``--samples``
samples, the MNIST digit classifier's accuracy, colourfulness (RGB) for the model's samples, the
baselines and the truth (``genzoo.tasks.conditional``). Prints one JSON line, appends it to
benchmarks/results.jsonl, and writes the labelled picture input | bicubic | L2 CNN | samples | truth.
Run directories go under benchmarks/runs/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_nll import command_line, device_name, record_result, validation_curve  # noqa: E402


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def make_figure(
    model, regression, data, index, rows: int, samples: int, name: str, temperature=1.0, best_of: int = 1
) -> Path:
    """input | bicubic/gray | L2 CNN | samples | truth for ``rows`` conditions spread over the scored subset
    ``index`` (sorted: binarized MNIST's test split is in class order), samples drawn with seed 1."""
    from genzoo.tasks import conditional

    chosen = index[torch.linspace(0, len(index) - 1, rows).round().long()]
    suffix = ("" if temperature == 1.0 else f"-T{temperature:g}") + ("" if best_of == 1 else f"-best{best_of}")
    path = HERE / "conditional" / f"{name}{suffix}.png"
    y, truth = data.test.labels[chosen], data.test.images[chosen]
    return conditional.task_figure(
        model, y, path, samples, truth=truth, regression=regression, seed=1, temperature=temperature, best_of=best_of
    )


def summarize() -> str:
    """Markdown: one table per conditional run in results.jsonl (the newest record of each name)."""
    from genzoo.tasks.conditional import format_table

    records, starts = {}, {}
    for line in (HERE / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("benchmark") == "conditional":
            records[record["name"]] = record
            starts[record["name"]] = record.get("initialized") or starts.get(record["name"])  # a resume has none
    out = []
    for name, r in records.items():
        minutes = r["train_seconds"] / 60
        out.append(
            f"### {name}\n\n{r['data']} ({r['task']}), {r['model']} {json.dumps(r['options'])}, {r['params']:,} "
            f"parameters; L2 CNN {r['regression_params']:,} parameters. Trained {minutes:.1f} min ({r['steps']} steps, "
            f"{r['epochs']:.2f} epochs; L2 CNN {r['regression']['elapsed'] / 60:.1f} min), weights {r['weights']}. "
            f"Test -log p(x | y) = {r['test_nll_nats']:.2f} ± {r['test_nll_nats_stderr']:.2f} nats "
            f"({r['test_bits_per_dim']:.4f} bits/dim), whole test split. Sample metrics on {r['n_images']} test "
            f"conditions, {r['samples']} samples each (sampling took {r['sample_seconds']:.0f} s)"
            + (
                f"; digit classifier accuracy on the real test images {r['metrics']['truth']['accuracy']:.4f}."
                if "accuracy" in r["metrics"]["truth"]
                else "."
            )
            + warm_start_note(starts[name])
            + f"\n\n{format_table({'methods': r['metrics']})}\n\n![{name}]({r['figure']})\n\n"
            + "".join(f"![{name} at T={t}]({path})\n\n" for t, path in r.get("tempered_figures", {}).items())
            + "".join(f"![{name}, likeliest of {n}]({path})\n\n" for n, path in r.get("best_of_figures", {}).items())
            + ("" if not r.get("temperatures") else "(T: the sampling temperature, `--temperature`.)\n\n")
            + (
                ""
                if not r.get("best_of")
                else "(best of n: each output is the likeliest of n samples under the model's own log p(x | y), "
                "`--best-of`.)\n\n"
            )
            + f"`{r['command']}` ({r['device']}, torch {r['torch']})\n"
        )
    return "\n".join(out)


def warm_start_note(initialized: dict | None) -> str:
    """A sentence on a warm-started run's starting weights (empty for a run from scratch)."""
    if not initialized:
        return ""
    parts = [f"the weights of `{initialized['init_from']}`"] if initialized.get("init_from") else []
    if initialized.get("condition_from_regression"):
        parts.append("the conditioning network from the L2 CNN's trained body")
    fresh = ", ".join(initialized.get("kept", [])) or "none"
    return f" Warm start: {' and '.join(parts)} ({initialized['copied']} tensors; initialized afresh: {fresh})."


def warm_start(model, run_dir: Path, init_from: str | None, regression) -> dict | None:
    """Starting weights of a fresh run (none when ``run_dir`` holds a checkpoint: the run resumes from it).

    ``init_from``: every tensor of that run's best weights whose name and shape match the model's; the
    rest keep their initialization (e.g. new zero projections of a wider conditioning network).
    ``regression``: a trained L2 CNN whose body (a ``ConditionNet``) becomes the model's conditioning
    network. Returns what was copied, for the record.
    """
    if (run_dir / "checkpoint.safetensors").exists() or (init_from is None and regression is None):
        return None
    import genzoo

    state, copied, kept = model.state_dict(), [], []
    if init_from is not None:
        source = genzoo.load(init_from, weights="best").state_dict()
        for key, value in state.items():
            match = key in source and source[key].shape == value.shape
            (copied if match else kept).append(key)
            if match:
                value.copy_(source[key])
    if regression is not None:
        model.condition_net.load_state_dict(regression.body.state_dict())
        copied = sorted(set(copied) | {f"condition_net.{k}" for k in regression.body.state_dict()})
        kept = [k for k in kept if not k.startswith("condition_net.")]
    return {"init_from": init_from, "condition_from_regression": regression is not None, "copied": len(copied),
            "kept": kept}  # fmt: skip


def main() -> None:
    if "--summarize" in sys.argv:
        print(summarize())
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summarize", action="store_true", help="print the markdown tables of the recorded runs")
    p.add_argument("--task", choices=("superres", "colorize"), required=True)
    p.add_argument("--scale", type=int, default=None)
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="pixelcnn")
    p.add_argument("-o", "--option", action="append", default=[], help="model option key=value (JSON values)")
    p.add_argument("--time", type=float, default=600.0, help="seconds of training for the model")
    p.add_argument("--regression-time", type=float, default=300.0, help="seconds of training for the L2 CNN")
    p.add_argument("--regression-channels", type=int, default=None)
    p.add_argument("--regression-blocks", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--amp",
        default="off",
        choices=("off", "bf16"),
        help="the model's training under bf16 autocast (TrainConfig.amp)",
    )
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine", "exponential"])
    p.add_argument("--decay-steps", type=int, default=None, help="cosine: the step where the lr reaches 0")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY",
        help="resume although the training option KEY (e.g. schedule) differs from the checkpoint's (logged)",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="RUN",
        help="a fresh run starts from the best weights of run RUN (a directory) wherever names and shapes agree",
    )
    p.add_argument(
        "--condition-from-regression",
        action="store_true",
        help="train the L2 CNN first; a fresh run's conditioning network starts from its trained body",
    )
    p.add_argument(
        "--regression-only",
        action="store_true",
        help="only train the L2 CNN (into the run directory) and exit: run it beside the model's training on "
        "another core; the model's run then finds it trained",
    )
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-max-images", type=int, default=1000)
    p.add_argument("--eval-images", type=int, default=1000, help="conditions scored by the sample metrics")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument(
        "--temperature",
        type=float,
        action="append",
        default=[],
        help="also score (and draw a picture of) samples at temperature T (repeatable); T = 1 is always scored",
    )
    p.add_argument(
        "--best-of",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="also score (and draw a picture of) outputs that are each the likeliest of N samples (repeatable)",
    )
    p.add_argument("--figure-rows", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default=None)
    p.add_argument("--no-save", action="store_true", help="do not append to results.jsonl")
    p.add_argument("--figure-only", action="store_true", help="only redraw the picture of a finished run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.pairs import conditional_dataset
    from genzoo.tasks import baselines, conditional
    from genzoo.train import TrainConfig, train

    source = load_dataset(args.data, args.data_dir)
    data = conditional_dataset(source, args.task, args.scale)
    options = dict(kv.split("=", 1) for kv in args.option)
    options = {k: parse_value(v) for k, v in options.items()}
    name = args.name or f"{data.name}-{args.model}"
    run_dir = HERE / "runs" / f"conditional-{name}"
    model = genzoo.create(args.model, data.image_shape, data.levels, **data.model_options(), **options)
    config = TrainConfig(
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        decay_steps=args.decay_steps,
        max_time=args.time,
        eval_every=args.eval_every,
        checkpoint_every=args.eval_every,
        eval_max_images=args.eval_max_images,
        progress=False,
        device="cpu",
        amp=args.amp,
    )
    if args.figure_only:
        model, regression = (
            genzoo.load(run_dir, weights="auto"),
            baselines.load_regression(run_dir / "regression.safetensors"),
        )
        index = conditional.evaluation_subset(len(data.test), args.eval_images)
        for t in (1.0, *args.temperature):
            print(make_figure(model, regression, data, index, args.figure_rows, args.samples, name, t))
        return
    channels = args.regression_channels or options.get("condition_channels", 32)
    blocks = args.regression_blocks if args.regression_blocks is not None else options.get("condition_blocks", 2)
    regression = baselines.RegressionCNN(
        data.image_shape, data.levels, data.condition_shape, data.condition_levels, channels, blocks
    )

    def fit_l2_cnn() -> dict:
        return baselines.fit_regression(
            regression, data, run_dir / "regression.safetensors", max_time=args.regression_time, batch_size=64
        )

    if args.regression_only:
        print(json.dumps(fit_l2_cnn()))
        return
    regression_fit = fit_l2_cnn() if args.condition_from_regression else None
    initialized = warm_start(model, run_dir, args.init_from, regression if args.condition_from_regression else None)
    result = train(model, data, run_dir, config, overrides=tuple(key.replace("-", "_") for key in args.override))
    if result["status"] == "interrupted":  # a signal stopped training: saved; score nothing, resume later
        from genzoo.errors import SIGNAL_EXIT_CODES

        print(f"interrupted at step {result['step']}; checkpoint saved, rerun to resume", file=sys.stderr)
        sys.exit(SIGNAL_EXIT_CODES.get(result.get("signal"), 130))
    model = genzoo.load(run_dir, weights="auto")
    model_params = sum(p.numel() for p in model.parameters())

    regression_fit = regression_fit or fit_l2_cnn()

    classifier, labels = conditional.digit_classifier(data, args.data_dir)
    t0 = time.perf_counter()
    index = conditional.evaluation_subset(len(data.test), args.eval_images)
    drawn = conditional.draw_samples(model, data.test.labels[index].long(), args.samples)
    sample_seconds = time.perf_counter() - t0
    scores = conditional.evaluate_task(
        model, data, "test", args.eval_images, args.samples, 0, regression, classifier, labels, drawn=drawn,
        temperatures=tuple(args.temperature), best_of=tuple(args.best_of),
    )  # fmt: skip
    figure = make_figure(model, regression, data, index, args.figure_rows, args.samples, name)
    tempered_figures = {
        f"{t:g}": str(
            make_figure(model, regression, data, index, args.figure_rows, args.samples, name, t).relative_to(HERE)
        )
        for t in args.temperature
        if t != 1.0
    }
    best_of_figures = {
        str(n): str(
            make_figure(model, regression, data, index, args.figure_rows, args.samples, name, best_of=n).relative_to(
                HERE
            )
        )
        for n in args.best_of
        if n != 1
    }
    record = {
        "benchmark": "conditional",
        "name": name,
        "task": args.task,
        "scale": data.scale,
        "data": data.name,
        "source": data.source,
        "model": args.model,
        "options": options,
        "status": result["status"],
        "test_nll_nats": scores["nll"]["nll_nats"],
        "test_nll_nats_stderr": scores["nll"]["nll_nats_stderr"],
        "test_bits_per_dim": scores["nll"]["bits_per_dim"],
        "metrics": scores["methods"],
        "n_images": scores["n_images"],
        "samples": args.samples,
        "classifier_test_accuracy": None if classifier is None else classifier.test_accuracy,
        "params": model_params,
        "regression_params": baselines.num_parameters(regression),
        "regression": regression_fit,
        "initialized": initialized,
        "steps": result["step"],
        "epochs": result["epoch"],
        "train_seconds": result["elapsed"],
        "train_images_per_sec": result["images_per_sec"],
        "sample_seconds": sample_seconds,
        "wall_seconds": time.perf_counter() - started,
        "weights": model.checkpoint_info.get("weights"),
        "figure": str(figure.relative_to(HERE)),
        "temperatures": sorted(set(args.temperature) - {1.0}, reverse=True),
        "tempered_figures": tempered_figures,
        "best_of": sorted(set(args.best_of) - {1}),
        "best_of_figures": best_of_figures,
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "command": command_line(),
        "valid_curve": validation_curve(run_dir),
    }
    print(conditional.format_table(scores), file=sys.stderr)
    record_result(record, save=not args.no_save)


if __name__ == "__main__":
    main()
