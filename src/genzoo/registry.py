"""Model registry: name -> class (and preset options), one line per model.

A new model is one file under ``genzoo/models`` plus one line here. An entry may also fix options of
its class: ``wgan-gp`` is the DCGAN class with ``objective="wgan-gp"``, ``iwae`` the VAE trained on the
importance-weighted bound. The papers' training recipes are in ``genzoo.recipes``.

Classes are imported lazily so that ``genzoo list`` and ``genzoo --help`` stay fast and a model's
module is only imported when that model is used.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from genzoo.errors import UsageError


@dataclass(frozen=True)
class Entry:
    module: str  # under genzoo.models
    cls: str  # class name in that module
    description: str  # one line for ``genzoo list``
    options: dict[str, Any] = field(default_factory=dict)  # options this entry fixes (a preset of the class)
    conditional: bool = False  # always built with the dataset's class count


MODELS: dict[str, Entry] = {
    "independent": Entry("independent", "IndependentPixels", "independent subpixels: the no-dependency baseline"),
    "fvsbn": Entry("autoregressive.fvsbn", "FVSBN", "fully-visible sigmoid belief net (logistic regressions in order)"),
    "nade": Entry("autoregressive.nade", "NADE", "neural autoregressive density estimator (shared hidden layer)"),
    "made": Entry("autoregressive.made", "MADE", "masked autoencoder; random orderings, mask ensembles as mixtures"),
    "pixelcnn": Entry("autoregressive.pixelcnn", "PixelCNN", "masked convolutions A/B with RGB masks, residual blocks"),
    "pixelcnn++": Entry(
        "autoregressive.pixelcnn_pp", "PixelCNNPlusPlus", "shifted convs over 3 resolutions, logistic mixtures"
    ),
    "row-lstm": Entry("autoregressive.pixelrnn", "RowLSTM", "PixelRNN, Row LSTM layers: row-parallel, RGB masks"),
    "diagonal-bilstm": Entry(
        "autoregressive.pixelrnn", "DiagonalBiLSTM", "PixelRNN, Diagonal BiLSTM layers: full context, RGB masks"
    ),
    "gated-pixelcnn": Entry(
        "autoregressive.gated_pixelcnn", "GatedPixelCNN", "vertical+horizontal gated stacks, no blind spot, classes"
    ),
    "pixelsnail": Entry(
        "autoregressive.pixelsnail", "PixelSNAIL", "gated masked-conv residuals + causal self-attention, RGB masks"
    ),
    "rbm": Entry("energy.rbm", "RBM", "restricted Boltzmann machine: CD-k/PCD, exact or AIS log Z"),
    "dbn": Entry("energy.dbn", "DBN", "deep belief net: greedily stacked RBMs; variational bound and IS estimate"),
    "vae": Entry("latent.vae", "VAE", "variational autoencoder: ELBO, k-sample IS estimate; flows, classes, PixelCNN"),
    "iwae": Entry(
        "latent.vae",
        "VAE",
        "importance-weighted autoencoder: the VAE trained on the k-sample bound (k=5)",
        {"objective": "iwae", "num_samples": 5},
    ),
    "autoencoder": Entry("latent.autoencoder", "AutoEncoder", "deterministic auto-encoder: features, no likelihood"),
    "dcgan": Entry("adversarial.gan", "DCGAN", "DCGAN; minimax or non-saturating GAN loss; samples only"),
    "wgan-gp": Entry(
        "adversarial.gan",
        "DCGAN",
        "DCGAN networks as a WGAN with gradient penalty (n_critic=5)",
        {"objective": "wgan-gp"},
    ),
    "cgan": Entry(
        "adversarial.gan", "DCGAN", "class-conditional DCGAN: label embedding in G, projection D", conditional=True
    ),
    "bernoulli-mixture": Entry(
        "classic.mixture", "DiscreteMixture", "mixture of K products of categoricals (Bernoulli if binary)"
    ),
    "naive-bayes": Entry("classic.naive_bayes", "NaiveBayes", "class-conditional independent subpixels; p(y|x)"),
    "hmm": Entry("classic.hmm", "RowHMM", "hidden Markov model over image rows; exact forward likelihood"),
}


class UnknownModelError(UsageError):
    pass


def entry(name: str) -> Entry:
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def model_class(name: str) -> type:
    e = entry(name)
    return getattr(importlib.import_module(f"genzoo.models.{e.module}"), e.cls)


def name_of_class(cls: type) -> str | None:
    """The name of the plain entry (no fixed options) of a model class; None for an unregistered class."""
    module = cls.__module__.removeprefix("genzoo.models.")
    for name, e in MODELS.items():
        if e.module == module and e.cls == cls.__qualname__ and not e.options and not e.conditional:
            return name
    return None


def options_of(name: str) -> list[inspect.Parameter]:
    """The constructor options of model ``name`` (beyond image_shape and levels), with their defaults."""
    signature = inspect.signature(model_class(name).__init__)
    return [p for n, p in signature.parameters.items() if n not in ("self", "image_shape", "levels")]


def _matches(value: Any, hint: Any) -> bool:
    """Whether an option value (as JSON gives it) fits a constructor annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (Any, inspect.Parameter.empty):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # an annotation this check does not know: the constructor validates


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return str(hint).replace("typing.", "") if typing.get_args(hint) else getattr(hint, "__name__", str(hint))


def check_option_types(name: str, options: dict[str, Any]) -> None:
    """UsageError for an option whose value does not fit the annotation of model ``name``'s constructor."""
    init = inspect.unwrap(model_class(name).__init__)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # noqa: BLE001 (an annotation that cannot be evaluated: leave it to the constructor)
        return
    for key, value in options.items():
        if key in hints and not _matches(value, hints[key]):
            raise UsageError(f"option {key}={value!r} of model {name!r} must be {_type_name(hints[key])}")


def create(name: str, image_shape, levels: int, **options: Any):
    """Build model ``name`` for images of ``image_shape`` (C, H, W) with ``levels`` values per subpixel.

    Options not given take the entry's preset values, then the constructor's defaults. The model records
    every constructor argument in ``model.config`` (``config["name"]`` = ``name``), so that
    ``create(**model.config)`` rebuilds the same architecture (this is what checkpoints store).
    """
    e, cls = entry(name), model_class(name)
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise UsageError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
    if int(levels) < 2:
        raise UsageError(f"levels must be >= 2, got {levels}")
    options = {**e.options, **options}
    signature = inspect.signature(cls.__init__)
    try:
        signature.bind(None, image_shape=image_shape, levels=int(levels), **options)
    except TypeError as err:
        allowed = ", ".join(p.name for p in options_of(name))
        raise UsageError(f"bad options for model {name!r}: {err}; its options are: {allowed}") from None
    check_option_types(name, options)
    try:
        model = cls(image_shape=image_shape, levels=int(levels), **options)
    except ValueError as err:  # the constructor validates its options: a usage error
        raise UsageError(f"bad options for model {name!r}: {err}") from None
    model.config["name"] = name
    return model


def describe() -> list[tuple[str, str]]:
    """(name, description) of every registered model, sorted by name."""
    return [(name, MODELS[name].description) for name in sorted(MODELS)]
