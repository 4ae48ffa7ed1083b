"""Benchmark: training throughput of every model at its paper size, and the ratios that judge it, in one run.

    python benchmarks/throughput.py --model nade --threads 1 --seconds 10 --json
    python benchmarks/throughput.py --all --threads 1 --seconds 10 --json > benchmarks/logs/throughput-1thread.log

For one model (``--model``) or every registered one (``--all``), on its paper's data (PAPER below), in ONE
process:

- ``images_per_sec``: a bare loop of the model's own ``train_step`` (the default one is zero_grad / loss /
  backward / step) with the trainer's optimizer (Adam unless the model sets its own), no clipping, no
  logging, for ``--seconds`` after a warm-up. Models fitted without gradient steps time their fit instead:
  EM models (``fit_em``) count E-step images, naive Bayes its closed-form counting (``timing`` says which);
- ``flops_per_image``: matrix-product FLOPs (``torch.utils.flop_counter.FlopCounterMode``, plus
  matrix-vector products) of one step, forward and backward, per image; ``gflops`` the achieved rate;
- ``matmul_gflops``: a plain matmul of the model's largest product (the largest mm/bmm of the step, or
  the im2col-equivalent product of its largest convolution), timed in the same process and dtype;
  ``fraction_of_matmul`` = gflops / matmul_gflops;
- ``products_alone_fraction``: the same step's products and convolutions (every counted call, forward and
  backward, same shapes, strides and dtypes, on look-alike tensors) replayed with nothing else, their
  GFLOP/s over matmul_gflops: the bound on ``fraction_of_matmul`` if all other work were free;
  ``product_time_share`` = images/s / products-alone images/s, the share of a step that the products take;
- ``overhead_fraction`` = 1 - (images/s of ``genzoo.train.train``, as its result reports them) / (bare
  loop images/s): the same update as the bare loop (no gradient clipping), default log and checkpoint
  intervals; one warm-up call, then resumed calls of ``--seconds`` in all that are timed; validation only
  at the ends, outside the timing. ``clipping_fraction``: what the trainer's default clipping (a gradient
  norm per step, applied inside the fused Adam step) costs on top, 1 - clipped / unclipped trainer rate;
  ``overhead_fraction_clipped`` = 1 - clipped trainer rate / bare rate (the figure before 2026-12-01);
- ``reference_ratio``: against the textbook form of the same computation: NADE's loss vs its
  per-dimension loop (``NADE.log_prob_loop``) as training steps on the same batch; other models with a
  cached sampler: cached vs naive sampling (the naive sampler timed on the first few subpixels and scaled
  by D / k: each naive step is one full forward pass); else null. RBM: also AIS chain sweeps per second.

Prints (with ``--json``) one JSON line per model and appends it to benchmarks/results.jsonl (unless
``--no-save``); ``--all`` ends with a markdown table. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry, shape_wrapper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_nll import command_line, device_name, record_result  # noqa: E402

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
aten = torch.ops.aten

# Paper sizes and data. These will later come from the registry's presets (genzoo.recipes: "nade",
# "made", "fvsbn", "rbm", "dbn", "vae", "iwae", "bernoulli-mixture" have one today); until then they live
# here. batch: images per step on this CPU (paper batches are larger for the conv models; --batch-size
# overrides); sample: images drawn for the cached/naive sampling ratio.
PAPER = {
    "independent": {"data": "binarized-mnist", "options": {}, "batch": 256},
    "fvsbn": {"data": "binarized-mnist", "options": {}, "batch": 256},
    "nade": {"data": "binarized-mnist", "options": {"hidden": 500}, "batch": 256},  # Larochelle & Murray 2011
    "made": {"data": "binarized-mnist", "options": {"hidden": [8000], "num_masks": 1}, "batch": 256},  # Germain 2015
    "pixelcnn": {"data": "binarized-mnist", "options": {}, "batch": 16, "sample": 4},  # defaults: [1]'s 15 layers
    "gated-pixelcnn": {"data": "binarized-mnist", "options": {}, "batch": 16, "sample": 4},
    "row-lstm": {"data": "binarized-mnist", "options": {}, "batch": 16, "sample": 4},
    "diagonal-bilstm": {"data": "binarized-mnist", "options": {}, "batch": 16, "sample": 4},  # h=16, 7 layers
    "pixelcnn++": {  # Salimans et al. 2017, CIFAR-10 model: 160 filters, 5 resnets, 10 mixtures, dropout 0.5
        "data": "mnist",
        "options": {"channels": 160, "num_resnet": 5, "num_mixtures": 10, "dropout": 0.5},
        "batch": 4,
        "sample": 2,
    },
    "pixelsnail": {  # Chen et al. 2018, CIFAR-10 model: 256 filters, 12 blocks (4 resnets), keys 16, values 128
        "data": "mnist",
        "options": {
            "channels": 256,
            "num_blocks": 12,
            "num_resnet": 4,
            "attention_heads": 1,
            "key_channels": 16,
            "value_channels": 128,
            "dropout": 0.5,
            "output": "logistic",
            "num_mixtures": 10,
        },
        "batch": 2,
        "sample": 1,
    },
    "rbm": {"data": "binarized-mnist", "options": {"hidden": 500, "cd_steps": 1}, "batch": 256},
    "dbn": {"data": "binarized-mnist", "options": {"hidden": [500, 2000]}, "batch": 256},  # step 0: layer 1
    "vae": {"data": "binarized-mnist", "options": {"hidden": [200, 200], "latent": 50}, "batch": 256},
    "iwae": {  # Burda et al. 2016, 2 stochastic layers: 784-100-100-z1(100)-50-50-z2(50); k=5 (registry)
        "data": "binarized-mnist",
        "options": {
            "hidden": [100, 100],
            "latent": 100,
            "stochastic_layers": 2,
            "top_latent": 50,
            "top_hidden": [50, 50],
        },  # fmt: skip
        "batch": 256,
    },
    "autoencoder": {"data": "binarized-mnist", "options": {}, "batch": 256},
    "dcgan": {"data": "mnist", "options": {}, "batch": 128},  # Radford et al. 2016: batch 128
    "wgan-gp": {"data": "mnist", "options": {}, "batch": 64},  # Gulrajani et al. 2017: batch 64
    "cgan": {"data": "mnist", "options": {}, "batch": 128},
    "bernoulli-mixture": {"data": "binarized-mnist", "options": {"components": 500}},  # EM on the train split
    "naive-bayes": {"data": "dynamic-mnist", "options": {}},  # needs labels: binarized MNIST with them
    "hmm": {"data": "binarized-mnist", "options": {}},  # EM on the train split
}
MLP_SHAPED = {"independent", "fvsbn", "nade", "made", "rbm", "dbn", "vae", "iwae", "autoencoder",
              "bernoulli-mixture", "naive-bayes", "hmm"}  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- FLOPs and the largest matrix product ---------------------------------------------------------------


def _mv_flop(a_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


def _addmv_flop(self_shape, a_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


def _addmm_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


EXTRA_FLOPS = {aten.mv: _mv_flop, aten.addmv: _addmv_flop, aten.addmv_: _addmv_flop, aten.addmm_: _addmm_flop}


def product_shape(func, args, out) -> tuple[int, int, int, int] | None:
    """(batch, M, K, N) of a matrix product, or of a convolution's im2col-equivalent product."""
    packet = func._overloadpacket
    if packet in (aten.mm, aten.addmm, aten.addmm_, aten.mv, aten.addmv, aten.addmv_):
        a, b = (args[0], args[1]) if packet in (aten.mm, aten.mv) else (args[1], args[2])
        return 1, a.shape[0], a.shape[1], b.shape[1] if b.dim() == 2 else 1
    if packet in (aten.bmm, aten.baddbmm, aten.baddbmm_):
        a, b = (args[0], args[1]) if packet == aten.bmm else (args[1], args[2])
        return a.shape[0], a.shape[1], a.shape[2], b.shape[2]
    if packet == aten.convolution:
        x, weight, transposed, groups = args[0], args[1], args[6], args[8]
        if transposed:  # col2im form: every input position times the whole kernel
            return groups, x.shape[0] * math.prod(x.shape[2:]), x.shape[1] // groups, math.prod(weight.shape[1:])
        k = math.prod(weight.shape[1:])
        return groups, out.shape[0] * math.prod(out.shape[2:]), k, weight.shape[0] // groups
    return None


