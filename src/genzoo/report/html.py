"""The report's HTML: one self-contained page (inline PNGs and style, no script, no network)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from genzoo.report.figures import SAMPLES, comparison_curves_png, curves_png, draw_completions, draw_samples, load_model
from genzoo.report.run import _num, _pm, _seconds, read_run, test_score

PICTURE_LIMIT = 24  # task pictures embedded at most (each at most PICTURE_BYTES)
PICTURE_BYTES = 8 << 20
SIDE_WIDTH = 300  # pixels of each run's samples in a comparison
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "DejaVu Sans", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 16px 24px 48px; color: #1d232a; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 2px; } h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #dde3ea; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.sub { color: #5a6673; margin: 0 0 12px; } .note { color: #7a5b00; background: #fff7dc; padding: 4px 8px; }
.flag { color: #8b0000; background: #ffe3e3; padding: 6px 10px; font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0 10px; }
td, th { padding: 3px 10px 3px 0; vertical-align: top; text-align: left; }
th { color: #5a6673; font-weight: 600; }
table.grid td, table.grid th { border-bottom: 1px solid #eef1f4; padding-right: 14px; }
td.num { font-variant-numeric: tabular-nums; text-align: right; } .big { font-size: 22px; font-weight: 650; }
code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; background: #f3f5f7; padding: 1px 4px; }
figure { margin: 8px 16px 14px 0; display: inline-block; vertical-align: top; }
figcaption { color: #5a6673; font-size: 13px; max-width: 640px; } img { max-width: 100%; height: auto; }
img.pixel { image-rendering: pixelated; } .row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.bar { display: flex; height: 14px; width: 420px; border-radius: 3px; overflow: hidden; background: #eef1f4; }
.bar .t { background: #1f77b4; } .bar .e { background: #ff7f0e; } .bar .v { background: #9ecae1; }
details > summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(data: bytes, alt: str, pixel: bool = False, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    cls = ' class="pixel"' if pixel else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" alt="{_esc(alt)}"{cls}{size}>'


def _figure(data: bytes, caption: str, **kwargs) -> str:
    return f"<figure>{_img(data, caption, **kwargs)}<figcaption>{_esc(caption)}</figcaption></figure>"


def _file_figure(path: Path, caption: str, scale: bool = False) -> str | None:
    """An embedded PNG file (enlarged without smoothing when ``scale`` and small), or None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size > PICTURE_BYTES:
            return None
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as picture:
            width = picture.width
    except (OSError, UnidentifiedImageError):
        return None
    factor = max(1, min(4, 640 // max(width, 1))) if scale else 1
    return _figure(data, caption, pixel=factor > 1, width=width * factor if factor > 1 else None)


def _table(rows: list[tuple[str, str]], raw: bool = False) -> str:
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{v if raw else _esc(v)}</td></tr>" for k, v in rows if v is not None)
    return f"<table>{cells}</table>"


def _options_text(model: dict) -> str:
    skip = ("name", "image_shape", "levels")
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in model.items() if k not in skip) or "(none)"


def _time_split(run: dict) -> str:
    r = run["results"] or {}
    train = r.get("elapsed") if isinstance(r.get("elapsed"), (int, float)) else None
    if train is None and run["log"]:
        train = run["log"][-1].get("elapsed")
    evaluation = r.get("eval_seconds")
    validation = sum(x.get("valid_seconds", 0) for x in run["log"] if isinstance(x.get("valid_seconds"), (int, float)))
    parts = [
        (train, "training", "t"),
        (validation or None, "validation during training", "v"),
        (evaluation, "final evaluation", "e"),
    ]
    known = [(v, name, cls) for v, name, cls in parts if isinstance(v, (int, float)) and v > 0]
    if not known:
        return _esc("not recorded")
    total = sum(v for v, _, _ in known if _ != "validation during training") or 1.0
    text = " · ".join(f"{name} {_seconds(v)}" for v, name, _ in known)
    bar = "".join(f'<span class="{c}" style="width:{100 * v / total:.1f}%"></span>' for v, n, c in known if c != "v")
    return f'{_esc(text)}<div class="bar" title="training (blue) vs final evaluation (orange)">{bar}</div>'


def model_card(run: dict, model) -> str:
    import torch

    import genzoo

    r, m, train = run["results"] or {}, run["model"], run["train"]
    name = m.get("name") or r.get("model") or "unknown"
    try:
        from genzoo.registry import entry

        description = entry(name).description
    except ValueError:
        description = ""
    params = r.get("params")
    if params is None and model is not None:
        params = sum(p.numel() for p in model.parameters())
    device = r.get("device") or (
        f"{train['device']} (the device actually used is not recorded)" if train.get("device") else None
    )
    torch_version = r.get("torch_version") or r.get("torch")
    rows = [
        ("model", f"{name}: {description}" if description else name),
        ("options", _options_text(m)),
        ("images", f"{'×'.join(map(str, m.get('image_shape', [])))}, {m.get('levels')} levels" if m else None),
        ("parameters", _num(params) if params is not None else "—"),
        ("dataset", run["data"].get("name") or r.get("data") or "—"),
        ("recipe", r.get("preset")),
        (
            "status",
            f"{r.get('status', 'running or interrupted (no results.json yet)')}"
            + (f", step {r['step']:,}" if isinstance(r.get("step"), int) else "")
            + (f", epoch {r['epoch']:.2f}" if isinstance(r.get("epoch"), (int, float)) else ""),
        ),
        ("weights scored", r.get("weights")),
        ("EMA weights", None if run["has_ema"] is None else ("yes" if run["has_ema"] else "no")),
        ("device", device or "not recorded"),
        (
            "torch",
            torch_version or f"not recorded (this report: torch {torch.__version__}, genzoo {genzoo.__version__})",
        ),
        ("command", r.get("command") or "not recorded"),
    ]
    if run["fit"]:
        fit = run["fit"]
        rows.append(
            (
                "fitted by",
                f"{fit.get('method')}"
                + (f", {fit['iterations']} iterations" if "iterations" in fit else "")
                + (
                    f", train log-likelihood {_num(fit['train_log_likelihood'], 3)}"
                    if "train_log_likelihood" in fit
                    else ""
                ),
            )
        )
    html_rows = _table(rows) + _table([("time", _time_split(run))], raw=True)
    if train:
        config = ", ".join(f"{k}={json.dumps(v)}" for k, v in train.items())
        html_rows += f"<details><summary>training configuration</summary><code>{_esc(config)}</code></details>"
    return html_rows


def test_section(run: dict) -> str:
    from genzoo.recipes import RECIPES

    r = run["results"]
    if not r:
        return '<p class="note">No test result yet: results.json is written when training and evaluation end.</p>'
    t = r.get("test") or {}
    kind = t.get("kind")
    out = [f'<p class="flag">Not a result: {_esc(r["flagged"])}</p>'] if r.get("flagged") else []
    rows: list[tuple[str, str]] = []
    if kind == "exact":
        head = f"NLL {_pm(t, 'nll_nats')} nats · {_pm(t, 'bits_per_dim', 4)} bits/dim"
        rows += [("kind", "exact log-likelihood")]
    elif kind == "estimate":
        head = f"NLL ≈ {_pm(t, 'nll_nats')} nats · {_pm(t, 'bits_per_dim', 4)} bits/dim"
        rows += [("kind", "estimate: log Z by annealed importance sampling")]
    elif kind == "bound":
        head = f"NLL ≤ {_pm(t, 'elbo_nats')} (negative ELBO) · ≈ {_pm(t, 'nll_estimate_nats')} nats (k={t.get('k')})"
        rows += [
            ("kind", "bound: the negative ELBO bounds the NLL from above; the k-sample importance estimate is tighter"),
            ("estimate, bits/dim", _pm(t, "nll_estimate_bits_per_dim", 4)),
            (
                "reconstruction / KL",
                f"{_num(t.get('reconstruction_nats'), 3)} / {_num(t.get('kl_nats'), 3)} nats"
                if "kl_nats" in t
                else None,
            ),
        ]
    elif kind == "reconstruction":
        head = f"reconstruction NLL {_pm(t, 'reconstruction_nats')} nats"
        rows += [("kind", "reconstruction: -log p(x | e(x)), not a likelihood of x")]
    elif kind == "samples-only":
        head = "no likelihood: judged by its samples"
        rows += [("kind", "samples only")]
    else:
        head = f"{r.get('status', 'no test result')}"
    note = t.get("partition")
    if isinstance(note, dict):
        z = f"log Z = {_num(note.get('log_z'), 4)} ± {_num(note.get('log_z_stderr'), 3)} ({note.get('method')})"
        rows.append(("partition function", z))
    if t.get("conditional"):  # a class-conditional model is scored given each image's label
        rows.append(("conditioned on", "each test image's class label: -log p(x | y)"))
    if "accuracy" in t:
        rows.append(("classification accuracy", f"{_num(t['accuracy'], 4)} (Bayes' rule over the classes)"))
    rows += [("test images", _num(t["n"]) if "n" in t else None), ("weights", t.get("weights"))]
    if r.get("best_valid") is not None and r.get("best_step") is not None:
        rows.append(("best validation", f"{_num(r['best_valid'], 4)} at step {_num(r.get('best_step'))}"))
    out += [f'<p class="big">{_esc(head)}</p>', _table(rows)]
    metrics = t.get("sample_metrics")
    if isinstance(metrics, dict):
        floor = metrics.get("floor") or {}
        keys = [
            k
            for k in ("frechet_distance", "kid", "precision", "recall", "classifier_accuracy", "class_entropy_bits")
            if k in metrics
        ]
        body = "".join(
            f"<tr><td>{_esc(k)}</td><td class=num>{_num(metrics[k])}</td><td class=num>{_num(floor.get(k))}</td></tr>"
            for k in keys
        )
        out.append(
            f"<h3>sample metrics ({_num(metrics.get('n'))} samples)</h3><table class=grid><tr><th>metric</th>"
            f"<th>samples</th><th>real images (floor)</th></tr>{body}</table>"
        )
    recipe = RECIPES.get(r.get("model") or run["model"].get("name"), {}).get(r.get("preset") or "")
    if recipe:
        out.append(_table([("paper's figure", recipe.figure), ("paper", recipe.paper), ("recipe", recipe.description)]))
    return "".join(out)


def samples_section(run: dict, model, samples: int, seed: int) -> tuple[str, bytes | None]:
    """HTML of the samples and completions, and the sample grid's PNG (for a comparison)."""
    out, grid = [], None
    if model is not None and model.condition_shape is not None:
        run["notes"].append("image-conditioned model: its samples need condition images (see the task pictures)")
        model = None
    if model is not None and samples > 0:
        try:
            grid, caption, _, speed = draw_samples(model, samples, seed)
            out.append(_figure(grid, caption))
            out.append(f"<p class=sub>{_esc(speed)}</p>")
        except Exception as err:  # noqa: BLE001 (one model that cannot sample must not lose the report)
            run["notes"].append(f"cannot draw samples: {type(err).__name__}: {err}")
    if grid is None and (run["dir"] / "samples.png").is_file():
        figure = _file_figure(run["dir"] / "samples.png", "samples.png, as written by genzoo train", scale=True)
        if figure:
            out.append(figure)
            grid = (run["dir"] / "samples.png").read_bytes()
    if model is not None and model.can_complete and run["data"].get("name"):
        try:
            done = draw_completions(model, run, seed)
            if done:
                out.append("<h3>completions</h3>" + _figure(*done))
        except Exception as err:  # noqa: BLE001
            run["notes"].append(f"cannot draw completions: {type(err).__name__}: {err}")
    return "".join(out) or '<p class="note">No samples: no model file and no samples.png.</p>', grid


def pictures_section(run: dict) -> str:
    figures = []
    for path in run["pictures"]:
        relative = path.relative_to(run["dir"]).as_posix()
        if relative == "samples.png" or len(figures) >= PICTURE_LIMIT:
            continue
        figure = _file_figure(path, relative)
        if figure:
            figures.append(figure)
    return "".join(figures)


def run_section(run: dict, samples: int = SAMPLES, seed: int = 0, device: str = "cpu", draw: bool = True) -> dict:
    """The HTML parts of one run: {"card", "curves", "test", "samples", "pictures", "grid", "notes"}."""
    model = load_model(run, device) if draw else None
    parts: dict[str, Any] = {}
    for key, build in (("card", lambda: model_card(run, model)), ("test", lambda: test_section(run))):
        try:
            parts[key] = build()
        except Exception as err:  # noqa: BLE001 (an odd field in an old run: note it, keep the rest)
            run["notes"].append(f"cannot show the {key}: {type(err).__name__}: {err}")
            parts[key] = ""
    try:
        curves = curves_png(run["log"], title=run["name"])
        parts["curves"] = _figure(curves, "from log.jsonl and timing.jsonl") if curves else ""
    except Exception as err:  # noqa: BLE001
        run["notes"].append(f"cannot plot the curves: {type(err).__name__}: {err}")
        parts["curves"] = ""
    if not parts["curves"]:
        parts["curves"] = '<p class="note">No training log (log.jsonl): ' + (
            "fitted without gradient steps.</p>" if run["fit"] else "nothing logged yet.</p>"
        )
    parts["samples"], parts["grid"] = samples_section(run, model, samples if draw else 0, seed)
    parts["pictures"] = pictures_section(run)
    parts["notes"] = list(run["notes"])
    return parts


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _run_body(run: dict, parts: dict, heading: str = "h2") -> str:
    score = test_score(run["results"])[1]
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in parts["notes"])
    pictures = f"<{heading}>task pictures</{heading}>{parts['pictures']}" if parts["pictures"] else ""
    return (
        f"{notes}<{heading}>model card</{heading}>{parts['card']}"
        f"<{heading}>test result</{heading}>{parts['test']}"
        f"<{heading}>training curves</{heading}>{parts['curves']}"
        f"<{heading}>samples</{heading}>{parts['samples']}{pictures}"
        f"<p class=sub>{_esc(run['dir'])}: {_esc(score)}</p>"
    )


