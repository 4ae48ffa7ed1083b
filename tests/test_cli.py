"""The command line end to end on the bundled digits: train, eval, sample, and clean failures."""

import json
import pickle
import subprocess
import sys

import pytest

from genzoo.cli import main


def run(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "independent-digits"
    code = run(
        "train",
        "independent",
        "--data",
        "digits",
        "--steps",
        30,
        "--run-dir",
        run_dir,
        "--quiet",
        "--eval-every",
        10,
        "--samples",
        16,
        "--lr",
        0.05,
    )
    assert code == 0
    return run_dir


def test_list_shows_models_and_datasets(capsys):
    assert run("list") == 0
    out = capsys.readouterr().out
    for name in ("pixelcnn", "made", "nade", "fvsbn", "digits", "binarized-mnist"):
        assert name in out


def test_train_writes_run_files(trained_run):
    for name in ("model.safetensors", "checkpoint.safetensors", "log.jsonl", "samples.png", "results.json"):
        assert (trained_run / name).exists(), name
    results = json.loads((trained_run / "results.json").read_text())
    assert results["test"]["n"] == 270  # the full test split, no dropped batch
    assert results["test"]["nll_nats"] < 64 * 2.84  # better than uniform over 17 levels


def test_eval_prints_nats_and_bits(trained_run, capsys):
    assert run("eval", trained_run, "--json", "--quiet") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 270 and result["bits_per_dim"] == pytest.approx(
        result["nll_nats"] / (64 * 0.6931471805599453)
    )


def test_sample_writes_png(trained_run, tmp_path):
    out = tmp_path / "grid.png"
    assert run("sample", trained_run, "-n", 9, "-o", out) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_at_a_temperature(trained_run, tmp_path, capsys):
    assert run("sample", trained_run, "-n", 4, "--temperature", 0.5, "-o", tmp_path / "t.png") == 0
    assert "at temperature 0.5" in capsys.readouterr().out
    assert run("sample", trained_run, "--temperature", 0, "-o", tmp_path / "z.png") == 2
    assert "--temperature: must be a positive number" in capsys.readouterr().err


def test_temperature_is_refused_for_models_without_conditionals(tmp_path, capsys):
    run_dir = tmp_path / "vae"
    assert run("train", "vae", "--data", "digits", "--steps", 2, "--run-dir", run_dir, "--quiet", "--samples", 0) == 0
    capsys.readouterr()
    assert run("sample", run_dir, "--temperature", 0.5, "-o", tmp_path / "v.png") == 2
    assert "--temperature applies to autoregressive models" in capsys.readouterr().err
    assert run("eval", run_dir, "--temperature", 0.5, "-q") == 2
    assert "super-resolution and colorization" in capsys.readouterr().err
    assert run("eval", run_dir, "--best-of", 2, "-q") == 2
    assert "super-resolution and colorization" in capsys.readouterr().err
    assert run("sample", run_dir, "--best-of", 2, "-o", tmp_path / "b.png") == 2
    assert "--best-of apply to super-resolution and colorization runs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "nope", "--steps", "1"], "unknown model 'nope'"),
        (["train", "independent", "--data", "nope", "--steps", "1"], "unknown dataset"),
        (["train", "independent", "--steps", "1", "-o", "bogus=3"], "bad options"),
        (["train", "independent"], "give a training budget"),
    ],
)
def test_bad_requests_fail_in_one_line(capsys, tmp_path, args, message):
    assert run(*args, "--run-dir", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_run_dir_of_another_model_is_refused_and_untouched(trained_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    assert run("train", "fvsbn", "--data", "digits", "--steps", 1, "--run-dir", trained_run, "--quiet") == 4
    assert "choose another --run-dir" in capsys.readouterr().err
    assert before == {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}


def test_pickle_checkpoint_is_refused(tmp_path, capsys):
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert run("sample", evil, "-o", tmp_path / "x.png") == 4
    assert "never unpickles" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_console_script_help_exits_zero():
    for command in ([], ["train"], ["eval"], ["sample"], ["list"]):
        done = subprocess.run([sys.executable, "-m", "genzoo.cli", *command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "usage" in done.stdout


def test_complete_writes_a_grid_and_keeps_the_top_half(trained_run, tmp_path, capsys):
    out = tmp_path / "completions.png"
    assert run("complete", trained_run, "--data", "digits", "--index", 3, "--index", 5, "--samples", 3, "-o", out) == 0
    assert "2 rows" in capsys.readouterr().out and out.exists()
    import torch

    from genzoo.checkpoint import load
    from genzoo.data import load_dataset
    from genzoo.workflow import complete_images, keep_mask

    model, images = load(trained_run), load_dataset("digits").test.batch(torch.tensor([3]))[0]
    known = keep_mask(model.image_shape, "top-half")
    done = complete_images(model, images, known, 2)
    assert torch.equal(done[0, :, known], images[:, known].expand(2, -1))


def test_complete_rejects_bad_requests(trained_run, tmp_path, capsys):
    assert run("complete", trained_run, "--index", 9999, "-o", tmp_path / "c.png") == 2
    assert "out of range" in capsys.readouterr().err
    assert run("complete", trained_run, "--data", "mnist", "-o", tmp_path / "c.png") == 2
    assert "trained on digits" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()