class ProductCounter(TorchDispatchMode):
    """FLOPs of the matrix products and convolutions of what runs inside it, by FlopCounterMode's own
    formulas (``torch.utils.flop_counter.flop_registry``, plus matrix-vector products), and the product
    with the most FLOPs: its (batch, M, K, N) and dtype. FlopCounterMode itself is not used: its module
    tracker breaks double backward (a WGAN-GP's gradient penalty)."""

    def __init__(self, keep_calls: bool = False):
        super().__init__()
        self.registry = {**flop_registry, **{k: shape_wrapper(v) for k, v in EXTRA_FLOPS.items()}}
        self.flops, self.best, self.dtype = 0, None, torch.float32
        self.calls = [] if keep_calls else None  # every counted call, its tensors replaced by look-alikes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += int(formula(*args, **kwargs, out_val=out))
            if self.calls is not None:
                self.calls.append((func, *tree_map(look_alike, (args, kwargs))))
        shape = product_shape(func, args, out)
        if shape is not None and (self.best is None or math.prod(shape) > math.prod(self.best)):
            self.best, self.dtype = shape, args[1].dtype
        return out


def look_alike(value):
    """A tensor of the same size, strides and dtype on fresh random data (other values unchanged)."""
    if not isinstance(value, torch.Tensor):
        return value
    extent = 1 + sum((n - 1) * st for n, st in zip(value.shape, value.stride())) if value.numel() else 0
    base = torch.randn(extent) if value.is_floating_point() else torch.zeros(extent)
    return base.to(value.dtype).as_strided(value.shape, value.stride())


