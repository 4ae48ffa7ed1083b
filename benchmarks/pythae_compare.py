"""Benchmark: genzoo's VAE beside pythae's VAE, same network and data, equal wall-clock training time.

    python benchmarks/pythae_compare.py --seconds 600 --threads 1 --k 200 --test-images 2000

Both models are the 784-400-40 ReLU VAE with a Bernoulli (BCE) decoder, trained on static binarized MNIST
(50k train) with Adam, lr 1e-4, batch 100, in this one process on the same number of threads, each by its
own library's training code, for the same wall-clock budget (--seconds):

- genzoo: ``genzoo.train.train`` with ``TrainConfig(max_time=S, ...)``; its elapsed time at the step that
  reached the budget comes from the run's timing.jsonl (the final validation and save come after it).
- pythae: ``TrainingPipeline`` / ``BaseTrainer`` with no validation set and a callback that stops it at the
  first step past the budget (pythae has no time budget of its own), timed from ``on_train_begin``.

Then ONE importance-sampling routine (``importance_nll`` below) scores both models on the same test images
with the same noise: -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), from each model's encoder
(mu, log sigma^2) and decoder logits. genzoo's own ``log_prob_estimate`` (independent noise) is a
cross-check on genzoo's model; pythae's own ``get_nll`` is reported on a few images for reference.

Prints one JSON line and appends it to benchmarks/results.jsonl. pythae is a benchmark-only dependency
(``pip install pythae``), not one of genzoo's. Run directories go under benchmarks/runs/pythae-compare/.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import threading
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # pythae's per-step progress bar: off, as genzoo's (progress=False)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from train_nll import command_line, device_name, record_result  # noqa: E402

HERE = Path(__file__).resolve().parent
SHAPE = (1, 28, 28)
HIDDEN, LATENT, BATCH, LR = 400, 40, 100, 1e-4
LOG_2PI = math.log(2 * math.pi)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class LoadSampler:
    """Samples the 1-minute load average every few seconds in a background thread, per named phase."""

    def __init__(self, every: float = 5.0):
        self.every, self.phase, self.samples = every, None, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            if self.phase is not None:
                self.samples.setdefault(self.phase, []).append(os.getloadavg()[0])

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def mean(self, phase: str) -> float | None:
        values = self.samples.get(phase)
        return sum(values) / len(values) if values else None


# -- one evaluation routine for both models ---------------------------------------------------------------


@torch.no_grad()
def importance_nll(encode, logits_of, images: torch.Tensor, k: int, seed: int, batch: int = 100) -> torch.Tensor:
    """Per-image -log p(x) estimates (nats), -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) with z_i ~ q(z|x).

    ``encode(x)`` gives (mu, log_var) of the diagonal Gaussian q(z|x) for binary images x (n, 1, 28, 28)
    uint8; ``logits_of(z)`` the Bernoulli logits (m, 784) of p(x|z) for z (m, latent). The noise comes from
    one generator seeded with ``seed`` and is drawn in the same order for any model, so two models scored
    with the same seed see the same standard-normal draws (common random numbers)."""
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, 2**20 // (batch * images[0].numel()))  # decoder outputs of ~4 MiB per chunk of samples
    out = []
    for start in range(0, len(images), batch):
        xb = images[start : start + batch]
        x = xb.flatten(1).float()
        mu, log_var = encode(xb)
        n, d = mu.shape
        total = torch.full((n,), -math.inf, dtype=torch.float64)
        for s0 in range(0, k, chunk):
            s = min(chunk, k - s0)
            eps = torch.randn(s, n, d, generator=generator)
            z = mu + torch.exp(0.5 * log_var) * eps
            logits = logits_of(z.reshape(s * n, d)).reshape(s, n, -1).float()
            log_px_z = (logits * x).sum(-1) - F.softplus(logits).sum(-1)  # Bernoulli log-likelihood from logits
            log_pz = -0.5 * (z.pow(2).sum(-1) + d * LOG_2PI)
            log_qz = -0.5 * ((log_var + (z - mu).pow(2) / log_var.exp()).sum(-1) + d * LOG_2PI)
            log_w = (log_px_z + log_pz - log_qz).double()
            total = torch.logaddexp(total, torch.logsumexp(log_w, 0))
        out.append(-(total - math.log(k)))
    return torch.cat(out)


def mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")


# -- pythae's side: the same network as genzoo's, in pythae's encoder/decoder classes ----------------------


def pythae_model(seed: int, inputs: str = "raw"):
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        """784-400-(40 mu, 40 log sigma^2), ReLU; raw {0, 1} pixels in, as in pythae's benchmark scripts
        (``inputs="symmetric"``: mapped to {-1, 1} first, as genzoo's encoder does)."""

        def __init__(self):
            BaseEncoder.__init__(self)
            self.net = nn.Sequential(nn.Linear(math.prod(SHAPE), HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))

        def forward(self, x):
            x = x.reshape(x.shape[0], -1)
            mu, log_var = self.net(2 * x - 1 if inputs == "symmetric" else x).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        """40-400-784, ReLU, sigmoid means (pythae's BCE takes probabilities); ``logits`` is the pre-sigmoid part."""

        def __init__(self):
            BaseDecoder.__init__(self)
            self.net = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, math.prod(SHAPE)))

        def logits(self, z):
            return self.net(z)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(z.shape[0], *SHAPE))

    torch.manual_seed(seed)
    config = VAEConfig(input_dim=SHAPE, latent_dim=LATENT, reconstruction_loss="bce")
    return VAE(model_config=config, encoder=Encoder(), decoder=Decoder())