def report_html(run_dir, samples: int = SAMPLES, seed: int = 0, device: str = "cpu", draw: bool = True) -> str:
    """The HTML page of one run (see the module docstring)."""
    run = read_run(run_dir)
    parts = run_section(run, samples, seed, device, draw)
    name = run["model"].get("name") or (run["results"] or {}).get("model") or "model"
    data = run["data"].get("name") or (run["results"] or {}).get("data") or ""
    head = f"<h1>{_esc(name)}{' on ' + _esc(data) if data else ''}</h1><p class=sub>run {_esc(run['dir'])}</p>"
    return _page(f"genzoo report: {run['name']}", head + _run_body(run, parts))


def comparison_html(run_dirs, samples: int = SAMPLES, seed: int = 0, device: str = "cpu", draw: bool = True) -> str:
    """One page for several runs: a table sorted by test bits/dim (runs without a likelihood last), the
    samples side by side, the validation curves together, then every run's own sections."""
    runs = [read_run(d) for d in run_dirs]
    parts = [run_section(run, samples, seed, device, draw) for run in runs]
    order = sorted(
        range(len(runs)),
        key=lambda i: (test_score(runs[i]["results"])[0] is None, test_score(runs[i]["results"])[0] or 0.0),
    )
    rows = []
    for i in order:
        run, r = runs[i], runs[i]["results"] or {}
        t = r.get("test") or {}
        bpd, label = test_score(r)
        train_time = r.get("elapsed") if isinstance(r.get("elapsed"), (int, float)) else None
        cells = [
            run["name"],
            run["model"].get("name") or r.get("model"),
            run["data"].get("name") or r.get("data"),
            t.get("kind", "—") + (" (given y)" if run["model"].get("num_classes") and "kind" in t else ""),
            label,
            _num(bpd, 4) if bpd is not None else "—",
            _num(r.get("params")),
            _seconds(train_time),
            r.get("device") or run["train"].get("device", "—"),
            _num(r.get("step")),
        ]
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    header = [
        "run",
        "model",
        "data",
        "kind",
        "test NLL (nats)",
        "bits/dim",
        "parameters",
        "training time",
        "device",
        "steps",
    ]
    table = "<table class=grid><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" + "".join(rows) + "</table>"
    side = "".join(
        _figure(parts[i]["grid"], runs[i]["name"], width=SIDE_WIDTH) if parts[i]["grid"] else "" for i in order
    )
    overlay = comparison_curves_png(runs)
    body = [
        f"<h1>{len(runs)} runs compared</h1>",
        "<p class=sub>sorted by test bits/dim (the exact NLL, the AIS "
        "estimate or a bound's importance estimate); runs without a likelihood last</p>",
        table,
        "<h2>samples side by side</h2>",
        f'<div class="row">{side}</div>',
    ]
    if overlay:
        body.append("<h2>validation curves</h2>" + _figure(overlay, "validation NLL (nats per image) against step"))
    for i in order:
        body.append(
            f"<details><summary>{_esc(runs[i]['name'])}: {_esc(test_score(runs[i]['results'])[1])}</summary>"
            f"{_run_body(runs[i], parts[i], 'h3')}</details>"
        )
    return _page("genzoo report: comparison", "".join(body))
