"""Model registry: name -> class, one line per model.

Classes are imported lazily so that ``genzoo list`` and ``genzoo --help`` stay fast and a model's
module is only imported when that model is used.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

# name: (module under genzoo.models, class name, one-line description)
MODELS: dict[str, tuple[str, str, str]] = {
    "independent": ("independent", "IndependentPixels", "independent subpixels: the no-dependency baseline"),
    "fvsbn": (
        "autoregressive.fvsbn",
        "FVSBN",
        "fully-visible sigmoid belief net (logistic regressions in raster order)",
    ),
    "nade": ("autoregressive.nade", "NADE", "neural autoregressive density estimator (shared hidden layer)"),
    "made": ("autoregressive.made", "MADE", "masked autoencoder; random orderings, mask ensembles as true mixtures"),
    "pixelcnn": (
        "autoregressive.pixelcnn",
        "PixelCNN",
        "masked convolutions A/B with RGB channel masking, residual blocks",
    ),
    "pixelcnn++": (
        "autoregressive.pixelcnn_pp",
        "PixelCNNPlusPlus",
        "shifted-conv streams over 3 resolutions, discretized logistic mixtures",
    ),
    "row-lstm": (
        "autoregressive.pixelrnn",
        "RowLSTM",
        "PixelRNN with Row LSTM layers: row-parallel, triangular context, RGB masks",
    ),
    "diagonal-bilstm": (
        "autoregressive.pixelrnn",
        "DiagonalBiLSTM",
        "PixelRNN with Diagonal BiLSTM layers: skewed diagonals, full context, RGB masks",
    ),
    "gated-pixelcnn": (
        "autoregressive.gated_pixelcnn",
        "GatedPixelCNN",
        "vertical+horizontal gated stacks, no blind spot, RGB masks, optional classes",
    ),
    "pixelsnail": (
        "autoregressive.pixelsnail",
        "PixelSNAIL",
        "gated masked-conv residuals + causal self-attention over all earlier pixels, RGB masks",
    ),
    "rbm": (
        "energy.rbm",
        "RBM",
        "restricted Boltzmann machine: CD-k/PCD training, exact or AIS log Z; Bernoulli or softmax visibles",
    ),
    "dbn": (
        "energy.dbn",
        "DBN",
        "deep belief net: greedily trained stacked RBMs, top RBM + sigmoid layers; variational bound and IS estimate",
    ),
    "vae": (
        "latent.vae",
        "VAE",
        "variational autoencoder: Gaussian latents, ELBO, k-sample IS estimate; "
        "options: IAF/planar flow posterior, classes, PixelCNN decoder",
    ),
    "iwae": ("latent.vae", "IWAE", "importance-weighted autoencoder: the VAE trained on the k-sample bound (k=5)"),
    "autoencoder": (
        "latent.autoencoder",
        "AutoEncoder",
        "deterministic auto-encoder: reconstruction NLL, no likelihood; samples from Gaussian-fitted codes",
    ),
    "dcgan": (
        "adversarial.gan",
        "DCGAN",
        "DCGAN (transposed-conv G, strided-conv D); minimax or non-saturating GAN loss; samples only",
    ),
    "wgan-gp": (
        "adversarial.gan",
        "WGANGP",
        "DCGAN networks as a Wasserstein GAN with gradient penalty (n_critic=5); samples only",
    ),
    "cgan": (
        "adversarial.gan",
        "ConditionalGAN",
        "class-conditional DCGAN: label embedding in G, projection D; samples only",
    ),
    "bernoulli-mixture": (
        "classic.mixture",
        "DiscreteMixture",
        "mixture of K products of categoricals (Bernoulli if binary); exact likelihood, EM or gradient",
    ),
    "naive-bayes": (
        "classic.naive_bayes",
        "NaiveBayes",
        "class-conditional independent subpixels fitted by smoothed counts; log p(x|y), p(y|x)",
    ),
    "hmm": (
        "classic.hmm",
        "RowHMM",
        "hidden Markov model over image rows (Bernoulli/categorical rows); exact forward likelihood, EM or gradient",
    ),
}


class UnknownModelError(ValueError):
    pass


def model_class(name: str) -> type:
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    module, cls, _ = MODELS[name]
    return getattr(importlib.import_module(f"genzoo.models.{module}"), cls)


def create(name: str, image_shape, levels: int, **options: Any):
    """Build model ``name`` for images of ``image_shape`` (C, H, W) with ``levels`` values per subpixel.

    Every constructor argument, defaults included, is recorded in ``model.config`` so that
    ``create(**model.config)`` rebuilds the same architecture (this is what checkpoints store).
    """
    cls = model_class(name)
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
    if int(levels) < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, image_shape=image_shape, levels=int(levels), **options)
    except TypeError as err:
        allowed = [p for p in signature.parameters if p not in ("self", "image_shape", "levels")]
        raise ValueError(f"bad options for model {name!r}: {err}; its options are: {', '.join(allowed)}") from None
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop("self")
    model = cls(**arguments)
    arguments["image_shape"] = list(image_shape)
    model.config = {"name": name, **arguments}
    return model


def describe() -> list[tuple[str, str]]:
    """(name, description) of every registered model, sorted by name."""
    return [(name, MODELS[name][2]) for name in sorted(MODELS)]
