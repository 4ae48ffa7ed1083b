"""Two-player (GAN) training under DDP with 2 gloo processes on CPU.

Each process draws its own noise (as the field does); what then holds is checked: a player's gradients
not averaged (or averaged after clipping), a rank keeping its own initial weights, or a logged scalar
that is rank 0's alone moves the deterministic players away from the 1-process run or the replicas
apart; a resume that restores the wrong rank's random stream breaks the bitwise repeat.
"""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from ddp_worker import GANS, gan_config, gan_runs, tiny_gan, tiny_gan_dataset
from genzoo.checkpoint import load_tensors
from genzoo.train import CHECKPOINT_FILE, train
from test_train import WORKER, log_records, saved

STEPS, RESUME_AT = 5, 3  # n_critic=2: generator updates at steps 2 and 4; the resume falls between them


def gloo_or_skip():
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")


def assert_same_run(expected_dir, got_dir, exact: bool):
    one, two = log_records(expected_dir), log_records(got_dir)
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, STEPS + 1))
    for a, b in zip(one, two):
        assert a["scalars"].keys() == b["scalars"].keys()
        for key in a["scalars"]:
            expected = a["scalars"][key] if exact else pytest.approx(a["scalars"][key], rel=1e-5, abs=1e-5)
            assert b["scalars"][key] == expected, (a["step"], key)
    for prefix in ("model.", "ema.", "optimizer."):
        expected, got = saved(expected_dir, prefix), saved(got_dir, prefix)
        assert expected and expected.keys() == got.keys()
        for key in expected:
            if exact:
                assert torch.equal(got[key], expected[key]), key
            else:
                torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_two_player_training_under_ddp(tmp_path):
    """Per-optimizer gradient averaging with each process's own noise: the deterministic players train in
    2 processes what 1 process trains on the global batch; every GAN (batch norm, gradient penalty, labels
    and power iteration) keeps its replicas identical, and stopped and resumed in 2 processes repeats
    itself bit for bit; a run started in 1 process continues in 2."""
    gloo_or_skip()
    variants = list(GANS)
    data = tiny_gan_dataset()
    for variant in variants:  # the first RESUME_AT steps in one process; the 2-process job continues them
        train(tiny_gan(variant), data, tmp_path / "ddp" / variant / "mixed", gan_config(RESUME_AT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
               str(tmp_path / "ddp"), "--gan", ",".join(variants), "--steps", str(STEPS),
               "--resume-at", str(RESUME_AT)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    gan_runs(tmp_path / "one", ["players"], STEPS)
    assert_same_run(tmp_path / "one" / "players" / "full", tmp_path / "ddp" / "players" / "full", exact=False)
    for variant in variants:
        ddp = tmp_path / "ddp" / variant
        assert_same_run(ddp / "full", ddp / "resumed", exact=True)
        assert log_records(ddp / "mixed")[-1]["step"] == STEPS
        replicas = [load_tensors(ddp / "full" / f"rank{r}.safetensors")[0] for r in range(2)]
        assert replicas[0] and replicas[0].keys() == replicas[1].keys()
        for key in replicas[0]:
            assert torch.equal(replicas[0][key], replicas[1][key]), (variant, key)
        _, meta = load_tensors(ddp / "full" / CHECKPOINT_FILE)
        assert meta["world_size"] == 2 and len(meta["rng"]) == 2
        streams = [saved(ddp / "full", f"rng.{r}.torch") for r in range(2)]
        assert not torch.equal(*[next(iter(s.values())) for s in streams])  # each process its own noise
    records = log_records(tmp_path / "ddp" / "wgan-gp" / "full")
    assert ["g_loss" in r["scalars"] for r in records] == [False, True, False, True, False]
