"""The ``genzoo`` command line: it parses arguments and wires library parts together, nothing more.

    genzoo list
    genzoo train pixelcnn --data digits --epochs 20
    genzoo train pixelcnn --data binarized-mnist --data-dir ../shared/data --time 3600
    genzoo eval runs/pixelcnn-digits                    (best-validation weights if kept; --weights last)
    genzoo eval runs/dcgan-digits --samples 1000        (sample-quality metrics; any model)
    genzoo sample runs/pixelcnn-digits -n 64 -o grid.png
    genzoo complete runs/pixelcnn-digits --index 3 --keep top-half -o completions.png
    genzoo simulate --series sunspots --states 3
    genzoo latent runs/vae-digits probe            (also: encode, cluster, map, interpolate, reconstruct)

Every failure that is not a bug in genzoo (bad arguments, unknown names, missing or corrupt data or
checkpoints, a full disk, a diverged run, a locked run directory) ends with one line on stderr (a
missing dataset adds the list of files to place) and the exit code of its kind, listed in
``genzoo.errors`` and the README; nothing is lost. GENZOO_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from genzoo.errors import SIGNAL_EXIT_CODES, GenzooError, TrainingError, UsageError


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with a JSON value when it parses as JSON (numbers, lists, booleans), else a string."""
    if "=" not in text:
        raise UsageError(f"model option {text!r} must look like key=value")
    key, value = text.split("=", 1)
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def cmd_list(args) -> int:
    from genzoo.data import DATASETS
    from genzoo.registry import describe

    if args.options or args.recipes:  # genzoo list --options / --recipes (genzoo.model_info)
        return cmd_list_details(args)
    print("models:")
    for name, text in describe():
        print(f"  {name:<18} {text}")
    print("datasets:")
    for name, text in DATASETS.items():
        print(f"  {name:<18} {text}")
    return 0


# -- genzoo list --options/--recipes, genzoo describe, genzoo report: thin wrappers of model_info and report --


def cmd_list_details(args) -> int:
    from genzoo.model_info import format_option_list, format_recipe_list

    parts = ([format_option_list()] if args.options else []) + ([format_recipe_list()] if args.recipes else [])
    print("\n\n".join(parts))
    return 0


def cmd_describe(args) -> int:
    from genzoo.model_info import describe_model, format_description

    description = describe_model(args.model)
    print(json.dumps(description, default=str) if args.json else format_description(description))
    return 0


def cmd_report(args) -> int:
    from genzoo.report import ReportError, write_comparison, write_report

    try:
        options = {"samples": args.samples, "seed": args.seed, "device": args.device, "draw": not args.no_model}
        if len(args.runs) == 1:
            path = write_report(args.runs[0], args.output, **options)
        else:
            path = write_comparison(args.runs, args.output or "report.html", **options)
    except ReportError as err:
        raise UsageError(str(err)) from None
    print(f"wrote {path}")
    return 0


def add_report_commands(sub) -> None:
    p = sub.add_parser(
        "describe",
        help="a model's options (type, default, meaning), paper, capabilities, recipes, measured results, flags",
    )
    p.add_argument("model", help="a model name from `genzoo list`")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_describe)

    p = sub.add_parser(
        "report",
        help="one self-contained HTML page of what a run learned (several runs: a comparison)",
        description="Model card, curves, test result, labelled samples, completions and task pictures of RUN "
        "as one HTML file with everything inline (no network); several RUNs: a table sorted by test NLL, "
        "the samples side by side, then each run.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory (as written by genzoo train)")
    p.add_argument("-o", "--output", help="HTML file to write (default: RUN/report.html; several runs: report.html)")
    p.add_argument("--samples", type=int, default=64, help="samples drawn from the model for the grid (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples and completions (default 0)")
    p.add_argument("--device", default="cpu", help="device the model draws on (default cpu)")
    p.add_argument("--no-model", action="store_true", help="do not load the model: show only what the files hold")
    p.set_defaults(handler=cmd_report)


# ------------------------------------------------------------------------------------------------------------


