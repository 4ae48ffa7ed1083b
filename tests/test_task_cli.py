"""Super-resolution and colorization through the CLI: train, eval (NLL and the metrics beside the
baselines), sample --index and --from (a labelled grid), on the bundled digits and photos32."""

import json

import numpy as np
from PIL import Image

from genzoo.cli import main

SMALL = ["-o", "channels=12", "-o", "num_blocks=1", "-q"]


def run(*args) -> int:
    return main([str(a) for a in args])


def test_superres_on_digits_trains_evaluates_and_samples(tmp_path, capsys):
    run_dir = tmp_path / "sr"
    assert run("train", "pixelcnn", "--task", "superres", "--scale", 2, "--data", "digits", "--steps", 30,
               "--run-dir", run_dir, *SMALL) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "test NLL" in out and "| method | psnr | ssim | consistency | diversity |" in out
    for method in ("nearest", "bicubic", "l2-cnn", "model"):
        assert f"| {method} |" in out
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"] == "digits-superres2" and results["test"]["kind"] == "exact"
    assert set(results["task"]["methods"]) >= {"nearest", "bicubic", "l2-cnn", "model"}
    assert (run_dir / "regression.safetensors").exists() and (run_dir / "report.html").exists()
    assert run("eval", run_dir, "-q", "--temperature", 0.8, "--best-of", 2) == 0
    out = capsys.readouterr().out
    assert "| l2-cnn |" in out and "| model T=0.8 |" in out and "| model best of 2 |" in out
    assert run("sample", run_dir, "--index", 3, "--temperature", 0.8, "-o", tmp_path / "i.png") == 0
    assert run("sample", run_dir, "--index", 3, "--best-of", 2, "-o", tmp_path / "b.png") == 0
    low = Image.fromarray(np.full((4, 4), 200, dtype=np.uint8))
    low.save(tmp_path / "low.png")
    assert run("sample", run_dir, "--from", tmp_path / "low.png", "-o", tmp_path / "f.png") == 0
    for name in ("i.png", "f.png"):
        picture = Image.open(tmp_path / name)
        assert picture.width > 400 and picture.height > 80  # labelled columns, not a bare 8x8 grid


def test_colorize_on_photos32_trains(tmp_path, capsys):
    args = ["train", "pixelcnn", "--task", "colorize", "--data", "photos32", "--steps", 5, "--batch-size", 16]
    assert run(*args, "--run-dir", tmp_path / "c", "--test-max-images", 32, *SMALL) == 0
    out = capsys.readouterr().out
    assert "PARTIAL" in out and "| gray |" in out and "colourfulness" in out


def test_task_options_are_checked(tmp_path, capsys):
    assert run("train", "pixelcnn", "--task", "superres", "--steps", 2, "--run-dir", tmp_path / "a") == 2
    assert "--scale" in capsys.readouterr().err
    assert run("train", "pixelcnn", "--scale", 2, "--steps", 2, "--run-dir", tmp_path / "b") == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