def count(fn, keep_calls: bool = False) -> tuple:
    """(matrix-product FLOPs, largest product's (batch, M, K, N), its dtype) of running ``fn()``; with
    ``keep_calls`` also the list of its counted calls, replayable on look-alike tensors (``ProductsAlone``)."""
    with ProductCounter(keep_calls) as counter:
        fn()
    return (counter.flops, counter.best, counter.dtype) + ((counter.calls,) if keep_calls else ())


class ProductsAlone:
    """The step's matrix products and convolutions (forward and backward, the calls ``count`` saw, in order,
    same shapes, strides and dtypes) and nothing else: a ``Loop`` step. Its rate is what the model would
    reach if everything but its products were free, so products-alone GFLOP/s over the reference matmul's
    bounds ``fraction_of_matmul`` from above."""

    def __init__(self, calls):
        self.calls = calls

    def __call__(self, i) -> None:
        with torch.no_grad():
            for func, args, kwargs in self.calls:
                func(*args, **kwargs)


class MatmulLoop:
    """A plain (batched) matmul of ``shape`` = (batch, M, K, N) in ``dtype`` on random data, as a loop that
    is interleaved with the model's: of (M x K) @ (K x N) and its transpose (N x K) @ (K x M), the one
    this machine runs faster (the machine's best for those sizes)."""

    def __init__(self, shape, dtype):
        batch, m, k, n = shape
        self.flops, self.items, self.wall = 2 * batch * m * k * n, 0, 0.0
        best = None
        for rows, cols in ((m, n), (n, m)):
            a, b = torch.randn(batch, rows, k, dtype=dtype), torch.randn(batch, k, cols, dtype=dtype)
            operands = (a[0], b[0]) if batch == 1 else (a, b)
            self.product = torch.mm if batch == 1 else torch.bmm
            self.operands, self.out = operands, self.product(*operands)
            probe = self.time(0.2)
            if best is None or probe < best[0]:
                best = (probe, operands, self.out)
        _, self.operands, self.out = best

    def time(self, seconds: float) -> float:
        """Seconds per product, over at least 3 products and ``seconds``."""
        reps, start = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - start < seconds:
            self.product(*self.operands, out=self.out)
            reps += 1
        return (time.perf_counter() - start) / reps

    def run(self, seconds: float) -> None:
        reps, start = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - start < seconds:
            self.product(*self.operands, out=self.out)
            reps += 1
        self.items += reps
        self.wall += time.perf_counter() - start

    @property
    def gflops(self) -> float:
        return self.flops * self.items / self.wall / 1e9


