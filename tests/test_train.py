"""The trainer: it learns, it saves what genzoo.load reads, and it resumes bit for bit.

Each test can fail: a resume that forgets a random state, an optimizer moment, the EMA or the data
position changes a loss in the last digit; a NaN that gets saved makes the checkpoint unloadable;
a DDP step that differs from the 1-process global-batch step shows in the weights.
"""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genzoo
from ddp_worker import TinyDensity, tiny_dataset, tiny_model
from ddp_worker import main as worker_main
from genzoo.checkpoint import load_tensors
from genzoo.models.base import GenerativeModel
from genzoo.models.independent import IndependentPixels
from genzoo.optim import learning_rate
from genzoo.train import CHECKPOINT_FILE, NonFiniteLossError, TrainConfig, train

WORKER = Path(__file__).with_name("ddp_worker.py")


def config(**overrides) -> TrainConfig:
    base = dict(
        batch_size=8,
        lr=0.05,
        log_every=1,
        eval_every=10,
        checkpoint_every=10,
        eval_max_images=8,
        progress=False,
        device="cpu",
    )
    return TrainConfig(**{**base, **overrides})


def log_records(run_dir) -> list[dict]:
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def saved(run_dir, prefix: str) -> dict:
    tensors, _ = load_tensors(Path(run_dir) / CHECKPOINT_FILE)
    return {k: v for k, v in tensors.items() if k.startswith(prefix)}


def independent(shape=(1, 4, 4), levels=3, cls=IndependentPixels, **attrs):
    """An ``independent`` model (so genzoo.load can rebuild it), optionally of a test subclass."""
    reference = genzoo.create("independent", image_shape=shape, levels=levels)
    model = cls(shape, levels)
    model.config = reference.config
    for name, value in attrs.items():
        setattr(model, name, value)
    return model


class SignalAt(TinyDensity):
    """Sends itself ``sig`` during the training loss of call number ``at`` (1-based)."""

    at, sig, calls = None, signal.SIGINT, 0

    def loss(self, x, y=None):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.sig)
        return super().loss(x, y)


class NaNAt(IndependentPixels):
    """Returns a NaN loss at training call number ``at``."""

    at, calls = None, 0

    def loss(self, x, y=None):
        self.calls += 1
        loss = super().loss(x, y)
        return loss * math.nan if self.calls == self.at else loss


def test_training_learns_logs_and_saves_a_loadable_model(tmp_path):
    data = tiny_dataset(levels=3)
    model = independent(levels=3)
    result = train(model, data, tmp_path, config(max_steps=60, ema_decay=0.9, log_every=5))
    assert result["status"] == "finished" and result["step"] == 60 and result["epoch"] == 5.0
    assert result["valid"]["n"] == 8 and result["images_per_sec"] > 0
    losses = [r["loss"] for r in log_records(tmp_path)]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.5
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    x = data.test.images.long()
    ema = IndependentPixels((1, 4, 4), 3)
    ema.load_state_dict({k[4:]: v for k, v in saved(tmp_path, "ema.").items()})
    loaded = genzoo.load(tmp_path)
    assert loaded.checkpoint_info["step"] == 60 and loaded.checkpoint_info["train"]["ema_decay"] == 0.9
    assert torch.equal(loaded.log_prob(x), ema.eval().log_prob(x))
    assert torch.equal(genzoo.load(tmp_path, ema=False).log_prob(x), model.eval().log_prob(x))
    assert not torch.equal(model.logits, ema.logits)


def resume_config(max_steps: int) -> TrainConfig:
    return config(
        max_steps=max_steps,
        optimizer="adamw",
        weight_decay=0.01,
        schedule="cosine",
        warmup_steps=3,
        decay_steps=40,
        ema_decay=0.95,
    )


def train_resumable(run_dir, max_steps, model=None, seed=0):
    """Fresh runs start from the seed-0 weights; resumed ones get other weights, which must be overwritten."""
    model = model if model is not None else tiny_model(levels=2, dropout=0.3, seed=seed)
    return train(model, tiny_dataset(levels=2, binarized=True), run_dir, resume_config(max_steps))