def train_config(args, recipe: dict | None = None):
    from genzoo.train_config import given_options, make_config

    given = given_options(args)
    budget = {k: v for k, v in {**(recipe or {}), **given}.items() if k in ("max_steps", "max_epochs", "max_time")}
    if args.fit:  # no gradient steps: the budget is irrelevant
        given.setdefault("max_steps", 1)
    elif not budget:
        raise UsageError("give a training budget: --steps, --epochs and/or --time (seconds)")
    return make_config(given, recipe)


def task_data_name(data: str, task: str | None, scale: int | None) -> str:
    """The dataset a conditional task trains on: "mnist-superres4", "photos32-colorize" (genzoo.data.pairs)."""
    if task is None:
        if scale is not None:
            raise UsageError("--scale applies with --task superres only")
        return data
    if task == "superres":
        if scale is None:
            raise UsageError("--task superres needs --scale S (e.g. 4 for MNIST 7x7 -> 28x28)")
        return f"{data}-superres{scale}"
    if scale is not None:
        raise UsageError("--scale applies with --task superres only")
    return f"{data}-colorize"


def print_task_table(result: dict) -> None:
    """The conditional task's metrics beside the baselines, as a markdown table (genzoo.tasks.conditional)."""
    if "task" in result:
        from genzoo.tasks.conditional import format_table

        task = result["task"]
        print(f"samples and baselines on {task['n_images']} test conditions ({task['samples']} samples each):")
        print(format_table(task))


def cmd_train(args) -> int:
    from genzoo.recipes import recipe
    from genzoo.registry import model_class
    from genzoo.train_config import given_options, make_config, parse_override
    from genzoo.workflow import train_and_evaluate

    cls = model_class(args.model)
    chosen = recipe(args.model, args.preset) if args.preset else None
    options = {**(chosen.options if chosen else {}), **dict(parse_option(o) for o in args.option)}
    data = task_data_name(args.data or (chosen.data if chosen else "digits"), args.task, args.scale)
    args.fit = args.fit or cls.default_fit
    if args.fit is not None and args.fit not in cls.fit_methods:
        ways = ", ".join(cls.fit_methods) or "gradient steps only"
        raise UsageError(f"{args.model} cannot be fitted by {args.fit!r} (it fits by: {ways})")
    if args.em_iterations is not None and args.fit != "em":
        raise UsageError("--em-iterations applies with --fit em only")
    config = train_config(args, chosen.train if chosen else None)
    overrides = dict(parse_override(o) for o in args.override)
    if overrides:
        config = make_config({**given_options(args), **overrides}, chosen.train if chosen else None)
    run_dir = Path(args.run_dir or f"runs/{args.model}-{data}")
    record = {"preset": args.preset, "command": "genzoo " + " ".join(shlex.quote(a) for a in args.argv)}
    results = train_and_evaluate(
        args.model,
        data,
        run_dir,
        config,
        data_dir=args.data_dir,
        model_options=options,
        conditional=args.conditional,
        num_samples=args.samples,
        resume=not args.restart,
        eval_k=args.eval_k,
        fit=args.fit,
        em_iterations=args.em_iterations,
        overrides=tuple(overrides),
        record=record,
        test_max_images=args.test_max_images,
        test_data=args.test_data or (chosen.test_data if chosen else None),
    )
    if results.get("status") == "interrupted":
        if int(os.environ.get("RANK", "0")) == 0:
            print(
                f"interrupted at step {results.get('step')}; checkpoint saved. Resume with the same command.",
                file=sys.stderr,
            )
        return SIGNAL_EXIT_CODES.get(results.get("signal"), 130)
    if results.get("flagged"):
        raise TrainingError(f"{results['flagged']} (run: {run_dir}; the numbers are in its results.json)")
    if "test" in results:
        print(f"test {describe_result(results['test'])}; weights: {results['test'].get('weights')}; run: {run_dir}")
        print_task_table(results)
    return 0


