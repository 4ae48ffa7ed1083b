"""Print benchmarks/results.jsonl as Markdown tables (the ones in RESULTS.md and the README).

python benchmarks/summarize.py            # every run, newest last
python benchmarks/summarize.py --recipes [--write]  # RESULTS.md section 0 (--write: into the file)
"""

from __future__ import annotations

import json
import sys
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


def test_figure(test: dict) -> str:
    """The run's test result with its kind: exact NLL, AIS estimate, or bound and k-sample estimate."""
    if test.get("kind") == "bound":
        note = f"k={test['k']}" + (", log Z by AIS" if (test.get("partition") or {}).get("method") == "ais" else "")
        return (
            f"≈ **{fmt(test['nll_estimate_nats'])}** ± {fmt(test['nll_estimate_nats_stderr'])} ({note}); "
            f"ELBO ≤ {fmt(test['elbo_nats'])}"
        )
    if test.get("kind") == "estimate":
        z = test.get("partition") or {}
        return (
            f"**{fmt(test['nll_nats'])}** ± {fmt(test['nll_nats_stderr'])} (AIS log Z ± {fmt(z.get('log_z_stderr'))})"
        )
    return f"**{fmt(test.get('nll_nats'))}** ± {fmt(test.get('nll_nats_stderr'))} (exact)"


def recipe_table(records: list[dict]) -> list[str]:
    """The lines of RESULTS.md's section-0 table: the newest finished record of every recipe run."""
    from genzoo.recipes import RECIPES

    newest, spent = {}, {}
    for r in records:
        if r.get("benchmark") != "train_nll" or not r.get("preset"):
            continue
        cpu, wall = spent.get(r["name"], (0.0, 0.0))  # every recorded process of the run, resumes included
        spent[r["name"]] = (cpu + (r.get("cpu_seconds") or 0), wall + (r.get("wall_seconds") or 0))
        if r.get("status") == "finished" and r.get("test"):
            newest.pop(r["name"], None)
            newest[r["name"]] = r
    lines = [
        "| run | recipe | test NLL (nats) | paper's figure | steps (epochs) | training h (all resumes) / "
        "CPU h, wall h (recorded processes) | reproduce |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for r in newest.values():
        figure = RECIPES[r["model"]][r["preset"]].figure
        cpu, wall = spent[r["name"]]
        hours = f"{(r.get('train_seconds') or 0) / 3600:.2f} / {cpu / 3600:.2f}, {wall / 3600:.2f}"
        lines.append(
            f"| {r['name']} | {r['model']} `{r['preset']}` | {test_figure(r['test'])} | {figure} | "
            f"{r.get('steps')} ({fmt(r.get('epochs'), 1)}) | {hours} | `{r.get('genzoo_command')}` |"
        )
    return lines


def write_recipe_table(records: list[dict]) -> None:
    """Replace the table between the recipe markers of RESULTS.md."""
    path = HERE / "RESULTS.md"
    text = path.read_text()
    start, end = text.index(RECIPE_START) + len(RECIPE_START), text.index(RECIPE_END)
    path.write_text(text[:start] + "\n" + "\n".join(recipe_table(records)) + "\n" + text[end:])


RECIPE_START, RECIPE_END = "<!-- recipes: python benchmarks/summarize.py --recipes --write -->", "<!-- /recipes -->"


def main() -> None:
    records = [json.loads(line) for line in (HERE / "results.jsonl").read_text().splitlines() if line.strip()]
    if "--recipes" in sys.argv:
        if "--write" in sys.argv:
            write_recipe_table(records)
        print("\n".join(recipe_table(records)))
        return
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