def describe_shape(shape) -> str | None:
    if shape is None:
        return None
    batch, m, k, n = shape
    return f"{batch}x " * (batch > 1) + f"({m}x{k}) @ ({k}x{n})"


# -- timing ---------------------------------------------------------------------------------------------


class Loop:
    """Calls ``step(i)`` (``per_call`` items each) in timed chunks, after one warm-up; keeps the totals, so
    that chunks of several loops can be interleaved and none gains from a quieter moment of a shared CPU."""

    def __init__(self, step, per_call: int):
        self.step, self.per_call, self.calls = step, per_call, 0
        self.items, self.wall, self.cpu = 0, 0.0, 0.0

    def warm_up(self) -> None:
        start = time.perf_counter()
        self.step(self.calls)
        self.calls += 1
        self.call_seconds = time.perf_counter() - start
        if self.call_seconds < 5.0:  # a second warm-up call unless one call is already slow
            start = time.perf_counter()
            self.step(self.calls)
            self.calls += 1
            self.call_seconds = time.perf_counter() - start

    def run(self, seconds: float) -> None:
        wall, cpu, calls = time.perf_counter(), time.process_time(), 0
        while calls == 0 or time.perf_counter() - wall < seconds:
            self.step(self.calls)
            self.calls, calls = self.calls + 1, calls + 1
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.items += calls * self.per_call
        self.timed_calls = getattr(self, "timed_calls", 0) + calls

    @property
    def rate(self) -> float:
        return self.items / self.wall

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second per thread: below 1 when other processes share the cores."""
        return self.cpu / self.wall / torch.get_num_threads()


def fixed_batches(split, batch_size: int, count: int = 8, seed: int = 0) -> list:
    """``count`` random training batches (x, y), drawn once: the bare loop measures the model, not data."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        index = torch.randint(0, len(split), (batch_size,), generator=generator)
        out.append(split.batch(index, generator))
    return out


def make_optimizers(model, fused: bool = False):
    """The trainer's optimizers for the model (one per parameter group, the model's options applied);
    ``fused``: torch's fused Adam in their place, same hyperparameters (the change proposed for optim.py)."""
    from genzoo.optim import make_optimizer, optimizer_config, optimizer_groups
    from genzoo.train import TrainConfig

    optimizers = {}
    for name, params in optimizer_groups(model).items():
        config = optimizer_config(model, name, TrainConfig())
        if fused and config.optimizer in ("adam", "adamw"):
            cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
            optimizers[name] = cls(params, lr=config.lr, betas=tuple(config.betas),
                                   weight_decay=config.weight_decay, fused=True)  # fmt: skip
        else:
            optimizers[name] = make_optimizer(params, config)
    return optimizers


def train_step_loop(model, batches, loss_fn=None, fused: bool = False, amp: str = "off") -> Loop:
    """A bare loop of the model's own train_step on fixed batches, with the trainer's optimizers; ``amp``
    "bf16": each step under bf16 autocast, as the trainer runs it with ``TrainConfig.amp = "bf16"``."""
    import contextlib

    from genzoo.models.base import Batch

    optimizers = make_optimizers(model, fused)
    loss_fn = loss_fn or model.training_loss
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp == "bf16" else contextlib.nullcontext

    def step(i):
        x, y = batches[i % len(batches)]
        with autocast():
            model.train_step(Batch(x, y), i, optimizers, loss_fn)

    return Loop(step, batches[0][0].shape[0])


