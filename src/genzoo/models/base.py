"""The model interface, by capability.

Every model (``GenerativeModel``):
    loss(x, y=None)   -> scalar   training objective, mean nats per example (a bound for latent models)
    sample(n, y=None) -> LongTensor (n, C, H, W), values in [0, levels)

Explicit-density models (``ExplicitDensityModel``) also give
    log_prob(x, y=None) -> Tensor[n]   exact log-likelihood of each image, in nats

``x`` is always a LongTensor of integer images (N, C, H, W) in ``[0, levels)``; ``y`` optional class
labels (N,) for class-conditional models. A model decides how it looks at the integers (scaled floats,
one-hot, embeddings); the evaluator always scores the integers. Models never read files or print.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from genzoo.nn.distributions import discrete_log_prob, discrete_sample


class GenerativeModel(nn.Module):
    """Base class: stores the image geometry and validates inputs at the boundary."""

    config: dict[str, Any]  # set by genzoo.create: everything needed to rebuild the architecture
    conditional: bool = False  # True when the model uses class labels y

    def __init__(self, image_shape, levels: int, num_classes: int | None = None):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.levels = int(levels)
        self.num_classes = num_classes
        self.config = {}

    @property
    def num_dims(self) -> int:
        """Number of subpixels C*H*W: the 'dim' of bits/dim."""
        return math.prod(self.image_shape)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def check_images(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is an integer batch (N, C, H, W) in [0, levels)."""
        expected = (
            f"integer images of shape (N, {', '.join(map(str, self.image_shape))}) with values in [0, {self.levels})"
        )
        if not isinstance(x, torch.Tensor) or x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"expected {expected}, got {type(x).__name__} of dtype {getattr(x, 'dtype', None)}")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected {expected}, got shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.levels):
            raise ValueError(f"expected {expected}, got values in [{int(x.min())}, {int(x.max())}]")

    def check_labels(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Validate class labels: required by conditional models, ignored by the others."""
        if not self.conditional:
            return None
        if y is None:
            raise ValueError(
                f"model {self.config.get('name', type(self).__name__)} is class-conditional: pass labels y"
            )
        y = torch.as_tensor(y, device=self.device).long().reshape(-1)
        if y.numel() == 1 and n > 1:
            y = y.expand(n)
        if y.numel() != n or int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise ValueError(f"labels must be {n} integers in [0, {self.num_classes})")
        return y

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class ExplicitDensityModel(GenerativeModel):
    """A model with an exact, normalized ``log_prob``; its loss is the mean negative log-likelihood."""

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -self.log_prob(x, y).mean()


class AutoregressiveModel(ExplicitDensityModel):
    """p(x) = prod_i p(x_{o(i)} | x_{o(<i)}) over the C*H*W subpixels in an ordering o.

    A subclass implements ``forward(x, y) -> params`` giving the conditional distribution's parameters for
    every subpixel at once (Bernoulli logits (N, C, H, W) for 2 levels, else softmax logits
    (N, C, H, W, levels)); the parameters of subpixel o(i) may depend only on x at o(<i). The default
    ordering is raster order with the channels innermost (R, G, B of a pixel, then the next pixel).
    """

    def ordering(self) -> torch.Tensor:
        """Flat indices into (C, H, W) in generation order."""
        c, h, w = self.image_shape
        return torch.arange(c * h * w).reshape(c, h * w).t().reshape(-1)

    def pixel_log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of every subpixel given its parameters, shape (N, C, H, W), nats."""
        return discrete_log_prob(params, x, self.levels)

    def pixel_sample(
        self, params: torch.Tensor, index: tuple[int, int, int], x: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Draw subpixel ``index`` = (c, h, w) of every image given the full parameter tensor."""
        c, h, w = index
        return discrete_sample(params[:, c, h, w], self.levels, generator)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        return self.pixel_log_prob(self(x, y), x).flatten(1).sum(1)

    def sample(
        self,
        n: int,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        x: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        naive: bool = False,
    ) -> torch.Tensor:
        """Draw ``n`` images by ancestral sampling; the cached fast path when the model has one.

        With ``x`` and a boolean ``known`` mask of the same shape, the known subpixels are kept and the
        others are drawn from their conditionals given everything before them in the ordering
        (completion: exact conditioning when the known subpixels come first, e.g. a kept top half).
        ``naive=True`` forces one full forward pass per subpixel.
        """
        y = self.check_labels(y, n)
        if x is None:
            x = torch.zeros((n, *self.image_shape), dtype=torch.long, device=self.device)
            known = torch.zeros_like(x, dtype=torch.bool)
        else:
            self.check_images(x)
            if x.shape[0] != n:
                raise ValueError(f"x holds {x.shape[0]} images but n={n}")
            x = x.clone().to(self.device)
            known = torch.as_tensor(known, dtype=torch.bool, device=self.device).expand_as(x)
        with torch.no_grad():
            if not naive and self.has_cached_sampling:
                return self.sample_cached(x, known, y, generator)
            return self.sample_naive(x, known, y, generator)

    @property
    def has_cached_sampling(self) -> bool:
        return type(self).sample_cached is not AutoregressiveModel.sample_cached

    def sample_cached(self, x, known, y, generator):
        """Fast sampling that reuses activations (O(one subpixel's work) per step); optional."""
        raise NotImplementedError

    def sample_naive(self, x: torch.Tensor, known: torch.Tensor, y, generator) -> torch.Tensor:
        """One full forward pass per subpixel, in ``ordering()``; fills ``x`` where not ``known``."""
        _, h_, w_ = self.image_shape
        for flat in self.ordering().tolist():
            index = (slice(None), flat // (h_ * w_), (flat // w_) % h_, flat % w_)
            keep = known[index]
            if bool(keep.all()):
                continue
            drawn = self.pixel_sample(self(x, y), index[1:], x, generator)
            x[index] = torch.where(keep, x[index], drawn)
        return x


class LatentVariableModel(GenerativeModel):
    """p(x) = ∫ p(z) p(x|z) dz, intractable: a bound to train on and an estimate to report.

        elbo(x, y=None)                       -> Tensor[n]  evidence lower bound on log p(x), nats
        log_prob_estimate(x, y=None, num_samples=k) -> Tensor[n]  k-sample importance-sampling estimate
                                                     of log p(x), nats (a stochastic lower bound that
                                                     rises with k towards log p(x))
    ``loss`` is the negative ELBO (or the model's own training bound, e.g. IWAE's), mean nats/example.
    """

    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def log_prob_estimate(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1000
    ) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -self.elbo(x, y).mean()
