"""Benchmark: HMM forward-backward throughput, genzoo vs hmmlearn, same data and parameters, same run.

    python benchmarks/hmm_speed.py --threads 1
    python benchmarks/hmm_speed.py --sequences 1000 --length 200 --states 16 --threads 2
    python benchmarks/hmm_speed.py --device cuda --sequences 10000     (genzoo on the GPU, hmmlearn on the CPU)

A random Gaussian HMM (diagonal covariances) generates ``--sequences`` sequences of ``--length`` steps;
both libraries then compute the log-likelihood and the state posteriors gamma of every sequence
(genzoo: ``HMM.posteriors``, one batched call in float64; hmmlearn: ``score_samples`` with its
log-space and its scaling implementations). Reports time steps per second (best of ``--repeats``),
the ratios genzoo / hmmlearn, and the largest relative difference of the log-likelihoods (a check
that both computed the same thing). Prints one JSON line and appends it to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genzoo.models.classic.emissions import GaussianEmission  # noqa: E402
from genzoo.models.classic.hmm import HMM  # noqa: E402
from train_nll import command_line, device_name, record_result  # noqa: E402


def best_time(fn, repeats: int, sync=lambda: None) -> tuple[float, object]:
    """(fastest wall time of ``repeats`` calls in seconds, the last result)."""
    times, out = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=200)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--states", type=int, default=8)
    p.add_argument("--dims", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (hmmlearn is single-threaded)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-save", action="store_true", help="print only; do not append to results.jsonl")
    args = p.parse_args()
    from hmmlearn import __version__ as hmmlearn_version
    from hmmlearn.hmm import GaussianHMM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = HMM(GaussianEmission(args.states, args.dims, "diag")).double()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 1.0)
    _, obs = model.sample(args.sequences, args.length, torch.Generator().manual_seed(args.seed))
    flat, lengths = obs.reshape(-1, args.dims).numpy(), [args.length] * args.sequences

    model.to(device)
    obs_device = obs.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        model.posteriors(obs_device[:2])  # warm-up (CUDA context, allocator)
        ours_s, (log_lik, _) = best_time(lambda: model.posteriors(obs_device), args.repeats, sync)
    result = {
        "benchmark": "hmm_speed",
        "states": args.states,
        "dims": args.dims,
        "sequences": args.sequences,
        "length": args.length,
        "genzoo_steps_per_sec": args.sequences * args.length / ours_s,
    }
    mine = log_lik.cpu().numpy()
    for implementation in ("log", "scaling"):
        ref = GaussianHMM(args.states, covariance_type="diag", implementation=implementation)
        ref.startprob_ = model.log_start().exp().detach().cpu().numpy()
        ref.transmat_ = model.log_transitions().exp().detach().cpu().numpy()
        ref.means_ = model.emission.means.detach().cpu().numpy()
        ref.covars_ = model.emission.log_scale.detach().cpu().exp().square().numpy()
        theirs_s, _ = best_time(lambda: ref.score_samples(flat, lengths), args.repeats)  # noqa: B023 (called at once)
        bounds = np.cumsum([0] + lengths)
        theirs = np.array([ref.score(flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        result[f"hmmlearn_{implementation}_steps_per_sec"] = args.sequences * args.length / theirs_s
        result[f"ratio_vs_hmmlearn_{implementation}"] = theirs_s / ours_s
        result[f"max_rel_diff_{implementation}"] = float(np.max(np.abs(mine - theirs) / np.abs(theirs)))
    result.update(
        {
            "device": device_name(device),
            "hmmlearn_device": device_name(torch.device("cpu")).split(",")[0],
            "torch": torch.__version__,
            "hmmlearn": hmmlearn_version,
            "command": command_line(),
        }
    )
    record_result(result, save=not args.no_save)


if __name__ == "__main__":
    main()
