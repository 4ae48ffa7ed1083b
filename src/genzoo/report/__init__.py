"""What a model learned, as one self-contained HTML page: ``genzoo report RUN [RUN ...]``.

``write_report(run_dir)`` writes ``RUN/report.html`` from what the run directory holds (``genzoo train``
calls it at the end of every run); ``write_comparison(run_dirs, path)`` puts several runs side by side.
The page needs nothing else: pictures are inline base64 PNGs, the style sheet is inline, there is no
script, and a Content-Security-Policy forbids the page any network request.

It shows, as far as the directory allows (every part degrades to a note for a partial run: no
results.json yet, a GAN without an NLL, an EM-fitted model without log.jsonl):
- the model card: the model and its recorded options (``model.safetensors`` metadata), parameters,
  dataset, device, torch version, the command, training vs evaluation time;
- the loss, validation, learning-rate, gradient-norm and throughput curves (log.jsonl, timing.jsonl);
- the test result by its kind (exact NLL; bound and k-sample estimate; AIS log Z ± σ; reconstruction;
  sample metrics) beside the paper's figure when the run used a recipe (``genzoo.recipes``);
- large labelled sample grids drawn from the model with a seeded generator (class labels under the
  columns of a conditional model), completions of test images for autoregressive models (original |
  kept part | completions), and every other picture the run directory holds (latent maps, curves, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

from genzoo.report.figures import SAMPLES
from genzoo.report.html import comparison_html, report_html
from genzoo.report.run import ReportError, read_run, test_score

REPORT_FILE = "report.html"
__all__ = ["write_report", "write_comparison", "report_html", "comparison_html", "read_run", "test_score",
           "ReportError", "REPORT_FILE"]  # fmt: skip


def _write(path, text: str) -> Path:
    from genzoo.atomic import write_text

    return write_text(path, text)


def write_report(
    run_dir, output=None, *, samples: int = SAMPLES, seed: int = 0, device: str = "cpu", draw: bool = True
) -> Path:
    """Write the report of one run to ``output`` (default ``RUN/report.html``) atomically; returns its path.

    ``samples``: images drawn from the model for the grid (0: none, use samples.png); ``draw=False`` loads
    no model at all (no samples, no completions). Raises ReportError only when ``run_dir`` is no directory."""
    output = Path(output) if output is not None else Path(run_dir) / REPORT_FILE
    return _write(output, report_html(run_dir, samples, seed, device, draw))


def write_comparison(
    run_dirs, output, *, samples: int = SAMPLES, seed: int = 0, device: str = "cpu", draw: bool = True
) -> Path:
    """Write one page comparing ``run_dirs`` to ``output`` atomically; returns its path."""
    return _write(output, comparison_html(list(run_dirs), samples, seed, device, draw))


def open_hint(path) -> str:
    """How to look at a written report."""
    return f"file://{os.path.abspath(path)}"
