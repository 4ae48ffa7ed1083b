"""Print benchmarks/results.jsonl as Markdown tables (the ones in RESULTS.md and the README).

python benchmarks/summarize.py            # every run, newest last
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fmt(value, digits=2):
    return "—" if value is None else f"{value:.{digits}f}"


def likelihood_row(r: dict) -> str:
    test = r.get("test") or {}
    if test.get("kind") == "bound":
        nll = (
            f"≤ {fmt(test['elbo_nats'])} (ELBO), ≈ {fmt(test['nll_estimate_nats'])} ± "
            f"{fmt(test['nll_estimate_nats_stderr'])} (k={test['k']})"
        )
        bpd = test.get("nll_estimate_bits_per_dim")
    else:
        label = " (AIS log Z)" if test.get("kind") == "estimate" else ""
        nll = f"{fmt(r.get('test_nll_nats'))} ± {fmt(r.get('test_nll_nats_stderr'))}{label}"
        bpd = r.get("test_bits_per_dim")
    options = " ".join(f"{k}={json.dumps(v)}" for k, v in (r.get("options") or {}).items())
    minutes = (r.get("train_seconds") or 0) / 60
    speed = r.get("train_images_per_sec")
    return (
        f"| {r['name']} | {r['data']} | {options or '—'} | {nll} | {fmt(bpd, 4)} | {r.get('steps') or '—'} | "
        f"{minutes:.1f} | {fmt(speed, 0)} | {r.get('params') or '—'} | {r.get('device', '?')} |"
    )


def quality_row(name: str, m: dict) -> str:
    floor = m.get("floor") or {}
    ratio = m["frechet_distance"] / floor["frechet_distance"] if floor.get("frechet_distance") else None
    hist = m.get("class_histogram")
    spread = ""
    if hist:
        shares = [100 * c / sum(hist) for c in hist]
        spread = f"{min(shares):.1f}–{max(shares):.1f}%"
    return (
        f"| {name} | {m['dataset']} | {m['n']} | {m['feature_net']['kind']} | {fmt(m['frechet_distance'], 3)} | "
        f"{fmt(floor.get('frechet_distance'), 3)} | {fmt(ratio, 2)} | {fmt(m['kid'], 4)} ± {fmt(m['kid_sd'], 4)} | "
        f"{fmt(m['precision'], 3)} / {fmt(m['recall'], 3)} | {spread or '—'} | {fmt(m.get('classifier_accuracy'), 3)} |"
    )


def main() -> None:
    records = [json.loads(line) for line in (HERE / "results.jsonl").read_text().splitlines() if line.strip()]
    print("| run | data | options | test NLL (nats) | bits/dim | steps | train min | train img/s | params | device |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        if (
            r.get("benchmark") == "train_nll"
            and r.get("status") == "finished"
            and (r.get("test") or {}).get("kind") != "samples-only"
        ):
            print(likelihood_row(r))
    quality = {}  # the newest record per (run, dataset, N): later ones supersede earlier measurements
    for r in records:
        m = (r.get("test") or {}).get("sample_metrics") or r.get("sample_metrics")
        if m and r.get("status", "finished") == "finished":
            name = r.get("name") or f"real {r.get('data')} valid split (floor check)"
            quality.pop((name, m["dataset"], m["n"]), None)
            quality[(name, m["dataset"], m["n"])] = m
    quality = [(name, m) for (name, _, _), m in quality.items()]
    if quality:
        print()
        print(
            "| run | data | samples | feature net | Fréchet distance | floor (real test vs train) | ratio | KID ± sd "
            "| precision / recall | class shares (min–max) | conditional accuracy |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, m in quality:
            print(quality_row(name, m))
    speed = {}  # the newest measurement per (model, run, options)
    for r in records:
        if r.get("benchmark") == "sample_speed":
            key = (r.get("model"), r.get("run"), json.dumps(r.get("options"), sort_keys=True))
            speed.pop(key, None)
            speed[key] = r
    speed = list(speed.values())
    if speed:
        print()
        print(
            "| model (run) | images | cached s | naive s (for n) | speed-up | same samples "
            "| cached img/s by batch | device |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in speed:
            naive = fmt(r.get("naive_seconds_for_n")) + (
                f" (scaled from {r['naive_images']})" if r.get("naive_scaled") else ""
            )
            rates = ", ".join(f"{b}: {v:.1f}" for b, v in (r.get("cached_images_per_sec") or {}).items())
            options = " ".join(f"{k}={v}" for k, v in (r.get("options") or {}).items())
            label = " ".join(filter(None, (r.get("model"), options)))
            print(
                f"| {label} ({r.get('run') or 'fresh weights'}) | {r.get('n')} | {fmt(r.get('cached_seconds'))} | "
                f"{naive} | {fmt(r.get('speedup'), 1)}× | {r.get('identical_samples')} | {rates} | {r.get('device')} |"
            )


if __name__ == "__main__":
    main()
