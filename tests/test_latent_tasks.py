"""``genzoo latent RUN ACTION`` and ``genzoo.tasks.latent`` on tiny models trained a few steps on the
bundled digits: every action writes its numbers or files, the probe beats chance, and the pictures hold
what they claim (originals beside decoded codes)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo.cli import main
from genzoo.data import load_dataset
from genzoo.tasks import latent
from genzoo.workflow import model_run_data


def run(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "vae-digits"
    assert (
        run(
            "train",
            "vae",
            "--data",
            "digits",
            "--steps",
            40,
            "--run-dir",
            run_dir,
            "--quiet",
            "--eval-every",
            1000,
            "--samples",
            0,
            "--eval-k",
            2,
            "--lr",
            0.01,
            "-o",
            "latent=4",
            "-o",
            "hidden=[64]",
        )
        == 0
    )
    return run_dir


def test_encode_writes_plain_npy_codes_and_labels(vae_run, tmp_path, capsys):
    out = tmp_path / "codes.npy"
    assert run("latent", vae_run, "encode", "-o", out, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    codes, labels = np.load(out, allow_pickle=False), np.load(result["labels"], allow_pickle=False)
    assert codes.shape == (270, 4) and codes.dtype == np.float32 and labels.shape == (270,)
    model, dataset = model_run_data(vae_run)
    x, y = dataset.test.batch(torch.arange(6))
    np.testing.assert_allclose(codes[:6], model.encode(x)[0].detach().numpy(), rtol=1e-5, atol=1e-6)  # posterior means
    assert np.array_equal(labels[:6], y.numpy())


def test_probe_beats_chance(vae_run, capsys):
    assert run("latent", vae_run, "probe", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 270 and result["n_train"] == 1257 and result["latent"] == 4
    assert result["accuracy"] > max(0.4, 2 * result["chance"])


def test_cluster_reports_agreement_with_the_labels(vae_run, capsys):
    assert run("latent", vae_run, "cluster", "--components", 10) == 0
    assert "Gaussian mixture of 10 on the codes: ARI" in capsys.readouterr().out
    model, dataset = model_run_data(vae_run)
    result = latent.cluster_codes(model, dataset, components=6, restarts=1)
    assert result["components"] == 6 and 0.05 < result["ari"] <= 1 and 0.1 < result["nmi"] <= 1


def test_map_is_a_png_scatter(vae_run, tmp_path):
    out = tmp_path / "map.png"
    assert run("latent", vae_run, "map", "-o", out) == 0
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (560, 640, 3)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 10  # points in the ten class colours
    points, explained = latent.project_2d(np.random.default_rng(0).normal(size=(50, 5)) * [5, 3, 1, 1, 1])
    assert points.shape == (50, 2) and explained[0] > explained[1] > 0 and sum(explained) < 1


def test_interpolate_rows_start_and_end_at_the_pair(vae_run, tmp_path, capsys):
    model, dataset = model_run_data(vae_run)
    rows = latent.interpolate(model, dataset.test, [(0, 5), (2, 3)], steps=6)
    assert rows.shape == (2, 8, 1, 8, 8)
    x, _ = dataset.test.batch(torch.tensor([0, 5]))
    assert torch.equal(rows[0, 0], x[0]) and torch.equal(rows[0, -1], x[1])
    ends = model.decode_images(model.code(x), mean=True)
    assert torch.equal(rows[0, 1], ends[0]) and torch.equal(rows[0, -2], ends[1])
    out = tmp_path / "interp.png"
    assert run("latent", vae_run, "interpolate", "--index", 0, "--index", 5, "--steps", 6, "-o", out) == 0
    assert Image.open(out).size[0] > Image.open(out).size[1] * 4  # one row of 8 tiles
    assert run("latent", vae_run, "interpolate", "--index", 0, "--index", 5, "--index", 7) == 2
    assert "pairs" in capsys.readouterr().err


def test_reconstruct_puts_originals_above_reconstructions(vae_run, tmp_path):
    model, dataset = model_run_data(vae_run)
    rows = latent.reconstruct(model, dataset.test, [1, 2, 3])
    x, _ = dataset.test.batch(torch.tensor([1, 2, 3]))
    assert rows.shape == (2, 3, 1, 8, 8) and torch.equal(rows[0], x)
    assert (rows[1] - x).abs().float().mean() < (x - x.float().mean()).abs().mean()  # closer than a flat image
    out = tmp_path / "recon.png"
    assert run("latent", vae_run, "reconstruct", "--index", 1, "--index", 2, "-o", out, "--draw") == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_requests_a_model_cannot_serve_fail_in_one_line(vae_run, tmp_path, capsys):
    exact = tmp_path / "independent"
    assert (
        run("train", "independent", "--data", "digits", "--steps", 2, "--run-dir", exact, "--quiet", "--samples", 0)
        == 0
    )
    capsys.readouterr()
    assert run("latent", exact, "probe") == 2
    assert "no latent codes" in capsys.readouterr().err
    assert run("latent", vae_run, "reconstruct", "--index", 270) == 2
    assert "out of range" in capsys.readouterr().err


def test_autoencoder_trains_evaluates_samples_and_probes(tmp_path, capsys):
    run_dir = tmp_path / "ae"
    assert (
        run(
            "train",
            "autoencoder",
            "--data",
            "digits",
            "--steps",
            20,
            "--run-dir",
            run_dir,
            "--quiet",
            "--eval-every",
            1000,
            "--samples",
            4,
            "--lr",
            0.01,
            "-o",
            "latent=4",
            "-o",
            "hidden=[64]",
        )
        == 0
    )
    assert "reconstruction NLL" in capsys.readouterr().out
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"]["kind"] == "reconstruction" and (run_dir / "samples.png").exists()
    assert run("latent", run_dir, "probe", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] > 2 * result["chance"]


@pytest.mark.parametrize(
    "options",
    [
        {"num_classes": 10, "flow": "planar"},
        {
            "decoder": "pixelcnn",
            "architecture": "conv",
            "hidden": [8],
            "decoder_options": {"channels": 8, "num_blocks": 1, "output_channels": 8},
        },
    ],
)
def test_tasks_serve_conditional_flow_and_pixelcnn_decoder_vaes(options):
    dataset = load_dataset("digits")
    torch.manual_seed(0)
    model = genzoo.create("vae", image_shape=(1, 8, 8), levels=17, **{"latent": 3, "hidden": [32], **options})
    model.eval()
    codes, labels = latent.encode_split(model, dataset.valid)
    assert codes.shape == (270, 3) and np.isfinite(codes).all()
    if model.conditional:  # codes of q(z | x, y): the true labels go in
        x, y = dataset.valid.batch(torch.arange(4))
        np.testing.assert_allclose(codes[:4], model.code(x, y).numpy(), rtol=1e-5, atol=1e-6)
    rows = latent.interpolate(model, dataset.valid, [(0, 1)], steps=3)
    assert rows.shape == (1, 5, 1, 8, 8) and rows.max() < 17
    assert 0 <= latent.linear_probe(model, dataset, "valid")["accuracy"] <= 1
