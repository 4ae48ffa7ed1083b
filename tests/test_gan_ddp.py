"""Two-player (GAN) training under DDP: 2 gloo processes on CPU must train what 1 process trains.

Each test can fail: a rank drawing its own noise instead of its rows of the global draw, batch norm
normalizing with a rank's statistics instead of the global batch's, a player's gradients not averaged
(or averaged after clipping), a rank keeping its own initial weights, a resume restoring a per-rank
random stream, or a logged scalar that is rank 0's alone: any of these moves the weights or the logged
losses by far more than float rounding.
"""

import contextlib
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ddp_worker import GANS, gan_config, gan_runs, tiny_gan, tiny_gan_dataset
from genzoo.checkpoint import load_tensors
from genzoo.distributed import Distributed, GlobalBatch
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
    for prefix in ("model.", "ema.", "optimizer.generator.", "optimizer.discriminator."):
        expected, got = saved(expected_dir, prefix), saved(got_dir, prefix)
        assert expected and expected.keys() == got.keys()
        for key in expected:
            if exact:
                assert torch.equal(got[key], expected[key]), key
            else:
                torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_gan_training_under_ddp_matches_one_process_and_resumes_exactly(tmp_path):
    """dcgan (batch norm in G and D), wgan-gp (penalty; also through batch norm), cgan (labels, spectral
    norm): a 2-process run equals the 1-process run on the global batch; stopped and resumed in 2
    processes, it repeats itself bit for bit; started in 1 process and resumed in 2, it still matches."""
    gloo_or_skip()
    variants = list(GANS)
    data = tiny_gan_dataset()
    for variant in variants:  # the first RESUME_AT steps in one process; the 2-process job continues them
        train(tiny_gan(variant), data, tmp_path / "ddp" / variant / "mixed", gan_config(RESUME_AT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        str(tmp_path / "ddp"),
        "--gan",
        ",".join(variants),
        "--steps",
        str(STEPS),
        "--resume-at",
        str(RESUME_AT),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    gan_runs(tmp_path / "one", variants, STEPS)
    for variant in variants:
        one, ddp = tmp_path / "one" / variant / "full", tmp_path / "ddp" / variant
        assert_same_run(one, ddp / "full", exact=False)
        assert_same_run(ddp / "full", ddp / "resumed", exact=True)
        assert_same_run(one, ddp / "mixed", exact=False)
        _, meta = load_tensors(ddp / "full" / CHECKPOINT_FILE)
        assert meta["world_size"] == 2 and len(meta["rng"]) == 2
        streams = [{k.split(".", 2)[2]: v for k, v in saved(ddp / "full", f"rng.{r}.").items()} for r in range(2)]
        assert streams[0] and streams[0].keys() == streams[1].keys()  # one random stream, shared by the ranks
        for key in streams[0]:
            torch.testing.assert_close(streams[1][key], streams[0][key], rtol=0, atol=0, equal_nan=True)
    records = log_records(tmp_path / "ddp" / "wgan-gp" / "full")
    assert ["g_loss" in r["scalars"] for r in records] == [False, True, False, True, False]


# GlobalBatch on its own (no processes: random rows need no communication; batch norm on a 1-rank group)

DRAWS = {
    "randn(n, 4)": lambda n: torch.randn(n, 4),
    "rand(shape)": lambda n: torch.rand(torch.Size([n, 2, 3])),
    "rand(size=)": lambda n: torch.rand(size=(n,), dtype=torch.float64),
    "randint(low, high, size)": lambda n: torch.randint(0, 9, (n, 5)),
    "randint(high, size=)": lambda n: torch.randint(9, size=(n,)),
    "randn_like": lambda n: torch.randn_like(torch.zeros(n, 3)),
    "randint_like": lambda n: torch.randint_like(torch.zeros(n, 2), 4),
    "rand_like(input=)": lambda n: torch.rand_like(input=torch.zeros(n, 2, dtype=torch.float64)),
}


@pytest.mark.parametrize("name", list(DRAWS))
@pytest.mark.parametrize("rank", [0, 1, 2])
def test_global_batch_draws_this_ranks_rows_of_the_global_draw(name, rank):
    draw = DRAWS[name]
    torch.manual_seed(0)
    whole, not_per_example = draw(12), draw(5)
    state = torch.get_rng_state()
    torch.manual_seed(0)
    with GlobalBatch(Distributed(rank=rank, world_size=3), local_batch=4):
        part, shared = draw(4), draw(5)
    assert torch.equal(part, whole[4 * rank : 4 * rank + 4])
    assert torch.equal(shared, not_per_example)  # another leading size: drawn as is, as in one process
    assert torch.equal(torch.get_rng_state(), state)  # the stream stays in step with the 1-process run


def test_global_batch_refuses_random_ops_it_cannot_split():
    x = torch.ones(4, 3)
    with GlobalBatch(Distributed(rank=0, world_size=2), local_batch=4):
        for op in (
            lambda: F.dropout(x, 0.5),
            lambda: nn.Dropout(0.1)(x),
            lambda: torch.bernoulli(x * 0.5),
            lambda: x.clone().uniform_(),
            lambda: torch.randperm(4),
            lambda: torch.randn(4, out=x.clone()),
        ):
            with pytest.raises(RuntimeError, match="under DDP"):
                op()
        assert torch.equal(F.dropout(x, 0.0), x) and torch.equal(nn.Dropout(0.5).eval()(x), x)
        assert torch.equal(F.alpha_dropout(x, 0.5), x)  # training=False by default: draws nothing


def test_global_batch_norm_matches_batch_norm_with_double_backward(tmp_path):
    """On one rank the synced batch norm is batch norm: outputs, running statistics, gradients, and the
    gradient of a gradient penalty through it (double backward)."""
    gloo_or_skip()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
        results = []
        for synced in (False, True):
            torch.manual_seed(1)
            net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.Tanh(), nn.Flatten(), nn.Linear(20, 1))
            net = net.double()
            net[1].weight.data.uniform_(0.5, 1.5)
            net[1].bias.data.uniform_(-0.5, 0.5)
            mode = GlobalBatch(Distributed(), local_batch=6) if synced else contextlib.nullcontext()
            inputs = x.clone().requires_grad_(True)
            with mode:
                out = net(inputs).squeeze(1)
                (grad,) = torch.autograd.grad(out.sum(), inputs, create_graph=True)
                loss = out.square().mean() + ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss.backward()
            results.append(
                [
                    out.detach(),
                    grad.detach(),
                    inputs.grad,
                    net[1].running_mean.clone(),
                    net[1].running_var.clone(),
                    net[1].num_batches_tracked.clone(),
                ]
                + [p.grad for p in net.parameters()]
            )
        for expected, got in zip(*results):
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    finally:
        dist.destroy_process_group()