def describe_result(r: dict) -> str:
    """One line: exact NLL, or bound and importance-sampling estimate, in nats and bits/dim; and the
    sample-quality metrics when computed; a partial evaluation says so."""
    if r.get("partial"):
        rest = {k: v for k, v in r.items() if k != "partial"}
        return f"{describe_result(rest)} (PARTIAL: the first {r['n']} of {r['of']} images)"
    if "sample_metrics" in r:
        from genzoo.metrics import summary_line

        rest = {k: v for k, v in r.items() if k != "sample_metrics"}
        head = "no likelihood (samples only)" if r.get("kind") == "samples-only" else describe_result(rest)
        return f"{head}; samples: {summary_line(r['sample_metrics'])}"
    if r.get("kind") == "samples-only":
        return "no likelihood (samples only)"
    if r.get("kind") == "reconstruction":
        return (
            f"no likelihood (auto-encoder); reconstruction NLL {r['reconstruction_nats']:.3f} ± "
            f"{r['reconstruction_nats_stderr']:.3f} nats over {r['n']} images"
        )
    if r.get("kind") == "bound":
        return (
            f"NLL ≤ {r['elbo_nats']:.3f} ± {r['elbo_nats_stderr']:.3f} nats (negative ELBO), "
            f"≈ {r['nll_estimate_nats']:.3f} ± {r['nll_estimate_nats_stderr']:.3f} nats "
            f"(k={r['k']} importance samples; {r['nll_estimate_bits_per_dim']:.4f} bits/dim) over {r['n']} images"
        )
    line = (
        f"NLL {r['nll_nats']:.3f} ± {r['nll_nats_stderr']:.3f} nats ({r['bits_per_dim']:.4f} bits/dim) "
        f"over {r['n']} images"
    )
    if r.get("conditional"):  # a class-conditional model: the NLL of each image given its label
        line = line.replace("NLL ", "NLL of x given its label, -log p(x|y): ", 1)
        if "accuracy" in r:
            line += f"; classification accuracy (Bayes' rule) {r['accuracy']:.4f}"
    note = r.get("partition") or {}
    if r.get("kind") == "estimate" and note:  # an energy model: the NLL rests on an AIS estimate of log Z
        low, high = note.get("log_z_interval", [math.nan, math.nan])
        line = (
            f"NLL ≈ {line.removeprefix('NLL ')}, an estimate: log Z by AIS = {note['log_z']:.3f} ± "
            f"{note['log_z_stderr']:.3f} nats (±3σ: [{low:.3f}, {high:.3f}]; the NLL moves with log Z)"
        )
    elif note.get("method") == "exact":
        line += f" (log Z exact: {note['log_z']:.3f} nats)"
    return line


def cmd_eval(args) -> int:
    from genzoo.workflow import evaluate_run

    result = evaluate_run(
        args.run,
        args.data_dir,
        args.split,
        args.batch_size,
        args.device,
        progress=not args.quiet,
        num_samples=args.k,
        sample_count=args.samples,
        weights=args.weights,
        max_images=args.max_images,
        data_name=args.data,
        temperatures=tuple(args.temperature or ()),
        best_of=tuple(args.best_of or ()),
    )
    if result.get("flagged") and not args.json:
        raise TrainingError(result["flagged"])
    print(
        json.dumps(result)
        if args.json
        else f"{result['dataset']} {result['split']}, {result['weights']} weights: {describe_result(result)}"
    )
    if not args.json:
        print_task_table(result)
    return TrainingError.exit_code if result.get("flagged") else 0


def cmd_sample(args) -> int:
    from genzoo.checkpoint import load
    from genzoo.data.pairs import parse_task_name
    from genzoo.distributed import select_device
    from genzoo.images import image_format, save_grid
    from genzoo.runlock import run_lock
    from genzoo.workflow import sample_images

    image_format(args.output)  # an unknown extension is refused before any work
    device = select_device(args.device)
    with run_lock(args.run, shared=True):
        model = load(args.run, weights=args.weights).to(device)
    limit = sample_limit(model.image_shape)
    if args.n > limit:
        raise UsageError(f"-n {args.n} would need more memory than this machine has; at most {limit} at once")
    if args.label is not None and not model.conditional:
        raise UsageError(f"--class given but the model in {args.run} is not class-conditional")
    if args.label is not None and not 0 <= args.label < model.num_classes:
        raise UsageError(f"--class must be in [0, {model.num_classes})")
    if args.temperature != 1.0 and not model.can_temper:
        raise UsageError(f"--temperature applies to autoregressive models, not to {model.config['name']}")
    data = (model.checkpoint_info.get("data") or {}).get("name", "")
    if parse_task_name(data):  # an image-conditioned run: samples given a condition, in a labelled grid
        return sample_task(args, model, data)
    if args.condition or args.index or args.best_of != 1:
        raise UsageError("--from, --index and --best-of apply to super-resolution and colorization runs")
    samples = sample_images(model, args.n, seed=args.seed, labels=args.label, naive=args.naive,
                            temperature=args.temperature)  # fmt: skip
    path = save_grid(samples, model.levels, args.output)
    tempered = "" if args.temperature == 1.0 else f" at temperature {args.temperature:g}"
    print(f"wrote {args.n} samples{tempered} of the {model.checkpoint_info['weights']} weights to {path}")
    return 0


