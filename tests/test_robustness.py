"""Runs that never lie and never lose work, tried the way a careful and a hostile user would.

Each test can fail: a seed that does not fix the initial weights, a log line added or changed by an
interruption, a second process writing into a locked run, a resume that silently mixes options, a
traceback (or the wrong exit code) for a write failure, a divergence or a forged file.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

import genzoo
import genzoo.checkpoint as checkpoint_module
from genzoo.checkpoint import MODEL_FILE, load_tensors, save_tensors
from genzoo.cli import main
from genzoo.train import CHECKPOINT_FILE, TrainConfig, train
from test_train import SignalAt, tiny_dataset

SMALL = ["-o", "channels=8", "-o", "num_blocks=1"]


def run(*args) -> int:
    return main([str(a) for a in args])


def genzoo_cli(*args, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "genzoo.cli", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # fmt: skip


def one_line_error(capsys, code_expected: int, code: int) -> str:
    err = capsys.readouterr().err
    assert code == code_expected, err
    assert err.count("\n") == 1 and err.startswith("genzoo: error: ") and "Traceback" not in err, err
    return err


def tensors(path: Path) -> dict:
    return load_tensors(path)[0]


# 1. seeds --------------------------------------------------------------------------------------------


def test_two_fresh_runs_with_one_seed_are_bitwise_identical(tmp_path):
    for name in ("a", "b"):
        torch.rand(3)  # a different global random state before each command
        args = ["train", "pixelcnn", "--steps", 12, "--seed", 7, "--log-every", 3, "--eval-every", 6, *SMALL]
        assert run(*args, "--samples", 0, "-q", "--run-dir", tmp_path / name) == 0
    a, b = tensors(tmp_path / "a" / MODEL_FILE), tensors(tmp_path / "b" / MODEL_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "log.jsonl").read_bytes() == (tmp_path / "b" / "log.jsonl").read_bytes()


# 2. the record of an interrupted run ------------------------------------------------------------------


def test_an_interrupted_and_resumed_run_writes_the_uninterrupted_log(tmp_path):
    config = TrainConfig(batch_size=16, max_steps=30, log_every=5, eval_every=10, checkpoint_every=100,
                         progress=False, device="cpu")  # fmt: skip
    torch.manual_seed(0)
    train(SignalAt((1, 4, 4), 3), tiny_dataset(), tmp_path / "a", config)
    torch.manual_seed(0)
    interrupted = SignalAt((1, 4, 4), 3)
    interrupted.at = 13  # inside a logging window: the checkpoint carries the window's sums
    assert train(interrupted, tiny_dataset(), tmp_path / "b", config)["signal"] == "SIGINT"
    (tmp_path / "b" / ".checkpoint.safetensors.stale.tmp").write_bytes(b"left by a killed writer")
    torch.manual_seed(5)
    assert train(SignalAt((1, 4, 4), 3), tiny_dataset(), tmp_path / "b", config)["status"] == "finished"
    assert (tmp_path / "a" / "log.jsonl").read_bytes() == (tmp_path / "b" / "log.jsonl").read_bytes()
    assert not list((tmp_path / "b").glob(".*.tmp"))  # stale temporary files are cleaned at the start
    timing = [json.loads(line) for line in (tmp_path / "b" / "timing.jsonl").read_text().splitlines()]
    assert [r["step"] for r in timing] == [5, 10, 15, 20, 25, 30] and all("elapsed" in r for r in timing)


# 3. the lock, and 4. signals' exit codes -------------------------------------------------------------


def test_a_locked_run_directory_refuses_a_second_process_and_sigterm_exits_143(tmp_path, capsys):
    run_dir = tmp_path / "run"
    trainer = genzoo_cli("train", "independent", "--time", 120, "--run-dir", run_dir, "-q", "--checkpoint-every", 50)
    try:
        for _ in range(600):  # wait until it trains (it holds the lock from before training on)
            if (run_dir / CHECKPOINT_FILE).exists():
                break
            time.sleep(0.05)
        assert (run_dir / CHECKPOINT_FILE).exists(), trainer.stderr.read() if trainer.poll() is not None else ""
        err = one_line_error(capsys, 7, run("train", "independent", "--steps", 5, "--run-dir", run_dir, "-q"))
        assert f"pid {trainer.pid}" in err
        err = one_line_error(capsys, 7, run("eval", run_dir, "-q"))
        assert f"pid {trainer.pid}" in err
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(timeout=60) == 143
    finally:
        trainer.kill()
    assert "checkpoint saved" in trainer.stderr.read()
    assert run("eval", run_dir, "-q") == 0  # the lock is gone with its holder


# 5. strict resume -----------------------------------------------------------------------------------


def test_resume_refuses_other_options_unless_overridden(tmp_path, capsys):
    base = ["train", "independent", "--run-dir", tmp_path, "-q", "--samples", 0]
    assert run(*base, "--steps", 10) == 0
    capsys.readouterr()
    err = one_line_error(capsys, 2, run(*base, "--steps", 20, "--lr", 0.01, "--batch-size", 32))
    assert "--lr 0.01 (stored: 0.001)" in err and "--batch-size 32 (stored: 64)" in err
    err = one_line_error(capsys, 2, run(*base, "--steps", 20, "--optimizer", "sgd", "--override", "optimizer=sgd"))
    assert "--optimizer 'sgd' (stored: 'adam')" in err and "--override" not in err  # never changed mid-run
    assert run(*base, "--steps", 20, "--override", "lr=0.01") == 0  # budgets change freely; lr overridden
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    override = [r for r in log if r.get("event") == "override"]
    assert override == [{"step": 10, "event": "override", "changes": {"lr": {"stored": 0.001, "now": 0.01}}}]
    assert genzoo.load(tmp_path).checkpoint_info["train"]["lr"] == 0.01


# 6. write failures ----------------------------------------------------------------------------------


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    assert run("train", "independent", "--steps", 4, "--run-dir", tmp_path, "-q", "--samples", 0) == 0
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, message: 'No space left on device' })")

    monkeypatch.setattr(checkpoint_module, "save_file", full)
    capsys.readouterr()
    err = one_line_error(capsys, 6, run("train", "independent", "--steps", 8, "--run-dir", tmp_path, "-q"))
    assert "No space left on device" in err and str(tmp_path) in err
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_read_only_places_and_wrong_kinds_of_path_are_one_line(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    one_line_error(capsys, 6, run("train", "independent", "--steps", 2, "--run-dir", a_file, "-q"))
    assert run("train", "independent", "--steps", 2, "--run-dir", tmp_path / "ok", "-q", "--samples", 0) == 0
    capsys.readouterr()
    one_line_error(capsys, 6, run("sample", tmp_path / "ok", "-n", 4, "-o", tmp_path))  # into a directory
    one_line_error(capsys, 2, run("sample", tmp_path / "ok", "-n", 4, "-o", tmp_path / "s.xyz"))  # unknown format
    assert run("sample", tmp_path / "ok", "-n", 4, "-o", tmp_path / "s.jpg") == 0
    assert (tmp_path / "s.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG bytes under a .jpg name

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    capsys.readouterr()
    err = one_line_error(capsys, 6, run("sample", tmp_path / "ok", "-n", 4, "-o", tmp_path / "t.png"))
    assert "Permission denied" in err
    code = run("train", "independent", "--data", "mnist", "--data-dir", tmp_path / "d", "--steps", 1, "-q")
    err = capsys.readouterr().err  # a missing dataset adds the list of files to place, and where
    assert code == 3 and err.startswith("genzoo: error: ") and "Traceback" not in err
    assert "Permission denied" in err and "Place these files by hand" in err


# 7. divergence and non-finite losses ----------------------------------------------------------------


def test_divergence_with_a_finite_loss_is_flagged_not_reported(tmp_path, capsys):
    args = ["train", "rbm", "-o", "hidden=16", "--optimizer", "sgd", "--lr", "1e4", "--grad-clip", 0, "--steps", 300]
    err = one_line_error(capsys, 5, run(*args, "--run-dir", tmp_path, "-q", "--samples", 0))
    assert "diverged" in err
    results = json.loads((tmp_path / "results.json").read_text())
    assert "diverged" in results["flagged"]  # the numbers are kept, marked as no result


def test_a_nan_loss_is_one_line_with_exit_code_5(tmp_path, capsys):
    args = ["train", "independent", "--lr", "1e300", "--optimizer", "sgd", "--grad-clip", 0, "--steps", 20]
    one_line_error(capsys, 5, run(*args, "--run-dir", tmp_path, "-q"))


# 8. forged checkpoint metadata ----------------------------------------------------------------------


@pytest.mark.parametrize("meta", [["a", "list"], {"format": "genzoo-model/1", "model": {"levels": 2}}])
def test_forged_metadata_is_a_one_line_refusal(tmp_path, capsys, meta):
    save_tensors(tmp_path / MODEL_FILE, {"model.x": torch.zeros(1)}, meta)
    one_line_error(capsys, 4, run("sample", tmp_path, "-o", tmp_path / "s.png"))
    one_line_error(capsys, 4, run("eval", tmp_path, "-q"))


# 9. options validated before any work ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "pixelcnn", "--steps", 2, "-o", "channels=abc"], "channels='abc'"),
        (["train", "pixelcnn", "--steps", 2, "--lr", "inf"], "finite"),
        (["train", "pixelcnn", "--steps", 2, "--lr", "1e400"], "finite"),
        (["train", "pixelcnn", "--time", "nan"], "finite"),
        (["train", "pixelcnn", "--steps", 2, "--lr-decay", "nan"], "finite"),
        (["train", "pixelcnn", "--steps", 2, "--checkpoint-every", "1e23"], "not a valid int"),
        (["train", "pixelcnn", "--steps", 2, "--momentum", "-1"], "momentum"),
        (["train", "pixelcnn", "--steps", 2, "--momentum", "0.5"], "sgd optimizer only"),
        (["train", "pixelcnn", "--steps", 2, "--em-iterations", 3], "--fit em"),
        (["train", "pixelcnn", "--steps", 2, "--samples", "-1"], "--samples"),
        (["train", "pixelcnn", "--steps", 2, "--conditional"], "no class-conditional form"),
        (["train", "pixelcnn", "--stepz", 2], "see `genzoo"),
        (["train", "pixelcnn", "--steps", 2, "--device", "cuda:7"], "cuda"),
        (["learning-curve", "--sizes", 99999], "exceeds the 1257 training images"),
    ],
)
def test_bad_options_are_refused_in_one_line_before_any_work(tmp_path, capsys, args, message):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("a GPU is here")
    extra = ["--out", tmp_path / "lc"] if args[0] == "learning-curve" else ["--run-dir", tmp_path / "r", "-q"]
    err = one_line_error(capsys, 2, run(*args, *extra))
    assert message in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "lc").exists()  # nothing written


def test_sample_and_eval_check_their_options(tmp_path, capsys):
    assert run("train", "independent", "--steps", 2, "--run-dir", tmp_path, "-q", "--samples", 0) == 0
    capsys.readouterr()
    assert "at most" in one_line_error(capsys, 2, run("sample", tmp_path, "-n", 99999999999, "-o", tmp_path / "s.png"))
    if not torch.cuda.is_available():
        assert "CUDA" in one_line_error(capsys, 2, run("eval", tmp_path, "--device", "cuda", "-q"))
        assert "CUDA" in one_line_error(
            capsys, 2, run("sample", tmp_path, "--device", "cuda", "-o", tmp_path / "s.png")
        )


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"genzoo {genzoo.__version__}"