class TrainerLoop:
    """``genzoo.train.train`` in chunks: a warm-up call, then resumed calls of a given time each; the rate
    is the images/s that its results report ("images_per_sec", training only), weighted by their time."""

    def __init__(self, model, dataset, batch_size: int, grad_clip: float | None = None, amp: str = "off"):
        from genzoo.train import TrainConfig

        self.model, self.dataset, self.items, self.wall = model, dataset, 0.0, 0.0
        self.cpu, self.calls, self.steps_run = 0.0, 0, 0  # process CPU time of the resumed calls, whole
        fields = {f.name for f in dataclasses.fields(TrainConfig)}  # the trainer's API may grow: only known fields
        options = {"batch_size": batch_size, "max_steps": 2, "device": "cpu", "progress": False, "seed": 0,
                   "eval_every": 10**9, "eval_max_images": batch_size, "grad_clip": grad_clip, "amp": amp}  # fmt: skip
        self.config = TrainConfig(**{k: v for k, v in options.items() if k in fields})
        self.directory = tempfile.TemporaryDirectory(prefix="throughput-")
        self.elapsed, self.steps = None, 0

    def run(self, seconds: float) -> None:
        from genzoo.train import train

        if self.elapsed is None:  # warm-up: a fresh run of 2 steps, saved, then resumed below
            first = train(self.model, self.dataset, self.directory.name, self.config, resume=False)
            self.elapsed, self.steps = first["elapsed"], first["step"]
        config = dataclasses.replace(self.config, max_steps=None, max_time=self.elapsed + seconds)
        before, cpu = self.steps, time.process_time()
        result = train(self.model, self.dataset, self.directory.name, config, resume=True)
        self.cpu, self.calls = self.cpu + time.process_time() - cpu, self.calls + 1
        self.elapsed, self.steps = result["elapsed"], result["step"]
        images = (self.steps - before) * self.config.batch_size
        self.items, self.steps_run = self.items + images, self.steps_run + self.steps - before
        self.wall += images / result["images_per_sec"]

    @property
    def rate(self) -> float:
        return self.items / self.wall

    def cpu_per_step(self) -> float | None:
        """CPU seconds per training step, robust to other processes taking the CPU: the resumed calls'
        process time less that of as many one-step calls (restore, final validation and save), per step."""
        from genzoo.train import train

        if self.steps_run <= self.calls:
            return None
        config = dataclasses.replace(self.config, max_steps=self.steps + 1, max_time=None)
        cpu = time.process_time()
        train(self.model, self.dataset, self.directory.name, config, resume=True)
        one_step_call = time.process_time() - cpu
        self.steps += 1
        return (self.cpu - self.calls * one_step_call) / (self.steps_run - self.calls)

    def close(self) -> None:
        self.directory.cleanup()


def interleaved(loops: list, seconds: list[float], rounds: int = 2) -> None:
    """Run each loop for its ``seconds`` in all, in ``rounds`` alternating chunks: a shared CPU's quieter
    and busier moments then fall on all of them alike."""
    for _ in range(rounds):
        for loop, total in zip(loops, seconds):
            loop.run(total / rounds)


def fit_timing(model, split) -> tuple[Loop, float, tuple | None, torch.dtype, str]:
    """EM (fit_em) or closed-form (fit) models: (warmed-up loop, FLOPs per image, largest product, its dtype,
    what is timed)."""
    generator = torch.Generator().manual_seed(0)
    x, y = split.full_batch(generator)
    n = x.shape[0]
    if model.default_fit == "em":
        model.fit_em(x, iterations=0, generator=generator)  # the initialization, untimed

        def step(i):  # one M-step between two E-steps over the n images
            model.fit_em(x, iterations=1, init=False, tol=-math.inf, generator=generator)

        loop, what, per_image = Loop(step, 2 * n), f"EM on {n} training images: E-step images/s", 2 * n
    else:

        def step(i):
            model.fit(x, y)

        loop, what, per_image = Loop(step, n), f"closed-form fit (counting) of {n} training images", n
    loop.warm_up()
    flops, shape, dtype = count(lambda: step(0))
    return loop, flops / per_image, shape, dtype, what


