"""Checkpoints are safetensors + JSON only: pickles are refused, corruption is a clear error."""

import pickle
import random

import pytest
import torch

import genzoo
from genzoo.checkpoint import CheckpointError, flatten_state, load_tensors, save_model, save_tensors, unflatten_state


class Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle code ran')",))


@pytest.mark.parametrize("payload", [pickle.dumps(Boom()), pickle.dumps({"w": [1.0]}, protocol=2)])
def test_pickles_are_refused_without_running_them(tmp_path, payload):
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="never unpickles"):
        genzoo.load(path)


def test_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="never unpickles"):
        genzoo.load(path)


def test_truncated_and_foreign_files_are_clear_errors(tmp_path):
    model = genzoo.create("independent", image_shape=(1, 2, 2), levels=3)
    save_model(tmp_path / "model.safetensors", model)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-7])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        genzoo.load(tmp_path / "cut.safetensors")
    save_tensors(tmp_path / "other.safetensors", {"a": torch.ones(1)}, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a genzoo model file"):
        genzoo.load(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        genzoo.load(tmp_path / "missing")


def test_nested_state_round_trips_exactly(tmp_path):
    state = {
        "step": 3,
        "rng": torch.get_rng_state(),
        "python": random.getstate(),
        "groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": [0, 1]}],
        "none": None,
    }
    tensors = {}
    skeleton = flatten_state(state, "s", tensors)
    save_tensors(tmp_path / "c.safetensors", tensors, {"state": skeleton})
    loaded, meta = load_tensors(tmp_path / "c.safetensors")
    restored = unflatten_state(meta["state"], loaded)
    assert restored["python"] == state["python"] and isinstance(restored["python"], tuple)
    assert torch.equal(restored["rng"], state["rng"])
    assert restored["groups"] == [{"lr": 0.1, "betas": (0.9, 0.99), "params": [0, 1]}]