def test_resume_is_exact(tmp_path):
    """Budget-stopped and signal-stopped runs, resumed, repeat the uninterrupted run bit for bit."""
    train_resumable(tmp_path / "a", 40)
    assert train_resumable(tmp_path / "b", 17)["step"] == 17
    torch.manual_seed(0)
    interrupted = SignalAt((1, 4, 4), 2, dropout=0.3)  # the same initial weights as tiny_model(seed=0)
    interrupted.at = 23
    assert train_resumable(tmp_path / "c", 40, interrupted)["status"] == "interrupted"
    torch.rand(5)  # disturb the global random state between the two calls
    for run in ("b", "c"):
        assert train_resumable(tmp_path / run, 40, seed=99)["status"] == "finished"
    reference = log_records(tmp_path / "a")
    assert [r["step"] for r in reference] == list(range(1, 41))
    for run in ("b", "c"):
        records = log_records(tmp_path / run)
        assert [(r["step"], r["loss"], r["lr"]) for r in records] == [
            (r["step"], r["loss"], r["lr"]) for r in reference
        ]
        for prefix in ("model.", "ema.", "optimizer."):
            expected, got = saved(tmp_path / "a", prefix), saved(tmp_path / run, prefix)
            assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_and_restores_handlers(tmp_path, sig):
    def mine(signum, frame):
        raise AssertionError("the trainer's handler should be active")

    previous = {s: signal.signal(s, mine) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        model = SignalAt((1, 4, 4), 3)
        model.at, model.sig = 5, sig
        result = train(model, tiny_dataset(), tmp_path, config(max_steps=100))
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert result["status"] == "interrupted" and result["step"] == 5
    _, meta = load_tensors(tmp_path / CHECKPOINT_FILE)
    assert meta["state"]["step"] == 5
    assert result["signal"] == signal.Signals(sig).name
    log = (tmp_path / "log.jsonl").read_text() if (tmp_path / "log.jsonl").exists() else ""
    assert "interrupted" not in log  # a signal adds no line to the record


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path):
    model = independent(cls=NaNAt, at=13)
    with pytest.raises(NonFiniteLossError, match=r"step 13\b.*step 10\)") as info:
        train(model, tiny_dataset(), tmp_path, config(max_steps=40, checkpoint_every=5, log_every=50))
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, FloatingPointError)
    tensors, meta = load_tensors(tmp_path / CHECKPOINT_FILE)
    weights = [t for k, t in tensors.items() if k.startswith(("model.", "optimizer.")) and t.is_floating_point()]
    assert meta["state"]["step"] == 10 and all(torch.isfinite(t).all() for t in weights)
    assert torch.isfinite(genzoo.load(tmp_path).log_prob(tiny_dataset().test.images.long())).all()
    resumed = train(independent(), tiny_dataset(), tmp_path, config(max_steps=12, checkpoint_every=5, log_every=50))
    assert resumed["step"] == 12  # resumes from 10


def test_mismatched_checkpoint_is_refused(tmp_path):
    train(independent(), tiny_dataset(), tmp_path, config(max_steps=2))
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    small = tiny_dataset(shape=(1, 3, 3))
    with pytest.raises(ValueError, match=r"trained on images \[1, 4, 4\].*has \[1, 3, 3\]"):
        train(independent(shape=(1, 3, 3)), small, tmp_path, config(max_steps=4))
    with pytest.raises(ValueError, match="different model"):
        train(tiny_model(), tiny_dataset(), tmp_path, config(max_steps=4))
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before