def sampling_ratio(model, n: int) -> dict:
    """Cached vs naive sampling of ``n`` images: naive timed on its first k subpixels, scaled by D / k."""
    d = model.num_dims
    x = torch.zeros((n, *model.image_shape), dtype=torch.long)
    order = model.ordering()

    def naive_seconds(k: int) -> float:
        known = torch.ones(d, dtype=torch.bool)
        known[order[:k]] = False
        start = time.perf_counter()
        model.sample(n, generator=torch.Generator().manual_seed(0), x=x, known=known.reshape(model.image_shape),
                     naive=True)  # fmt: skip
        return time.perf_counter() - start

    model.eval()
    try:
        model.sample(1, generator=torch.Generator().manual_seed(0))  # warm-up
        start = time.perf_counter()
        model.sample(n, generator=torch.Generator().manual_seed(0))
        cached = time.perf_counter() - start
        one = naive_seconds(1)
        k = max(1, min(d, int(2.0 / max(one, 1e-6))))
        naive = naive_seconds(k) * d / k
    finally:
        model.train()
    return {"sample_images": n, "cached_sample_seconds": cached, "naive_sample_seconds_scaled": naive,
            "naive_steps_timed": k, "sampling_ratio": naive / cached}  # fmt: skip


def ais_rate(model) -> dict:
    """AIS chain sweeps per second (100 chains), from a short schedule: the cost per temperature is fixed."""
    model.log_partition_ais(num_chains=100, num_betas=20)  # warm-up
    betas, start = 200, time.perf_counter()
    model.log_partition_ais(num_chains=100, num_betas=betas)
    return {"ais_chain_sweeps_per_sec": 100 * betas / (time.perf_counter() - start)}


# -- one model ------------------------------------------------------------------------------------------