def sample_task(args, model, data: str) -> int:
    """``genzoo sample RUN --from low.png | --index I``: input | bicubic | L2 CNN | samples | truth."""
    from genzoo.data.pairs import load_task_dataset
    from genzoo.tasks.conditional import sample_figure
    from genzoo.workflow import run_data_root, task_baseline

    regression = task_baseline(args.run) if Path(args.run).is_dir() else None
    samples = 4 if args.n == 64 else min(args.n, 16)  # -n: samples per condition here (default 4)
    if args.condition is not None:
        path = sample_figure(model, args.output, condition_png=args.condition, samples=samples, seed=args.seed,
                             regression=regression, temperature=args.temperature, best_of=args.best_of)  # fmt: skip
        what = f"{samples} samples given {args.condition}"
    else:
        dataset = load_task_dataset(data, run_data_root(model, args.data_dir))
        bad = [i for i in args.index or [] if not 0 <= i < len(dataset.test)]
        if bad:
            raise UsageError(f"--index {bad[0]} is out of range: the test split has {len(dataset.test)} images")
        path = sample_figure(model, args.output, dataset=dataset, indices=args.index or None, samples=samples,
                             seed=args.seed, regression=regression, temperature=args.temperature,
                             best_of=args.best_of)  # fmt: skip
        what = f"{samples} samples for each of {len(args.index) if args.index else 8} test conditions"
    print(f"wrote {what} (input | baselines | samples | truth) to {path}")
    return 0


