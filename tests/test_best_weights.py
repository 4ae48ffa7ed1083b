"""Early stopping as papers report it: the weights with the best validation score are kept beside the last.

The validation scores are scripted (``genzoo.train_loop.validation_metrics`` replaced) so that the best step is known
and differs from the last one; each test can fail: a file written without an improvement, weights of
another step, a resumed run that replaces a better file with a worse one, a stale file that is scored.
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import genzoo
import genzoo.train_checkpoint as train_checkpoint
import genzoo.train_loop as train_module
from ddp_worker import tiny_dataset
from genzoo.checkpoint import BEST_FILE, MODEL_FILE, CheckpointError, load_tensors, read_metadata
from genzoo.cli import main
from genzoo.data.base import ImageSplit
from genzoo.models.independent import IndependentPixels
from genzoo.train import TrainConfig, train


def config(**overrides) -> TrainConfig:
    base = dict(
        batch_size=8,
        lr=0.05,
        log_every=5,
        eval_every=10,
        checkpoint_every=10,
        eval_max_images=8,
        progress=False,
        device="cpu",
    )
    return TrainConfig(**{**base, **overrides})


def independent(**attrs) -> IndependentPixels:
    model = genzoo.create("independent", image_shape=(1, 4, 4), levels=3)
    for name, value in attrs.items():
        setattr(model, name, value)
    return model


class Scripted:
    """Stands in for ``genzoo.train_loop.validation_metrics``: returns the next scripted NLL and remembers the weights
    it was shown (the EMA weights when EMA is on). A score of None raises, like a crash mid-run."""

    def __init__(self, monkeypatch, scores):
        self.scores, self.seen = list(scores), []
        monkeypatch.setattr(train_module, "validation_metrics", self)

    def __call__(self, model, split, batch_size, seed=0):
        score = self.scores.pop(0)
        if score is None:
            raise RuntimeError("crash during validation")
        self.seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"n": len(split), "nll_nats": score}


@pytest.fixture
def best_writes(monkeypatch):
    """The steps at which model_best.safetensors is written."""
    steps = []
    original = train_checkpoint.save_model

    def spy(path, model, ema_state=None, extra=None):
        if Path(path).name == BEST_FILE:
            steps.append(extra["step"])
        return original(path, model, ema_state, extra)

    monkeypatch.setattr(train_checkpoint, "save_model", spy)
    return steps


def weights(path, prefix: str) -> dict:
    tensors, _ = load_tensors(path)
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def test_best_file_is_written_on_improvement_only_with_the_validated_weights(tmp_path, monkeypatch, best_writes):
    scripted = Scripted(monkeypatch, [5.0, 3.0, 4.0, 2.5, 6.0])  # steps 10 .. 50: best at step 40
    result = train(independent(), tiny_dataset(), tmp_path / "run", config(max_steps=50, ema_decay=0.9))
    assert best_writes == [10, 20, 40]
    assert result["best_valid"] == 2.5 and result["best_step"] == 40
    meta = read_metadata(tmp_path / "run" / BEST_FILE)
    assert meta["best"]["step"] == 40 and meta["best"]["metric"] == "nll_nats" and meta["best"]["score"] == 2.5
    assert meta["step"] == 40 and meta["has_ema"]
    ema = weights(tmp_path / "run" / BEST_FILE, "ema.")
    assert ema.keys() == scripted.seen[3].keys() and all(torch.equal(ema[k], scripted.seen[3][k]) for k in ema)
    # the raw weights are those at step 40: a run stopped there by its budget has them as its last
    Scripted(monkeypatch, [5.0, 3.0, 4.0, 2.5])
    train(independent(), tiny_dataset(), tmp_path / "forty", config(max_steps=40, ema_decay=0.9))
    raw, reference = weights(tmp_path / "run" / BEST_FILE, "model."), weights(tmp_path / "forty" / MODEL_FILE, "model.")
    assert all(torch.equal(raw[k], reference[k]) for k in reference)
    # genzoo.load: last by default, best on request
    x = tiny_dataset().test.images.long()
    best, last = genzoo.load(tmp_path / "run", weights="best"), genzoo.load(tmp_path / "run", weights="last")
    assert best.checkpoint_info["weights"] == "best (step 40, valid nll_nats 2.5)"
    assert last.checkpoint_info["weights"] == "last (step 50)" and last.checkpoint_info["step"] == 50
    assert torch.equal(best.logits, ema["logits"]) and not torch.equal(best.log_prob(x), last.log_prob(x))
    assert torch.equal(genzoo.load(tmp_path / "run", weights="best", ema=False).logits, raw["logits"])
    assert genzoo.load(tmp_path / "run", weights="auto").checkpoint_info["weights"].startswith("best (step 40")


def test_real_validation_keeps_the_lowest_score(tmp_path):
    result = train(independent(), tiny_dataset(), tmp_path, config(max_steps=30, eval_every=5))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    scores = {r["step"]: r["valid"]["nll_nats"] for r in records if "valid" in r}
    best_step = min(scores, key=lambda s: (scores[s], s))
    meta = read_metadata(tmp_path / BEST_FILE)
    assert meta["best"]["score"] == result["best_valid"] == min(scores.values())
    assert meta["best"]["step"] == best_step == result["best_step"]


def test_resume_never_replaces_a_better_file(tmp_path, monkeypatch, best_writes):
    data, run = tiny_dataset(), tmp_path / "run"
    # crash at the validation of step 40: the best file (step 30, 2.0) is newer than the checkpoint (step 20)
    Scripted(monkeypatch, [5.0, 3.0, 2.0, None])
    with pytest.raises(RuntimeError, match="crash"):
        train(independent(), data, run, config(max_steps=50, checkpoint_every=20))
    assert best_writes == [10, 20, 30]
    _, checkpoint = load_tensors(run / train_checkpoint.CHECKPOINT_FILE)
    assert checkpoint["state"]["step"] == 20 and checkpoint["state"]["best_valid"] == 3.0
    # the resumed run scores step 30 differently (2.5): better than the checkpoint's 3.0, worse than the file
    del best_writes[:]
    Scripted(monkeypatch, [2.5, 2.2])
    result = train(independent(), data, run, config(max_steps=40, checkpoint_every=20))
    assert best_writes == [] and result["best_valid"] == 2.0 and result["best_step"] == 30
    assert read_metadata(run / BEST_FILE)["best"] == {
        "step": 30,
        "metric": "nll_nats",
        "score": 2.0,
        "split": "valid",
        "max_images": 8,
    }
    Scripted(monkeypatch, [1.5])
    result = train(independent(), data, run, config(max_steps=50, checkpoint_every=20))
    assert best_writes == [50] and result["best_valid"] == 1.5
    assert read_metadata(run / BEST_FILE)["best"]["step"] == 50
    # starting over deletes the old run's best file; with no validation split none is written
    no_valid = dataclasses.replace(data, valid=ImageSplit(data.valid.images[:0]))
    result = train(independent(), no_valid, run, config(max_steps=20), resume=False)
    assert result["best_valid"] is None and result["best_step"] is None and not (run / BEST_FILE).exists()
    model = genzoo.load(run, weights="auto")
    assert model.checkpoint_info["weights"] == "last (step 20, no best-validation weights saved)"
    with pytest.raises(CheckpointError, match="no best-validation weights"):
        genzoo.load(run, weights="best")
    with pytest.raises(ValueError, match="weights must be one of"):
        genzoo.load(run, weights="first")
    with pytest.raises(CheckpointError, match="does not hold best-validation weights"):
        genzoo.load(run / MODEL_FILE, weights="best")


def test_models_not_ranked_by_validation_keep_no_best_file(tmp_path):
    assert not genzoo.create("dcgan", image_shape=(1, 8, 8), levels=2).selects_by_validation
    assert not genzoo.create("rbm", image_shape=(1, 4, 4), levels=2, hidden=4).selects_by_validation
    assert independent().selects_by_validation and not independent(selects_by_validation=False).selects_by_validation
    result = train(independent(selects_by_validation=False), tiny_dataset(), tmp_path / "a", config(max_steps=20))
    assert result["best_valid"] is not None and not (tmp_path / "a" / BEST_FILE).exists()
    train(independent(), tiny_dataset(), tmp_path / "b", config(max_steps=20, keep_best=False))
    assert not (tmp_path / "b" / BEST_FILE).exists()


def run(*args):
    return main([str(a) for a in args])


def test_train_and_eval_score_the_best_weights_by_default(tmp_path, monkeypatch, capsys):
    from genzoo.workflow import train_and_evaluate

    Scripted(monkeypatch, [40.0, 30.0, 35.0])  # steps 10, 20, 30: best at 20
    results = train_and_evaluate("independent", "digits", tmp_path / "run", config(max_steps=30, lr=0.2), num_samples=4)
    label = "best (step 20, valid nll_nats 30)"
    assert results["weights"] == results["test"]["weights"] == label and results["best_step"] == 20
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test"]["weights"] == label
    assert run("eval", tmp_path / "run", "--json", "--quiet") == 0
    best = json.loads(capsys.readouterr().out)
    assert best["weights"] == label and best["nll_nats"] == results["test"]["nll_nats"]
    assert run("eval", tmp_path / "run", "--json", "--quiet", "--weights", "last") == 0
    last = json.loads(capsys.readouterr().out)
    assert last["weights"] == "last (step 30)" and last["nll_nats"] != best["nll_nats"]
    assert run("eval", tmp_path / "run", "--quiet") == 0
    assert f"digits test, {label} weights: NLL" in capsys.readouterr().out
    assert run("sample", tmp_path / "run", "-n", 4, "-o", tmp_path / "s.png", "--weights", "last") == 0
    assert "of the last (step 30) weights" in capsys.readouterr().out


def test_cli_run_without_best_weights_falls_back_to_last(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        run(
            "train",
            "independent",
            "--data",
            "digits",
            "--steps",
            10,
            "--eval-every",
            5,
            "--run-dir",
            run_dir,
            "--quiet",
            "--samples",
            0,
            "--no-keep-best",
        )
        == 0
    )
    assert "weights: last (step 10)" in capsys.readouterr().out and not (run_dir / BEST_FILE).exists()
    assert run("eval", run_dir, "--json", "--quiet") == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "last (step 10, no best-validation weights saved)"
    assert run("eval", run_dir, "--quiet", "--weights", "best") == 4
    assert "no best-validation weights" in capsys.readouterr().err
