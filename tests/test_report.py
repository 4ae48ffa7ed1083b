"""The run report: one self-contained HTML page per run (and a comparison of several), checked as files and
in a real headless browser (skipped where no Chromium is installed; .ci/run installs Debian's)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from genzoo.cli import main
from genzoo.report import ReportError, read_run, write_report
from genzoo.report.html import CSP

TRAIN = ["--data", "digits", "-q", "--samples", "16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs on the bundled digits: an exact autoregressive model, a class-conditional GAN (no
    likelihood) and an EM-fitted mixture (no log.jsonl)."""
    root = tmp_path_factory.mktemp("runs")
    commands = {
        "pixelcnn": ["pixelcnn", "-o", "channels=8", "-o", "num_blocks=1", "-o", "output_channels=8", "--steps", "5",
                     "--log-every", "1", "--eval-every", "2"],
        "cgan": ["cgan", "-o", "channels=8", "-o", "latent=8", "--steps", "4", "--log-every", "2"],
        "mixture": ["bernoulli-mixture", "-o", "components=3", "--em-iterations", "2"],
    }  # fmt: skip
    for name, argv in commands.items():
        assert main(["train", argv[0], *TRAIN, "--run-dir", str(root / name), *argv[1:]]) == 0
    return {name: root / name for name in commands}


def images_of(page: str) -> list[Image.Image]:
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), "every picture inline"
    return [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in sources]


def assert_self_contained(page: str) -> None:
    assert CSP in page  # the browser refuses any network request the page might make
    assert "<script" not in page and "<link" not in page
    assert not re.search(r'(?:src|href)="(?!data:)', page), "no reference outside the page"


def test_report_of_an_autoregressive_run(runs):
    path = write_report(runs["pixelcnn"])
    assert path == runs["pixelcnn"] / "report.html"
    page = path.read_text()
    assert_self_contained(page)
    results = json.loads((runs["pixelcnn"] / "results.json").read_text())
    for text in ("model card", "channels=8", "849" if results["params"] == 849 else f"{results['params']:,}",
                 "digits", "bits/dim", f"{results['test']['nll_nats']:.3f}", "training curves", "completions",
                 "exact log-likelihood", "cached sampling"):  # fmt: skip
        assert text in page, text
    pictures = images_of(page)
    for picture in pictures:
        picture.load()  # decodes
    sizes = sorted((p.width for p in pictures), reverse=True)
    assert sizes[1] >= 8 * 64, "large sample grids (8x8 digits at 64 pixels or more)"
    assert 'class="note"' not in page, "nothing missing from a finished run"


def test_a_conditional_models_samples_have_a_column_per_class(runs):
    from genzoo.checkpoint import load
    from genzoo.report.figures import draw_samples

    model = load(runs["cgan"])
    png, caption, seconds, _ = draw_samples(model, 64, seed=3)
    grid = Image.open(io.BytesIO(png))
    assert "60 samples" in caption and seconds >= 0  # 6 rows of the 10 classes
    assert 10 * 64 <= grid.width < 11 * 64 + 20 * 4 and 6 * 64 <= grid.height
    again = draw_samples(model, 64, seed=3)[0]
    assert again == png  # seeded
    page = write_report(runs["cgan"]).read_text()
    assert "samples only" in page and "sample metrics" in page and "frechet_distance" in page
    assert_self_contained(page)


def test_an_em_fitted_run_and_partial_runs_degrade_gracefully(runs, tmp_path):
    page = write_report(runs["mixture"]).read_text()
    assert "fitted without gradient steps" in page and "em, 2 iterations" in page and "NLL" in page

    partial = tmp_path / "partial"
    shutil.copytree(runs["pixelcnn"], partial)
    (partial / "tasks").mkdir()
    shutil.copy(partial / "samples.png", partial / "tasks" / "latent_map.png")  # a task's picture
    for name in ("results.json", "model.safetensors", "model_best.safetensors", "samples.png", "report.html"):
        (partial / name).unlink()
    page = write_report(partial).read_text()
    assert "No test result yet" in page and "no model file yet" in page and "training curves" in page
    assert "task pictures" in page and "tasks/latent_map.png</figcaption>" in page
    assert_self_contained(page)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No test result yet" in write_report(empty).read_text()
    with pytest.raises(ReportError):
        write_report(tmp_path / "missing")
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_the_log_is_merged_with_its_timing(runs):
    run = read_run(runs["pixelcnn"])
    assert [r["step"] for r in run["log"]] == [1, 2, 3, 4, 5]
    assert all("loss" in r and "images_per_sec" in r for r in run["log"])
    assert run["model"]["name"] == "pixelcnn" and run["train"]["max_steps"] == 5


def test_a_comparison_sorts_by_test_nll_and_puts_samples_side_by_side(runs, tmp_path, capsys):
    out = tmp_path / "compare.html"
    assert main(["report", str(runs["cgan"]), str(runs["pixelcnn"]), str(runs["mixture"]), "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text()
    assert_self_contained(page)
    table = page.split("<table class=grid>")[1].split("</table>")[0]
    order = [name for name in re.findall(r"<tr><td>([^<]+)</td>", table)]
    assert order == ["mixture", "pixelcnn", "cgan"]  # 102 nats < 180 nats < no likelihood
    assert "samples side by side" in page and len(images_of(page)) >= 3 + 3


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browse(url: str, profile, *options: str, timeout: float = 60) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]  # fmt: skip
    return subprocess.run([chromium(), *flags, *options, url], capture_output=True, text=True, timeout=timeout)


PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener("securitypolicyviolation", e => window.__errors.push("csp " + e.blockedURI));
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length + "/" + images.length;
  document.body.dataset.errors = JSON.stringify(window.__errors);
});
</script>"""


@pytest.mark.skipif(chromium() is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_report_in_a_real_browser(runs, tmp_path):
    report = write_report(runs["pixelcnn"])
    shot = tmp_path / "shot.png"
    loaded = browse(report.as_uri(), tmp_path / "p1", f"--screenshot={shot}", "--window-size=1200,2200")
    console = [line for line in loaded.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert shot.is_file(), loaded.stderr[-2000:]
    assert not console, console  # no console messages: no errors, no blocked requests

    # the same page with a probe that counts the decoded pictures and any error (the CSP let it run)
    probed = tmp_path / "probed.html"
    page = report.read_text().replace(CSP, CSP + "; script-src 'unsafe-inline'")
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    dom = browse(probed.as_uri(), tmp_path / "p2", "--dump-dom", "--virtual-time-budget=5000").stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    decoded = re.search(r'data-decoded="(\d+)/(\d+)"', body)
    assert decoded and decoded.group(1) == decoded.group(2) == str(page.count("<img ")), body
    assert int(decoded.group(2)) >= 3, "curves, samples and completions"
    assert 'data-errors="[]"' in body, body

    picture = Image.open(shot).convert("RGB")
    colours = picture.getcolors(1 << 24)
    assert picture.size == (1200, 2200) and len(colours) > 50, "not a blank page"
    dark = sum(count for count, rgb in colours if sum(rgb) < 200)
    assert dark > 0.002 * picture.width * picture.height, "text and pictures drawn"