def test_budgets_and_schedules(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        TrainConfig().validate()
    assert train(independent(), tiny_dataset(), tmp_path / "e", config(max_epochs=0.5))["step"] == 6
    assert train(independent(), tiny_dataset(), tmp_path / "t", config(max_time=1e-9))["step"] == 1
    c = config(max_steps=10, schedule="cosine", warmup_steps=2)
    lrs = [learning_rate(c, s, 10) for s in range(10)]
    assert lrs[0] == 0.025 and lrs[1] == lrs[2] == 0.05 and lrs[-1] < 0.003
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    e = config(max_steps=10, schedule="exponential", lr_decay=0.5, warmup_steps=1)
    assert [learning_rate(e, s, None) for s in range(4)] == [0.05, 0.05, 0.025, 0.0125]


class LossOnly(GenerativeModel):
    """A model with a loss but no log_prob (like a GAN): validated on its mean loss."""

    def __init__(self, image_shape, levels):
        super().__init__(image_shape, levels)
        self.inner = IndependentPixels(image_shape, levels)

    def loss(self, x, y=None):
        return -self.inner.log_prob(x).mean()

    def sample(self, n, y=None, *, generator=None):
        return self.inner.sample(n, generator=generator)


def test_loss_only_models_and_restart(tmp_path):
    result = train(LossOnly((1, 4, 4), 3), tiny_dataset(), tmp_path, config(max_steps=12, eval_every=6))
    valid = [r["valid"] for r in log_records(tmp_path) if "valid" in r]
    assert len(valid) == 2 and set(valid[0]) == {"n", "loss"} and result["best_valid"] == min(v["loss"] for v in valid)
    result = train(LossOnly((1, 4, 4), 3), tiny_dataset(), tmp_path, config(max_steps=3), resume=False)
    assert result["step"] == 3 and [r["step"] for r in log_records(tmp_path)] == [1, 2, 3]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "unfused adam"])
def test_gradient_clipping_is_clip_grad_norm(tmp_path, optimizer, monkeypatch):
    """The trainer clips inside the fused Adam step (its grad_scale) and by clip_grad_norm_ otherwise (SGD;
    an Adam whose restored param_groups say unfused, as in checkpoints written before the fused step):
    each gives the weights of clip_grad_norm_ followed by the unfused optimizer, and logs the unclipped norm."""
    if optimizer == "unfused adam":
        import genzoo.train_setup

        def restored_unfused(params, cfg):  # built fused; the loaded state's param_groups say otherwise
            made = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
            made.load_state_dict({**made.state_dict(), "param_groups": [
                {**group, "fused": None} for group in made.state_dict()["param_groups"]]})  # fmt: skip
            return made

        monkeypatch.setattr(genzoo.train_setup, "make_optimizer", restored_unfused)
        optimizer = "adam"
    data, clip, steps = tiny_dataset(), 0.05, 4
    momentum = 0.9 if optimizer == "sgd" else 0.0
    cfg = config(lr=0.01, optimizer=optimizer, grad_clip=clip, max_steps=steps, weight_decay=0.1, momentum=momentum)
    model = tiny_model()
    train(model, data, tmp_path, cfg)
    reference = tiny_model()
    options = {"sgd": dict(momentum=0.9), "adam": {}, "adamw": {}}[optimizer]
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    opt = cls(reference.parameters(), lr=0.01, weight_decay=0.1, **options)
    from genzoo.train_batches import epoch_order, rank_batch

    order, norms = epoch_order(len(data.train), cfg.seed, 0), []
    torch.manual_seed(cfg.seed)
    for step in range(steps):
        batch = rank_batch(data.train, order, step, step, cfg.batch_size, cfg.seed, 0, 1)
        opt.zero_grad()
        reference.loss(batch.x).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(reference.parameters(), clip)))
        opt.step()
    assert min(norms) > clip  # every step was clipped
    for got, want in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert [r["grad_norm"] for r in log_records(tmp_path)] == pytest.approx(norms, rel=1e-5)


def test_ddp_matches_one_process(tmp_path):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
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
        "--steps",
        "12",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert worker_main([str(tmp_path / "one"), "--steps", "12"]) == 0
    one, ddp = log_records(tmp_path / "one"), log_records(tmp_path / "ddp")
    assert [r["step"] for r in ddp] == list(range(1, 13))  # one writer: rank 0
    for a, b in zip(one, ddp):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-6)
    for prefix in ("model.", "ema."):
        expected, got = saved(tmp_path / "one", prefix), saved(tmp_path / "ddp", prefix)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)
    _, meta = load_tensors(tmp_path / "ddp" / CHECKPOINT_FILE)
    assert meta["world_size"] == 2 and len(meta["rng"]) == 2