def measure(name: str, args) -> dict:
    from genzoo.data import load_dataset
    from genzoo.models.base import AutoregressiveModel
    from genzoo.registry import create, entry, model_class

    spec = PAPER.get(name, {"data": "binarized-mnist", "options": {}, "batch": 64})
    note = [] if name in PAPER else ["no paper size recorded: the constructor's defaults"]
    dataset = load_dataset(spec["data"], args.data_dir)
    options = dict(spec["options"])
    cls = model_class(name)
    if entry(name).conditional or cls.label_use == "always":
        options.setdefault("num_classes", dataset.num_classes)
    torch.manual_seed(0)
    model = create(name, dataset.image_shape, dataset.levels, **options)
    batch_size = args.batch_size or spec.get("batch", 256)
    record = {"benchmark": "throughput", "model": name, "options": options or None, "data": spec["data"],
              "batch_size": batch_size, "threads": torch.get_num_threads(),
              "params": sum(p.numel() for p in model.parameters())}  # fmt: skip
    log(f"[{name}] {spec['data']}, options {options}, {record['params']:,} parameters")
    start = time.perf_counter()
    reference: dict = {"reference_ratio": None}
    matmul_seconds = min(2.0, args.seconds / 2)
    textbook = trainer = products = None
    if cls.default_fit is not None:
        record["batch_size"] = None
        bare, flops, shape, dtype, record["timing"] = fit_timing(model, dataset.train)
        note.append("fitted without gradient steps: no trainer overhead")
        loops, seconds = [bare], [args.seconds]
    else:
        model.init_from_data(dataset.train)
        batches = fixed_batches(dataset.train, batch_size)
        bare = train_step_loop(model, batches, fused=args.fused_adam, amp=args.amp)
        bare.warm_up()
        record["timing"] = "bare train_step loop (zero_grad, loss, backward, step), " + (
            "torch's fused Adam" if args.fused_adam else "the trainer's optimizer (Adam)"
        )
        # the next step (a schedule may depend on it)
        flops, shape, dtype, calls = count(lambda: bare.step(bare.calls), keep_calls=True)
        flops /= batch_size
        if args.amp == "bf16":  # autocast ran the products in bf16: the reference stays the fp32 product
            dtype = torch.float32
        if name == "nade":  # its kernel never multiplies x by all of W: the input layer's product stands for it
            shape, dtype = (1, batch_size, model.W.shape[0] * model.W.shape[1], model.W.shape[2]), model.W.dtype
        loops, seconds = [bare], [args.seconds]
        if calls:  # the same products with nothing else
            products = Loop(ProductsAlone(calls), batch_size)
            products.warm_up()
            loops, seconds = loops + [products], seconds + [args.seconds / 2]
        if hasattr(model, "log_prob_loop"):  # NADE's textbook per-dimension loop, training on the same batches
            textbook = train_step_loop(
                model, batches, lambda x, y, step: -model.log_prob_loop(x).mean(), fused=args.fused_adam, amp=args.amp
            )
            textbook.warm_up()
            loops, seconds = loops + [textbook], seconds + [args.seconds / 2]
        if not (args.skip_trainer or args.fused_adam):  # the trainer has no fused Adam to compare with
            trainer = TrainerLoop(model, dataset, batch_size, amp=args.amp)
            from genzoo.train import TrainConfig

            clipped = TrainerLoop(model, dataset, batch_size, grad_clip=TrainConfig().grad_clip, amp=args.amp)
            loops, seconds = loops + [trainer, clipped], seconds + [args.seconds, args.seconds]
    matmul = MatmulLoop(shape, dtype) if shape is not None else None
    if matmul is not None:
        loops, seconds = loops + [matmul], seconds + [matmul_seconds]
    half = MatmulLoop(shape, torch.bfloat16) if shape is not None and args.amp == "bf16" else None
    if half is not None:  # the same product in bf16: the machine's limit for what autocast runs
        loops, seconds = loops + [half], seconds + [matmul_seconds]
    # chunks of about 2 s (at least two calls each): a shared CPU's busy and quiet spells average out
    rounds = max(2, min(5, int(args.seconds / max(2 * bare.call_seconds, 2.0))))
    log(f"[{name}] timing, {rounds} interleaved rounds: " + ", ".join(type(loop).__name__ for loop in loops))
    interleaved(loops, seconds, rounds)
    record["rounds"] = rounds
    ips = bare.rate
    record["cpu_share"] = bare.cpu_share
    overhead = None
    if trainer is not None:
        record["trainer_images_per_sec"] = trainer.rate
        overhead = 1.0 - trainer.rate / ips
        record["overhead_ms_per_step"] = 1e3 * batch_size * (1.0 / trainer.rate - 1.0 / ips)
        trainer_cpu = trainer.cpu_per_step()
        if trainer_cpu is not None:  # the same comparison in CPU time, which other processes cannot inflate
            bare_cpu = bare.cpu / bare.timed_calls
            record["overhead_fraction_cpu"] = 1.0 - bare_cpu / trainer_cpu
            record["overhead_cpu_ms_per_step"] = 1e3 * (trainer_cpu - bare_cpu)
        record["trainer_clipped_images_per_sec"] = clipped.rate
        record["clipping_fraction"] = 1.0 - clipped.rate / trainer.rate
        record["overhead_fraction_clipped"] = 1.0 - clipped.rate / ips
        trainer.close()
        clipped.close()
    if textbook is not None:
        reference.update(reference="NADE.log_prob_loop training steps (the textbook per-dimension loop)",
                         reference_images_per_sec=textbook.rate, reference_ratio=ips / textbook.rate)  # fmt: skip
    if isinstance(model, AutoregressiveModel) and model.has_cached_sampling and not args.skip_reference:
        log(f"[{name}] sampling: cached vs naive")
        sampled = sampling_ratio(model, spec.get("sample", 16))
        reference.update(sampled)
        if textbook is None:
            reference.update(reference="cached vs naive sampling", reference_ratio=sampled["sampling_ratio"])
    if hasattr(model, "log_partition_ais"):
        reference.update(ais_rate(model))
    gflops = flops * ips / 1e9
    matmul = matmul.gflops if matmul is not None else None
    record.update(
        {
            "images_per_sec": ips,
            "flops_per_image": flops,
            "gflops": gflops,
            "matmul_gflops": matmul,
            "matmul_shape": describe_shape(shape),
            "matmul_dtype": str(dtype).removeprefix("torch.") if shape is not None else None,
            "fraction_of_matmul": gflops / matmul if matmul and flops else None,
            **(
                {
                    "products_alone_images_per_sec": products.rate,
                    "products_alone_fraction": flops * products.rate / 1e9 / matmul if matmul else None,
                    "product_time_share": ips / products.rate,
                }
                if products is not None
                else {}
            ),
            "amp": args.amp,
            **(
                {"matmul_gflops_bf16": half.gflops, "fraction_of_bf16_matmul": gflops / half.gflops if flops else None}
                if half is not None
                else {}
            ),
            "overhead_fraction": overhead,
            **reference,
            "note": "; ".join(note) or None,
            "wall_seconds": time.perf_counter() - start,
            "command": command_line(),
            "device": device_name(torch.device("cpu")),
            "torch": torch.__version__,
        }
    )
    return record