class BudgetReached(Exception):
    pass


def train_pythae(model, train_images: torch.Tensor, seconds: float, out_dir: Path, epochs: int) -> dict:
    """pythae's TrainingPipeline (BaseTrainer) without validation, stopped by a callback at the first step
    whose end is past ``seconds`` after ``on_train_begin``. Returns steps, epochs, training seconds."""
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    class TimeBudget(TrainingCallback):
        def __init__(self):
            self.start = self.end = None
            self.steps, self.epochs_begun = 0, 0

        def on_train_begin(self, training_config, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_begin(self, training_config, **kwargs):
            self.epochs_begun += 1

        def on_train_step_end(self, training_config, **kwargs):
            self.steps += 1
            if time.perf_counter() - self.start >= seconds:
                self.end = time.perf_counter()
                raise BudgetReached

    config = BaseTrainerConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        num_epochs=epochs,
        learning_rate=LR,
        optimizer_cls="Adam",
        no_cuda=True,
    )
    pipeline = TrainingPipeline(training_config=config, model=model)
    budget = TimeBudget()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    status = "budget"
    try:
        pipeline(train_data=train_images, eval_data=None, callbacks=[budget])
        status = "epochs"  # ran out of epochs before the budget
        budget.end = time.perf_counter()
    except BudgetReached:
        pass
    cpu = time.process_time() - cpu0
    train_seconds = budget.end - budget.start
    steps_per_epoch = math.ceil(len(train_images) / BATCH)
    return {
        "status": status,
        "steps": budget.steps,
        "epochs": budget.steps / steps_per_epoch,
        "train_seconds": train_seconds,
        "setup_seconds": budget.start - t0,
        "cpu_seconds": cpu,
        "trainer": type(pipeline.trainer).__name__,
        "model": pipeline.trainer.model,
    }


# -- genzoo's side --------------------------------------------------------------------------------------