def sample_limit(image_shape) -> int:
    """The most images ``sample`` draws at once: a quarter of the physical memory for the int64 images."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = 8 << 30
    return max(1, memory // 4 // (8 * math.prod(image_shape)))


def cmd_complete(args) -> int:
    import torch

    from genzoo.distributed import select_device
    from genzoo.images import save_grid
    from genzoo.workflow import complete_images, keep_mask, model_run_data

    model, dataset = model_run_data(args.run, args.data_dir, args.weights)
    if args.data is not None and args.data != dataset.name:
        raise UsageError(f"the model in {args.run} was trained on {dataset.name}, not {args.data}")
    if not model.can_complete:
        raise UsageError(f"{model.config.get('name')} cannot complete images (not autoregressive)")
    split = dataset.split(args.split)
    bad = [i for i in args.index if not 0 <= i < len(split)]
    if bad:
        raise UsageError(f"--index {bad[0]} is out of range: the {args.split} split has {len(split)} images")
    known = keep_mask(model.image_shape, args.keep, args.mask)
    model.to(select_device(args.device))
    images, labels = split.batch(torch.tensor(args.index))
    completions = complete_images(model, images, known, args.samples, args.seed, labels if model.conditional else None)
    masked = torch.where(known, images, torch.full_like(images, (model.levels - 1) // 2))
    rows = torch.cat([images[:, None], masked[:, None], completions], 1)  # original, masked, completions
    path = save_grid(rows.reshape(-1, *model.image_shape), model.levels, args.output, nrow=rows.shape[1])
    print(f"wrote {len(args.index)} rows (original, kept part, {args.samples} completions) to {path}")
    return 0


def cmd_learning_curve(args) -> int:
    from genzoo.tasks.learning_curve import run_learning_curve

    result = run_learning_curve(args.data, args.data_dir, args.out, sizes=args.sizes, seeds=tuple(range(args.seeds)))
    for row in result["rows"]:
        print(f"{row['classifier']:<22} n={row['size']:<6} test error {row['error_mean']:.4f} ± {row['error_sd']:.4f}")
    print(f"wrote {result['csv']} and {result['png']}")
    return 0


def cmd_simulate(args) -> int:
    from genzoo.tasks.simulate import load_csv, load_series, simulate

    if (args.series is None) == (args.csv is None):
        raise UsageError("give one of --series NAME or --csv FILE")
    if args.columns and args.csv is None:
        raise UsageError("--columns needs --csv")
    if args.csv is not None:
        columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
        (values, columns), name = load_csv(args.csv, columns), Path(args.csv).stem
    else:
        (values, columns), name = load_series(args.series), args.series
    r = simulate(
        values,
        columns,
        args.out or f"runs/simulate-{name}",
        name=name,
        states=args.states,
        covariance=args.covariance,
        samples=args.samples,
        lags=args.lags,
        restarts=args.restarts,
        iterations=args.iterations,
        seed=args.seed,
    )
    ks = ", ".join(f"{c} {v['ks_statistic']:.3f}" for c, v in r["per_column"].items())
    print(
        f"{name}: {r['length']} steps x {len(columns)}; HMM log-likelihood {r['log_likelihood_per_step']:.4f} "
        f"nats/step (i.i.d. Gaussian {r['iid_gaussian_log_likelihood_per_step']:.4f}); KS {ks}; "
        f"wrote {r['png']} and {r['json']}"
    )
    return 0


LATENT_OUTPUTS = {
    "encode": "codes.npy",
    "map": "latent_map.png",
    "interpolate": "interpolation.png",
    "reconstruct": "reconstructions.png",
}


def cmd_latent(args) -> int:
    from genzoo.distributed import select_device
    from genzoo.images import save_grid
    from genzoo.tasks import latent
    from genzoo.workflow import model_run_data

    model, dataset = model_run_data(args.run, args.data_dir, args.weights)
    if not model.has_codes:
        raise UsageError(f"{model.config.get('name')} has no latent codes (use a VAE, IWAE or autoencoder run)")
    model.to(select_device(args.device)).eval()
    split = dataset.split(args.split)
    output = args.output or LATENT_OUTPUTS.get(args.action)
    bad = [i for i in args.index if not 0 <= i < len(split)]
    if bad:
        raise UsageError(f"--index {bad[0]} is out of range: the {args.split} split has {len(split)} images")
    if args.action in ("probe", "cluster", "map") and split.labels is None:
        raise UsageError(f"{dataset.name} has no labels: {args.action} needs them")
    if args.action == "encode":
        result = latent.save_codes(model, split, output, seed=args.seed)
        line = f"wrote {result['n']} codes of {result['latent']} dimensions to {result['codes']}" + (
            f" and their labels to {result['labels']}" if "labels" in result else ""
        )
    elif args.action == "probe":
        result = latent.linear_probe(model, dataset, args.split, seed=args.seed)
        line = (
            f"linear probe on {result['latent']}-d codes: {args.split} accuracy {result['accuracy']:.4f} "
            f"(train {result['train_accuracy']:.4f}; majority class {result['chance']:.4f})"
        )
    elif args.action == "cluster":
        result = latent.cluster_codes(model, dataset, args.split, args.components, seed=args.seed)
        line = (
            f"Gaussian mixture of {result['components']} on the codes: ARI {result['ari']:.4f}, "
            f"NMI {result['nmi']:.4f} on {result['n']} {args.split} images"
        )
    elif args.action == "map":
        result = latent.latent_map(model, split, output, seed=args.seed)
        line = f"wrote a map of {result['n']} codes to {result['path']}"
    elif args.action == "interpolate":
        if len(args.index) % 2:
            raise UsageError("interpolate takes pairs: give an even number of --index (A B [A B ...])")
        pairs = list(zip(args.index[0::2], args.index[1::2]))
        rows = latent.interpolate(model, split, pairs, args.steps, args.seed, mean=not args.draw)
        path = save_grid(rows.reshape(-1, *model.image_shape), model.levels, output, nrow=rows.shape[1])
        result = {"path": str(path), "pairs": pairs}
        line = f"wrote {len(pairs)} rows (image A, {args.steps} decoded codes from A to B, image B) to {path}"
    else:
        rows = latent.reconstruct(model, split, args.index, args.seed, mean=not args.draw)
        path = save_grid(rows.reshape(-1, *model.image_shape), model.levels, output, nrow=rows.shape[1])
        result = {"path": str(path), "indices": args.index}
        line = f"wrote {len(args.index)} originals (top) and reconstructions (bottom) to {path}"
    print(json.dumps(result) if args.json else line)
    return 0


def add_weights_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        choices=["auto", "best", "last"],
        default="auto",
        help="which weights of a run directory: best (at the best validation score: early stopping), "
        "last (at the end of training), or auto (default: best when the run kept them, else last)",
    )


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (a UsageError), as every other genzoo error."""

    def error(self, message: str):
        raise UsageError(f"{message}; see `{self.prog} --help`")