def table(records: list[dict]) -> str:
    def num(value, digits=3):
        return "" if value is None else f"{value:.{digits}g}"

    lines = [
        "| model | data | batch | images/s | GFLOP/image | GFLOP/s | matmul GFLOP/s (shape) | fraction | overhead | "
        "reference ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |||||||||")
            continue
        lines.append(
            f"| {r['model']} | {r['data']} | {r['batch_size'] or ''} | {num(r['images_per_sec'], 4)} | "
            f"{num(r['flops_per_image'] / 1e9)} | {num(r['gflops'])} | {num(r['matmul_gflops'])} "
            f"({r['matmul_shape'] or '-'}) | {num(r['fraction_of_matmul'], 2)} | {num(r['overhead_fraction'], 2)} | "
            f"{num(r['reference_ratio'])} |"
        )
    return "\n".join(lines)


def main() -> int:
    from genzoo.registry import MODELS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a registered model name")
    which.add_argument("--all", action="store_true", help="every registered model, then a markdown table")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds of each loop (default 10)")
    p.add_argument("--batch-size", type=int, help="images per step (default: the model's entry in PAPER)")
    p.add_argument("--json", action="store_true", help="print each model's JSON record on stdout")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--skip-trainer", action="store_true", help="no trainer-overhead measurement")
    p.add_argument("--skip-reference", action="store_true", help="no cached/naive sampling ratio")
    p.add_argument("--fused-adam", action="store_true", help="bare loop with torch's fused Adam (no trainer)")
    p.add_argument(
        "--amp",
        default="off",
        choices=("off", "bf16"),
        help="train under bf16 autocast (the trainer's --amp bf16); fraction_of_matmul stays against the fp32 "
        "product, fraction_of_bf16_matmul is against the same product in bf16",
    )
    p.add_argument("--no-save", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = list(MODELS) if args.all else [args.model]
    records = []
    for name in names:
        try:
            record = measure(name, args)
        except Exception as err:  # one model's failure must not lose the others' numbers
            if not args.all:
                raise
            log(f"[{name}] failed: {type(err).__name__}: {err}")
            records.append({"model": name, "error": f"{type(err).__name__}: {err}"})
            continue
        records.append(record)
        if args.json:
            record_result(record, save=not args.no_save)
        else:
            if not args.no_save:
                with open(Path(__file__).resolve().parent / "results.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
        log(table([record]).splitlines()[-1])
    if args.all or not args.json:
        print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
