"""The model contract (genzoo.models.base), checked over the whole registry and every recipe.

Every name of ``genzoo list`` is created, trained 2 steps through the one trainer, evaluated by the
likelihood kind it declares, sampled, saved, loaded, and gives the same log-likelihoods and samples
after loading; its ``loss`` changes no state; its declarations are consistent with its capabilities.
A new model that breaks any of this fails here without anyone reading the trainer. Every recipe
(``genzoo.recipes``) builds its model with its options and trains 2 steps with its training config.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import genzoo
from genzoo.data.base import ImageDataset, ImageSplit
from genzoo.evaluate import evaluate_model
from genzoo.models.base import (
    LIKELIHOODS,
    AdversarialModel,
    EnergyModel,
    ExplicitDensityModel,
    GenerativeModel,
    LatentVariableModel,
    ReconstructionModel,
)
from genzoo.recipes import RECIPES
from genzoo.registry import MODELS, model_class
from genzoo.train import TrainConfig, train
from genzoo.train_config import make_config
from genzoo.workflow import build_model

# small options for each model on 1x4x4 images (models not listed take their defaults)
SMALL = {
    "nade": {"hidden": 8},
    "made": {"hidden": [16], "num_masks": 2},
    "pixelcnn": {"channels": 8, "num_blocks": 1},
    "pixelcnn++": {"channels": 8, "num_resnet": 1, "num_resolutions": 2, "num_mixtures": 2},
    "gated-pixelcnn": {"channels": 8, "num_layers": 2, "kernel_size": 3},
    "row-lstm": {"hidden": 4, "num_layers": 2},
    "diagonal-bilstm": {"hidden": 4, "num_layers": 2},
    "pixelsnail": {"channels": 4, "num_blocks": 1, "num_resnet": 1, "key_channels": 4, "value_channels": 4},
    "rbm": {"hidden": 6},
    "dbn": {"hidden": [6, 4], "steps_per_layer": 1, "bound_samples": 2},
    "vae": {"hidden": [16], "latent": 2},
    "iwae": {"hidden": [16], "latent": 2},
    "autoencoder": {"hidden": [16], "latent": 2},
    "dcgan": {"channels": 4, "latent": 4},
    "wgan-gp": {"channels": 4, "latent": 4, "n_critic": 1},
    "cgan": {"channels": 4, "latent": 4},
    "bernoulli-mixture": {"components": 3},
    "hmm": {"states": 3},
}
SHAPE, LEVELS = (1, 4, 4), 3
CAPABILITY = {
    "exact": ExplicitDensityModel,
    "bound": LatentVariableModel,
    "partition": EnergyModel,
    "none": AdversarialModel,
    "reconstruction": ReconstructionModel,
}


def dataset(shape=SHAPE, levels=LEVELS, n=48, classes=3) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    split = lambda k: ImageSplit(
        torch.randint(0, levels, (k, *shape), generator=g).to(torch.uint8), torch.arange(k) % classes
    )
    return ImageDataset(
        name="random", levels=levels, train=split(n), valid=split(16), test=split(16), num_classes=classes
    )


def two_steps(**overrides) -> TrainConfig:
    values = dict(
        batch_size=8, max_steps=2, eval_every=2, log_every=1, checkpoint_every=2, progress=False, device="cpu"
    )
    return dataclasses.replace(TrainConfig(**values), **overrides)


def labels_for(model, n):
    return torch.arange(n) % model.num_classes if model.conditional else None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declarations_match_capabilities(name):
    cls = model_class(name)
    assert issubclass(cls, GenerativeModel) and cls.likelihood in LIKELIHOODS
    assert issubclass(cls, CAPABILITY[cls.likelihood]) or (name == "dbn" and cls.likelihood == "bound")
    assert set(cls.fit_methods) <= {"em", "closed-form"} and (
        cls.default_fit is None or cls.default_fit in cls.fit_methods
    )
    assert not (cls.label_use == "never" and MODELS[name].conditional)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_evaluates_samples_saves_and_loads(tmp_path, name):
    data = dataset()
    torch.manual_seed(0)
    model = build_model(name, data, SMALL.get(name, {}))
    assert model.config["name"] == name
    if model.default_fit is not None:  # fitted without gradient steps, as `genzoo train` does
        x, y = data.train.full_batch()
        model.fit_data(x, y, model.default_fit, torch.Generator().manual_seed(0), iterations=2)
        genzoo.checkpoint.save_model(tmp_path / "model.safetensors", model, extra={"data": {"name": "random"}})
    else:
        result = train(model, data, tmp_path, two_steps(ema_decay=0.5))
        assert result["status"] == "finished" and result["step"] == 2
    loaded = genzoo.load(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    loaded.prepare_for_evaluation()
    result = evaluate_model(loaded, data.test, num_samples=3, batch_size=8)
    expected_kind = {"exact": {"exact"}, "partition": {"exact", "estimate"}, "bound": {"bound"},
                     "none": {"samples-only"}, "reconstruction": {"reconstruction"}}[model.likelihood]  # fmt: skip
    assert result["kind"] in expected_kind and result.get("n", 16) == 16
    samples = loaded.sample(4, labels_for(loaded, 4), generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, *SHAPE) and samples.dtype == torch.long
    assert 0 <= int(samples.min()) and int(samples.max()) < LEVELS
    again = genzoo.load(tmp_path)
    again.prepare_for_evaluation()
    same = again.sample(4, labels_for(again, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, same)
    if loaded.likelihood in ("exact", "partition"):
        x, y = data.test.full_batch()
        assert torch.equal(loaded.log_prob(x, labels_for(loaded, len(x))), again.log_prob(x, labels_for(again, len(x))))


@pytest.mark.parametrize("name", sorted(n for n in MODELS if model_class(n).default_fit is None))
def test_every_gradient_trained_model_trains_under_bf16_autocast(tmp_path, name):
    """``--amp bf16`` (TrainConfig.amp): two steps under bf16 autocast, finite losses, float32 weights."""
    data = dataset()
    torch.manual_seed(0)
    model = build_model(name, data, SMALL.get(name, {}))
    result = train(model, data, tmp_path, two_steps(amp="bf16"))
    assert result["status"] == "finished" and result["step"] == 2
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert all(b.dtype != torch.bfloat16 for b in model.buffers())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_is_pure(name):
    data = dataset()
    torch.manual_seed(0)
    model = build_model(name, data, SMALL.get(name, {})).train()
    x, y = data.train.batch(torch.arange(8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        torch.manual_seed(1)
        model.loss(x, y if model.conditional else None)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, equal_nan=True, msg=f"{name}.loss changed {key}")


def test_a_model_built_with_its_class_and_trained_loads_back(tmp_path):
    """diffusers-style: the constructor records its arguments, however the model was built."""
    from genzoo.models.autoregressive.made import MADE

    model = MADE(SHAPE, LEVELS, hidden=[8], num_masks=2)
    assert model.config == {"name": "made", "image_shape": list(SHAPE), "levels": LEVELS, "hidden": [8],
                            "num_masks": 2, "natural_ordering": False, "seed": 0, "direct": False, "inputs": "auto",
                            "output_rank": None}  # fmt: skip
    train(model, dataset(), tmp_path, two_steps())
    loaded = genzoo.load(tmp_path)
    x, _ = dataset().test.full_batch()
    assert loaded.config == model.config and torch.equal(loaded.log_prob(x), model.eval().log_prob(x))


RECIPE_CASES = [(model, name) for model, recipes in sorted(RECIPES.items()) for name in sorted(recipes)]


@pytest.mark.parametrize("model_name,recipe_name", RECIPE_CASES)
def test_every_recipe_builds_and_trains(tmp_path, model_name, recipe_name):
    recipe = RECIPES[model_name][recipe_name]
    assert recipe.paper and recipe.figure and recipe.description
    config = make_config({}, recipe.train)
    config.validate()
    data = dataset(shape=(1, 28, 28), levels=2, n=16)
    torch.manual_seed(0)
    model = build_model(model_name, data, recipe.options)
    if model.default_fit is not None:
        x, y = data.train.full_batch()
        model.fit_data(x, y, model.default_fit, torch.Generator().manual_seed(0), iterations=1)
        return
    quick = dataclasses.replace(config, batch_size=8, max_steps=2, max_epochs=None, eval_every=2, eval_max_images=8,
                                progress=False, device="cpu", patience=None)  # fmt: skip
    assert train(model, data, tmp_path, quick)["step"] == 2