def train_genzoo(model, dataset, seconds: float, run_dir: Path, seed: int) -> dict:
    import json

    import genzoo.train
    from genzoo.train_config import TrainConfig

    if run_dir.exists():
        shutil.rmtree(run_dir)  # genzoo resumes from a checkpoint in run_dir: start fresh
    config = TrainConfig(
        batch_size=BATCH, lr=LR, grad_clip=None, max_time=seconds, eval_every=10**9, progress=False,
        device="cpu", seed=seed,
    )  # fmt: skip
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = genzoo.train.train(model, dataset, run_dir, config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    # elapsed at the step that reached the budget (the last timing line, before the final validation/save)
    timing = [json.loads(line) for line in (run_dir / "timing.jsonl").read_text().splitlines() if line.strip()]
    last = timing[-1]
    assert last["step"] == result["step"], (last, result["step"])
    return {
        "status": result["status"],
        "steps": result["step"],
        "epochs": result["epoch"],
        "train_seconds": last["elapsed"],
        "final_validation_seconds": last.get("valid_seconds"),
        "call_seconds": wall,
        "cpu_seconds": cpu,
        "own_images_per_sec": result["images_per_sec"],
        "last_train_loss": result["loss"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0, help="training wall-clock budget per library")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    p.add_argument("--k", type=int, default=200, help="importance samples per test image")
    p.add_argument("--test-images", type=int, default=None, help="a fixed seeded subset of the test split")
    p.add_argument("--pythae-get-nll-images", type=int, default=100, help="images for pythae's own get_nll")
    p.add_argument(
        "--pythae-inputs",
        choices=("raw", "symmetric"),
        default="raw",
        help="pythae encoder input: raw {0,1} pixels (pythae's way) or mapped to {-1,1} (genzoo's way)",
    )
    p.add_argument("--seed", type=int, default=0, help="weights, data order, test subset and evaluation noise")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--no-save", action="store_true", help="do not append to results.jsonl")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    import pythae

    import genzoo
    import genzoo.data

    try:
        from importlib.metadata import version

        pythae_version = version("pythae")
    except Exception:
        pythae_version = getattr(pythae, "__version__", None)

    loads = LoadSampler().start()
    load_start = os.getloadavg()
    started = time.perf_counter()
    root = HERE / "runs" / "pythae-compare"
    dataset = genzoo.data.load_dataset("binarized-mnist", args.data_dir)
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (50000, 10000, 10000)
    log(f"pythae {pythae_version}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); load {load_start}")

    # genzoo
    torch.manual_seed(args.seed)
    gz = genzoo.create("vae", SHAPE, 2, hidden=[HIDDEN], latent=LATENT, activation="relu")
    log(f"genzoo: training for {args.seconds:g} s")
    loads.phase = "genzoo"
    g = train_genzoo(gz, dataset, args.seconds, root / "genzoo", args.seed)
    loads.phase = None
    g_ips = g["steps"] * BATCH / g["train_seconds"]
    log(f"genzoo: {g['steps']} steps ({g['epochs']:.2f} epochs) in {g['train_seconds']:.1f} s: {g_ips:.0f} images/s")

    # pythae
    pz = pythae_model(args.seed, args.pythae_inputs)
    train_x = dataset.train.images.float()  # {0, 1} floats, (50000, 1, 28, 28)
    log(f"pythae: training for {args.seconds:g} s")
    loads.phase = "pythae"
    q = train_pythae(pz, train_x, args.seconds, root / "pythae", epochs=10**6)
    loads.phase = None
    pz = q.pop("model")
    q_ips = q["steps"] * BATCH / q["train_seconds"]
    log(f"pythae: {q['steps']} steps ({q['epochs']:.2f} epochs) in {q['train_seconds']:.1f} s: {q_ips:.0f} images/s")

    # the test images
    test = dataset.test.images
    if args.test_images is not None and args.test_images < len(test):
        index = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.test_images]
        test = test[index.sort().values]
    n = len(test)

    # one evaluation routine, same images, same noise
    gz.eval()
    pz.eval()
    log(f"evaluating both on {n} test images, k = {args.k}")
    loads.phase = "eval"
    t0 = time.perf_counter()
    g_nll = importance_nll(lambda x: gz.encode(x), lambda z: gz.decode(z).flatten(1), test, args.k, args.seed)
    g_eval_s = time.perf_counter() - t0

    def pythae_encode(x):
        out = pz.encoder(x.float())
        return out.embedding, out.log_covariance

    t0 = time.perf_counter()
    q_nll = importance_nll(pythae_encode, pz.decoder.logits, test, args.k, args.seed)
    q_eval_s = time.perf_counter() - t0

    # the same formula as genzoo's own estimator: with the same noise the two agree to float rounding
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        same = torch.cat(
            [-gz.log_prob_estimate(test[i : i + 100], num_samples=args.k, generator=gen) for i in range(0, n, 100)]
        )
    same_noise_diff = float((g_nll - same).abs().max())

    # genzoo's own estimator on genzoo's model (independent noise): the cross-check
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        own = torch.cat(
            [-gz.log_prob_estimate(test[i : i + 100], num_samples=args.k, generator=gen) for i in range(0, n, 100)]
        )
    own_eval_s = time.perf_counter() - t0

    # pythae's own get_nll on the first few of the same images (it returns the mean log-likelihood)
    m = min(args.pythae_get_nll_images, n)
    get_nll = get_nll_s = None
    if m > 0:
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        get_nll = float(pz.get_nll(test[:m].float(), n_samples=args.k, batch_size=100))
        get_nll_s = time.perf_counter() - t0
    loads.phase = None
    loads.stop()

    g_mean, g_se = mean_stderr(g_nll)
    q_mean, q_se = mean_stderr(q_nll)
    o_mean, o_se = mean_stderr(own)
    d_mean, d_se = mean_stderr(g_nll - q_nll)
    x_mean, x_se = mean_stderr(g_nll - own)
    agree = abs(g_mean - o_mean) <= g_se
    log(f"test NLL (k={args.k}, {n} images): genzoo {g_mean:.2f} ± {g_se:.2f}, pythae {q_mean:.2f} ± {q_se:.2f} nats")
    log(f"genzoo's log_prob_estimate: {o_mean:.2f} ± {o_se:.2f} (difference {x_mean:+.3f} ± {x_se:.3f}; "
        f"agree: {agree}); with the same noise: max |difference| {same_noise_diff:.2g} nats")  # fmt: skip
    if get_nll is not None:
        log(f"pythae get_nll on {m} images returned {get_nll:.2f} (a log-likelihood); this routine: "
            f"{-float(q_nll[:m].mean()):.2f}")  # fmt: skip

    ncpu = os.cpu_count() or 1
    phase_loads = {ph: loads.mean(ph) for ph in ("genzoo", "pythae", "eval")}
    train_loads = [v for v in (phase_loads["genzoo"], phase_loads["pythae"]) if v is not None]
    mean_load = sum(train_loads) / len(train_loads) if train_loads else os.getloadavg()[0]
    others = max(0, round(mean_load) - 1)
    params = sum(t.numel() for t in gz.parameters())
    record = {
        "benchmark": "pythae_compare",
        "seconds": args.seconds,
        "threads": torch.get_num_threads(),
        "genzoo_images_per_sec": g_ips,
        "pythae_images_per_sec": q_ips,
        "ratio": g_ips / q_ips,
        "genzoo_nll_nats": g_mean,
        "genzoo_nll_nats_stderr": g_se,
        "pythae_nll_nats": q_mean,
        "pythae_nll_nats_stderr": q_se,
        "nll_difference_nats": d_mean,  # genzoo - pythae, paired over the same images and noise
        "nll_difference_nats_stderr": d_se,
        "k": args.k,
        "test_images": n,
        "test_subset_seed": args.seed if n < len(dataset.test) else None,
        "genzoo_steps": g["steps"],
        "genzoo_epochs": g["epochs"],
        "pythae_steps": q["steps"],
        "pythae_epochs": q["epochs"],
        "genzoo_train_seconds": g["train_seconds"],
        "pythae_train_seconds": q["train_seconds"],
        "genzoo_own_images_per_sec": g["own_images_per_sec"],  # genzoo's report, excluding log/checkpoint time
        "genzoo_cpu_share": g["cpu_seconds"] / g["call_seconds"],
        "pythae_cpu_share": q["cpu_seconds"] / (q["setup_seconds"] + q["train_seconds"]),
        "genzoo_log_prob_estimate_nll_nats": o_mean,
        "genzoo_log_prob_estimate_nll_nats_stderr": o_se,
        "cross_check_difference_nats": x_mean,  # this routine - log_prob_estimate on genzoo's model
        "cross_check_difference_stderr": x_se,
        "cross_check_agrees": agree,
        "cross_check_same_noise_max_abs_diff": same_noise_diff,  # per image, nats
        "pythae_get_nll_images": m,
        "pythae_get_nll_returned": get_nll,  # pythae's get_nll: mean log p(x) (not its negative)
        "pythae_get_nll_samples_used": 100 if args.k <= 100 else args.k // 100 * 100,  # batch_size=100
        "pythae_nll_same_images_this_routine": float(q_nll[:m].mean()) if m else None,
        "pythae_get_nll_seconds": get_nll_s,
        "eval_seconds": {"genzoo": g_eval_s, "pythae": q_eval_s, "genzoo_log_prob_estimate": own_eval_s},
        "model": f"VAE 784-{HIDDEN}-{LATENT} ReLU, Bernoulli decoder, {params} parameters each",
        "training": f"Adam lr {LR:g}, batch {BATCH}, no grad clip, no validation in the budget",
        "genzoo_training": "genzoo.train.train, TrainConfig(max_time=S, eval_every=10**9, progress=False)",
        "pythae_training": f"{q['trainer']} via TrainingPipeline, no eval set, stopped by a callback at S s, "
        "progress bar off",
        "pythae_inputs": args.pythae_inputs,
        "pythae_status": q["status"],
        "genzoo_status": g["status"],
        "data": "binarized-mnist (static), 50k/10k/10k",
        "loadavg_during": phase_loads,
        "loadavg_start": list(load_start),
        "cpu_cores": ncpu,
        "note": f"machine shared with {others} other processes (1-min load average {mean_load:.1f} on {ncpu} "
        "cores during training)",
        "wall_seconds": time.perf_counter() - started,
        "pythae_version": pythae_version,
        "torch": torch.__version__,
        "device": device_name(torch.device("cpu")),
        "command": command_line(),
    }
    record_result(record, save=not args.no_save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