SPLITS = ["train", "valid", "test"]
DEVICE_HELP = "auto (CUDA when available), cpu, cuda, cuda:N (default auto)"
SEED_HELP = "seed of every random draw (default 0)"
DATA_DIR_HELP = "data root (default: the one the run was trained with)"


def add_run_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory (runs/MODEL-DATA) or a model .safetensors file")


def build_parser() -> argparse.ArgumentParser:
    from genzoo import __version__
    from genzoo.train_config import add_train_arguments, count, positive_float, positive_int

    parser = Parser(prog="genzoo", description="Deep generative models with honest likelihoods.")
    parser.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list models and datasets")
    p.add_argument("--options", action="store_true", help="every model's options: type, default and meaning")
    p.add_argument("--recipes", action="store_true", help="the papers' recipes (--preset) with their figures")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser(
        "train",
        help="train a model, then evaluate it on the test split and draw samples",
        description="Train MODEL on --data; resumes from RUN_DIR's checkpoint, with the options it was trained "
        "with (a different run-defining option is refused unless --override names it).",
    )
    p.add_argument("model", help="a model name from `genzoo list`")
    p.add_argument("--data", help="dataset name (default: the recipe's, else digits, bundled)")
    p.add_argument("--data-dir", help="data root (default: $GENZOO_DATA or the user cache)")
    p.add_argument("--run-dir", help="output directory (default: runs/MODEL-DATA)")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model option, e.g. -o channels=64 -o num_blocks=7 (repeatable; see `genzoo describe MODEL`)",
    )
    p.add_argument(
        "--preset",
        metavar="RECIPE",
        help="a paper's recipe (model options, data and training config; "
        "see `genzoo describe MODEL`); flags given beside it override its values",
    )
    p.add_argument(
        "--task",
        choices=["superres", "colorize"],
        help="an image-conditioned model of --data: super-resolution from images downsampled by --scale, or "
        "colorization from their luminance; scored beside nearest/bicubic/gray and an L2 CNN",
    )
    p.add_argument("--scale", type=positive_int, help="with --task superres: the downsampling factor (e.g. 4)")
    p.add_argument(
        "--conditional",
        action="store_true",
        help="class-conditional model, p(x | y) (for models with optional labels: gated-pixelcnn, vae, iwae, dcgan)",
    )
    p.add_argument(
        "--fit",
        choices=["em", "closed-form"],
        help="fit without gradient steps: em (bernoulli-mixture and hmm: their default) or closed-form "
        "(naive-bayes: its default)",
    )
    p.add_argument("--em-iterations", type=positive_int, help="with --fit em: EM iterations at most")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="on resume, change a run-defining training option (e.g. --override lr=0.0005); recorded "
        "in log.jsonl (repeatable)",
    )
    add_train_arguments(p)
    p.add_argument("--samples", type=count, default=64, help="samples to draw into RUN_DIR/samples.png (0: none)")
    p.add_argument(
        "--eval-k",
        type=positive_int,
        default=5000,
        help="importance samples for the final test estimate of latent-variable models (default 5000)",
    )
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in RUN_DIR and start over")
    p.add_argument(
        "--test-data",
        metavar="NAME",
        help="score the test split of this dataset instead (same image format), e.g. binarized-mnist for a "
        "model trained on dynamic-mnist",
    )
    p.add_argument(
        "--test-max-images",
        type=positive_int,
        metavar="N",
        help="score only the first N test images at the end (quicker; the result is labelled partial)",
    )
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("eval", help="NLL of a trained run over a full split (nats and bits/dim)")
    add_run_argument(p)
    p.add_argument("--split", choices=SPLITS, default="test", help="the split to score (default test)")
    p.add_argument(
        "--data",
        help="score on another dataset of the same image format (default: the run's), "
        "e.g. binarized-mnist for a model trained on dynamic-mnist",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per batch (default 256)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--k", type=positive_int, default=5000, help="importance samples for latent-variable models (default 5000)"
    )
    p.add_argument(
        "--max-images",
        type=positive_int,
        metavar="N",
        help="score only the first N images of the split (the result is labelled partial)",
    )
    p.add_argument(
        "--samples",
        type=count,
        metavar="N",
        help="also score N samples: Fréchet distance, KID, precision/recall, class histogram in a "
        "feature network's space (default: the split's size for GANs, else 0)",
    )
    add_weights_option(p)
    p.add_argument(
        "--temperature",
        type=positive_float,
        action="append",
        help="super-resolution/colorization runs: also score samples drawn at temperature T (repeatable)",
    )
    p.add_argument(
        "--best-of",
        type=positive_int,
        action="append",
        metavar="N",
        help="super-resolution/colorization runs: also score outputs that are each the likeliest of N samples "
        "under the model's own log p(x | y) (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("sample", help="draw samples from a trained run into an image grid")
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument(
        "-o",
        "--output",
        default="samples.png",
        help="image file to write; its extension decides the format: .png, .jpg, .webp, .bmp, .tif "
        "(default samples.png)",
    )
    p.add_argument("--seed", type=count, default=0, help=SEED_HELP)
    p.add_argument("--class", dest="label", type=count, help="class label for a class-conditional model")
    p.add_argument("--naive", action="store_true", help="one full forward pass per subpixel (slow reference path)")
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=1.0,
        help="autoregressive models: draw each subpixel from its conditional raised to 1/T, renormalized "
        "(below 1: sharper, less diverse; default 1, the model itself)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--from",
        dest="condition",
        metavar="LOW.PNG",
        help="super-resolution/colorization runs: the condition image (low resolution, or gray)",
    )
    p.add_argument(
        "--index",
        type=count,
        action="append",
        default=None,
        help="super-resolution/colorization runs: a test image whose condition to use (repeatable)",
    )
    p.add_argument(
        "--best-of",
        type=positive_int,
        default=1,
        metavar="N",
        help="super-resolution/colorization runs: each picture is the likeliest of N samples under the model's "
        "own log p(x | y) (default 1: plain samples)",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    add_weights_option(p)
    p.set_defaults(handler=cmd_sample)

    p = sub.add_parser("complete", help="complete partly hidden images (inpainting) with an autoregressive model")
    add_run_argument(p)
    p.add_argument("--data", help="dataset name (checked against the run's dataset)")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--split", choices=SPLITS, default="test", help="the split the images come from (default test)")
    p.add_argument("--index", type=count, action="append", default=None, help="image index (repeatable; default 0..7)")
    p.add_argument(
        "--keep",
        default="top-half",
        choices=["top-half", "left-half"],
        help="the part of each image that is kept; the rest is sampled (default top-half)",
    )
    p.add_argument("--mask", help="PNG of the image size: nonzero pixels are kept (overrides --keep)")
    p.add_argument("--samples", type=positive_int, default=4, help="completions per image (default 4)")
    p.add_argument("-o", "--output", default="completions.png", help="image file to write (default completions.png)")
    p.add_argument("--seed", type=count, default=0, help=SEED_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_weights_option(p)
    p.set_defaults(handler=cmd_complete)

    p = sub.add_parser(
        "learning-curve",
        help="generative vs discriminative: naive Bayes vs logistic regression "
        "test error over training-set sizes (Ng & Jordan 2002)",
    )
    p.add_argument("--data", default="digits", help="a labelled dataset (default digits)")
    p.add_argument("--data-dir", help="data root (default: $GENZOO_DATA or the user cache)")
    p.add_argument("--out", default="runs/learning-curve", help="folder for learning_curve.csv and .png")
    p.add_argument(
        "--sizes",
        type=positive_int,
        nargs="+",
        help="training-set sizes, each at most the train split's (default 10 .. all)",
    )
    p.add_argument("--seeds", type=positive_int, default=5, help="random subsets per size (default 5)")
    p.set_defaults(handler=cmd_learning_curve)

    p = sub.add_parser(
        "simulate",
        help="fit a Gaussian HMM to a real time series, simulate series like it, "
        "compare marginals and autocorrelations (PNG + JSON)",
    )
    p.add_argument("--series", help="a series shipped with statsmodels: sunspots, co2, elnino, macro")
    p.add_argument("--csv", help="a CSV file with a header row (instead of --series)")
    p.add_argument("--columns", help="comma-separated CSV columns (default: every numeric column)")
    p.add_argument("--states", type=positive_int, default=3, help="hidden states (default 3)")
    p.add_argument(
        "--covariance",
        choices=["diag", "full"],
        default="diag",
        help="each state's Gaussian: diagonal or full covariance (default diag)",
    )
    p.add_argument("--samples", type=positive_int, default=100, help="simulated series (default 100)")
    p.add_argument("--lags", type=positive_int, default=20, help="autocorrelation lags (default 20)")
    p.add_argument("--restarts", type=positive_int, default=4, help="EM runs from random starts; the best is kept")
    p.add_argument("--iterations", type=positive_int, default=200, help="EM iterations per run at most")
    p.add_argument("--seed", type=count, default=0, help=SEED_HELP)
    p.add_argument("--out", help="output folder (default runs/simulate-NAME)")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser(
        "latent",
        help="use a VAE's or auto-encoder's latent space: encode, probe, cluster, map, interpolate, reconstruct",
        description="encode: codes to .npy (labels beside); probe: linear-probe accuracy of the "
        "codes; cluster: Gaussian-mixture ARI/NMI; map: 2-D scatter PNG (PCA above 2 "
        "dimensions); interpolate: decode along lines between pairs of codes; "
        "reconstruct: originals above reconstructions.",
    )
    add_run_argument(p)
    p.add_argument(
        "action",
        choices=["encode", "probe", "cluster", "map", "interpolate", "reconstruct"],
        help="what to do with the codes (see above)",
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="images to use (probe and cluster fit on train, score on this split)",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument(
        "-o",
        "--output",
        help="file to write (default: " + ", ".join(f"{k}: {v}" for k, v in LATENT_OUTPUTS.items()) + ")",
    )
    p.add_argument(
        "--index",
        type=count,
        action="append",
        default=None,
        help="image index (repeatable; default 0..7); interpolate pairs them up: A B [A B ...]",
    )
    p.add_argument("--steps", type=positive_int, default=10, help="decoded points per interpolation (default 10)")
    p.add_argument("--components", type=positive_int, help="mixture components (default: number of classes)")
    p.add_argument("--draw", action="store_true", help="draw pixels from p(x|z) instead of each one's mean level")
    p.add_argument("--seed", type=count, default=0, help=SEED_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_weights_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=cmd_latent)

    add_report_commands(sub)  # genzoo describe, genzoo report
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code says how it ended (``genzoo.errors``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(f"genzoo: error: {err}", file=sys.stderr)
        return err.exit_code
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command in ("complete", "latent") and args.index is None:
        args.index = list(range(8))
    try:
        return args.handler(args)
    except GenzooError as err:
        if os.environ.get("GENZOO_DEBUG"):
            raise
        print(f"genzoo: error: {err or type(err).__name__}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("genzoo: interrupted", file=sys.stderr)
        return SIGNAL_EXIT_CODES["SIGINT"]
    except BrokenPipeError:  # the reader of our output went away (e.g. `genzoo describe made | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def console_main() -> NoReturn:
    """The ``genzoo`` command: ``main``'s exit code (see ``genzoo.distributed.exit_process`` under torchrun)."""
    code = main()
    if "torch" not in sys.modules:  # nothing distributed ran (e.g. --help): keep the quick exit
        sys.exit(code)
    from genzoo.distributed import exit_process

    exit_process(code)


if __name__ == "__main__":
    console_main()
