"""The model contract: what the trainer, the evaluator and the CLI may ask of a model, by capability.

A model is one subclass of a capability base below plus one line in ``genzoo.registry``. The rest of
genzoo reads only what is declared here (class attributes and hooks with defaults); it never probes a
model for methods. ``tests/test_contract.py`` checks every registered model against this contract.

Every model (``GenerativeModel``):
    loss(x, y=None)   -> scalar   the objective, mean nats per example (a bound for latent models); PURE:
                                  calling it changes no state
    sample(n, y=None) -> LongTensor (n, C, H, W), values in [0, levels)

Capabilities and what the evaluator reports for each (``likelihood``):
    ExplicitDensityModel   "exact"           log_prob(x, y) -> Tensor[n], exact, nats
    AutoregressiveModel    "exact"           + forward(x) -> per-subpixel parameters; completion;
                                             sample(n, temperature=T)
    LatentVariableModel    "bound"           elbo(x, y), log_prob_estimate(x, y, num_samples)
    EnergyModel            "partition"       log_prob(x) = -F(x) - log Z with log Z from
                                             compute_partition() (exact or AIS), labelled as such
    AdversarialModel       "none"            players: parameter_groups() and their own train_step
    ReconstructionModel    "reconstruction"  reconstruction_log_prob(x): no likelihood of x

Hooks with defaults, called by the trainer (``genzoo.train``) and the evaluator (``genzoo.evaluate``):
    init_from_data(train)            once, at the start of a fresh run (e.g. an RBM's biases)
    training_loss(x, y, step)        the objective of update ``step`` (0-based); default ``loss(x, y)``.
                                     Schedules (KL warm-up, MADE's mask rotation, a DBN's layer
                                     schedule) are functions of ``step``, so a resumed run is exact
    parameter_groups()               {name: parameters}: one optimizer each (default {"model": all})
    optimizer_options(name)          that optimizer's own lr/betas/... (default: the run's)
    train_step(batch, step, optimizers, loss_fn)
                                     one update; default: backward of ``loss_fn`` and one optimizer step
    prepare_for_evaluation()         before the final scores (e.g. compute log Z); default nothing
    partition_details()              how the normalizer behind a reported NLL was obtained, or None
    fit_data(images, labels, method, generator, iterations)
                                     fitting without gradient steps, for ``fit_methods``

``x`` is always a LongTensor of integer images (N, C, H, W) in ``[0, levels)``; ``y`` optional class
labels (N,) for class-conditional models. A model decides how it looks at the integers (scaled floats,
one-hot, embeddings); the evaluator always scores the integers. Models never read files or print.

Every model records its constructor arguments in ``model.config`` (defaults included) however it
was built, so ``genzoo.load`` rebuilds it from a checkpoint (``config["name"]`` is its registry name).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from genzoo.nn.distributions import discrete_log_prob, discrete_sample, tempered

LIKELIHOODS = ("exact", "bound", "partition", "reconstruction", "none")
_CHECK_VALUES = [True]  # check_images checks the value range (two reductions and a host sync per batch)


@contextlib.contextmanager
def checked_inputs():
    """Within the block, ``check_images`` skips the value-range check (shapes and dtypes are still
    checked): for the trainer, which checks every image of its dataset once before training."""
    before = _CHECK_VALUES[0]
    _CHECK_VALUES[0] = False
    try:
        yield
    finally:
        _CHECK_VALUES[0] = before


LABEL_USES = ("never", "optional", "always")


class Batch(NamedTuple):
    """One training batch on the model's device: integer images and optional labels."""

    x: torch.Tensor
    y: torch.Tensor | None = None


LossFn = Callable[[torch.Tensor, "torch.Tensor | None", int], torch.Tensor]


def _json_value(value: Any) -> Any:
    """Constructor arguments as JSON gives them back (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def _recording_init(init):
    """Wrap a model's ``__init__`` so that the outermost call records its arguments in ``self.config``."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        depth = self.__dict__.get("_init_depth", 0)
        self.__dict__["_init_depth"] = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            self.__dict__["_init_depth"] = depth
        if depth == 0:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = {k: _json_value(v) for k, v in bound.arguments.items() if k != "self"}
            if "image_shape" in arguments:
                arguments["image_shape"] = [int(s) for s in arguments["image_shape"]]
            self.config = {"name": registered_name(type(self)), **arguments}

    wrapper.__signature__ = signature
    return wrapper


def registered_name(cls: type) -> str | None:
    """The registry name of a model class (its plain entry, without preset options), or None."""
    from genzoo.registry import name_of_class

    return name_of_class(cls)


SMALL_IMAGE = 16 * 16  # images of at most this many pixels get the small defaults of ``sized_default``


def sized_default(value, image_shape, small, large):
    """``value`` when given, else the default that fits the image: ``small`` for images of at most 16x16
    pixels (the bundled 8x8 digits train at interactive speed), ``large`` otherwise (MNIST, CIFAR)."""
    if value is not None:
        return value
    _, h, w = image_shape
    return small if h * w <= SMALL_IMAGE else large


class GenerativeModel(nn.Module, abc.ABC):
    """Base class: the image geometry, input validation at the boundary, declarations and hooks."""

    # -- declarations: what the trainer, the evaluator and the CLI read ---------------------------------
    likelihood: ClassVar[str] = "none"
    """What the evaluator reports: one of ``LIKELIHOODS`` (see the module docstring)."""
    selects_by_validation: ClassVar[bool] = True
    """Whether a lower validation score means a better model, so that the trainer keeps the best weights
    (early stopping). False where the score is no measure of fit (a discriminator's loss, a CD surrogate)."""
    label_use: ClassVar[str] = "never"
    """Class labels: "never", "optional" (``num_classes`` option; ``--conditional``) or "always"."""
    gradient_sync: ClassVar[str] = "ddp"
    """Under multi-process training: "ddp" (the trainer wraps ``training_loss`` in DistributedDataParallel)
    or "per-optimizer" (each optimizer's gradients are averaged just before its step: models whose
    ``train_step`` makes several backward passes)."""
    fit_methods: ClassVar[tuple[str, ...]] = ()
    """Ways to fit without gradient steps (``fit_data``): "closed-form", "em"."""
    default_fit: ClassVar[str | None] = None
    """The fit used when none is asked for (None: gradient training)."""
    can_complete: ClassVar[bool] = False
    """``sample(n, x=images, known=mask)`` completes partly known images."""
    can_temper: ClassVar[bool] = False
    """``sample(n, temperature=T)`` draws each subpixel from its conditional raised to 1/T."""
    has_codes: ClassVar[bool] = False
    """``code(x)`` and ``decode_images(z)`` give a latent space (``genzoo.tasks.latent``)."""

    config: dict[str, Any]  # the constructor's arguments (recorded by the constructor itself)
    conditional: bool = False  # True when this instance uses class labels y
    condition_shape: tuple[int, int, int] | None = None  # an image condition y's shape (super-resolution,
    # colorization: ``genzoo.nn.conditioning``); None when the model takes none

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_init(cls.__dict__["__init__"])
        assert cls.likelihood in LIKELIHOODS and cls.label_use in LABEL_USES, cls
        assert cls.gradient_sync in ("ddp", "per-optimizer"), cls

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
        shape = ", ".join(map(str, self.image_shape))
        expected = f"integer images of shape (N, {shape}) with values in [0, {self.levels})"
        if not isinstance(x, torch.Tensor) or x.dtype.is_floating_point or x.dtype == torch.bool:
            dtype = x.dtype if isinstance(x, torch.Tensor) else None
            raise ValueError(f"expected {expected}, got {type(x).__name__} of dtype {dtype}")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected {expected}, got shape {tuple(x.shape)}")
        if _CHECK_VALUES[0] and x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.levels):
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

    # -- every model ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The objective, mean nats per example; changes no state."""

    @abc.abstractmethod
    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` integer images (n, C, H, W) in [0, levels)."""

    # -- hooks with defaults ---------------------------------------------------------------------------
    def init_from_data(self, train) -> None:
        """Called once by the trainer at the start of a fresh run with the train split (``ImageSplit``)."""

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        """The objective of training update ``step`` (0-based): ``loss`` unless the model has a schedule.
        May advance training-only state that is a function of the steps taken (e.g. persistent chains)."""
        return self.loss(x, y)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters of each optimizer, by name; one optimizer ("model") by default."""
        return {"model": [p for p in self.parameters() if p.requires_grad]}

    def optimizer_options(self, name: str) -> dict[str, Any]:
        """Options of optimizer ``name`` that replace the run's (lr, betas, momentum, weight_decay, optimizer)."""
        return {}

    def train_step(
        self, batch: Batch, step: int, optimizers: Mapping[str, torch.optim.Optimizer], loss_fn: LossFn
    ) -> dict[str, torch.Tensor]:
        """One training update; returns the scalars to log ("loss" is the run's loss).

        ``loss_fn(x, y, step)`` is ``training_loss`` as the trainer runs it (through DistributedDataParallel
        and ``torch.compile`` when those are on). The trainer sets each optimizer's learning rate, and its
        step pre-hooks clip (and, for "per-optimizer" models under DDP, average) the gradients."""
        loss = loss_fn(batch.x, batch.y, step)
        optimizer = optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def prepare_for_evaluation(self, progress: bool = False) -> None:
        """Called before the final evaluation (e.g. an energy model computes log Z, with a progress bar
        when ``progress``); nothing by default."""

    def partition_details(self) -> dict | None:
        """How the normalizer behind ``log_prob`` (or a bound) was obtained, or None where none is needed."""
        return None

    def fit_data(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        method: str,
        generator: torch.Generator,
        iterations: int | None = None,
    ) -> dict:
        """Fit without gradient steps by ``method``, one of ``fit_methods``: "em" calls the model's
        ``fit_em(images, generator=..., iterations=...)`` (returning a history with "log_likelihood" per
        iteration), "closed-form" its ``fit(images, labels)``. Returns a summary dict."""
        if method not in self.fit_methods:
            name = self.config.get("name", type(self).__name__)
            ways = ", ".join(self.fit_methods) or "gradient steps only"
            raise ValueError(f"{name} cannot be fitted by {method!r} (it fits by: {ways})")
        if method == "closed-form":
            self.fit(images, labels)
            return {"method": method}
        history = self.fit_em(images, generator=generator, **({} if iterations is None else {"iterations": iterations}))
        return {
            "method": method,
            "iterations": len(history["log_likelihood"]) - 1,
            "train_log_likelihood": history["log_likelihood"][-1],
        }


class ExplicitDensityModel(GenerativeModel):
    """A model with an exact, normalized ``log_prob``; its loss is the mean negative log-likelihood."""

    likelihood = "exact"

    @abc.abstractmethod
    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) (or log p(x | y)) of each image, nats."""

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -self.log_prob(x, y).mean()


class AutoregressiveModel(ExplicitDensityModel):
    """p(x) = prod_i p(x_{o(i)} | x_{o(<i)}) over the C*H*W subpixels in an ordering o.

    A subclass implements ``forward(x, y) -> params`` giving the conditional distribution's parameters for
    every subpixel at once (Bernoulli logits (N, C, H, W) for 2 levels, else softmax logits
    (N, C, H, W, levels)); the parameters of subpixel o(i) may depend only on x at o(<i). The default
    ordering is raster order with the channels innermost (R, G, B of a pixel, then the next pixel).
    """

    can_complete = True
    can_temper = True

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
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Draw ``n`` images by ancestral sampling; the cached fast path when the model has one.

        With ``x`` and a boolean ``known`` mask of the same shape, the known subpixels are kept and the
        others are drawn from their conditionals given everything before them in the ordering
        (completion: exact conditioning when the known subpixels come first, e.g. a kept top half).
        ``naive=True`` forces one full forward pass per subpixel. ``temperature`` T != 1 draws every
        subpixel from its conditional raised to 1/T and renormalized (T < 1: sharper, less diverse): the
        images then follow a tempered distribution, not the model's (``genzoo.nn.distributions.tempered``).
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
        with torch.no_grad(), tempered(temperature):
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
        elbo_terms(x, y=None)                 -> (reconstruction, kl) per image, or None
    ``loss`` is the negative ELBO (or the model's own training bound, e.g. IWAE's), mean nats/example.
    """

    likelihood = "bound"

    @abc.abstractmethod
    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Evidence lower bound on log p(x) of each image, nats."""

    @abc.abstractmethod
    def log_prob_estimate(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_samples: int = 1000
    ) -> torch.Tensor:
        """k-sample importance-sampling estimate of log p(x) of each image, nats."""

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(E_q log p(x|z), KL(q || p)) per image, nats, where the bound splits so; None otherwise."""
        return None

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -self.elbo(x, y).mean()


class EnergyModel(GenerativeModel):
    """p(x) = exp(-F(x)) / Z with an intractable Z: trained on a contrastive surrogate, scored with log Z
    from ``compute_partition()`` (exact enumeration when small, else an AIS estimate with its error).

        free_energy(x) -> Tensor[n], nats;  log_prob(x) = -F(x) - log Z, once log Z is known
    """

    likelihood = "partition"
    selects_by_validation = False  # validated on the contrastive surrogate, no measure of fit

    @abc.abstractmethod
    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of each image, nats."""

    @abc.abstractmethod
    def compute_partition(self, **options) -> dict:
        """Compute and store log Z for the present weights; returns ``partition_details()``."""

    @property
    @abc.abstractmethod
    def has_partition(self) -> bool:
        """Whether a log Z for the present weights is stored (so that ``log_prob`` can run)."""

    @abc.abstractmethod
    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) = -F(x) - log Z with the stored log Z, nats."""

    def prepare_for_evaluation(self, progress: bool = False) -> None:
        if not self.has_partition:
            self.compute_partition(progress=progress)


class AdversarialModel(GenerativeModel):
    """Players trained against each other (GANs): ``parameter_groups()`` names them, ``train_step`` makes
    their alternating updates. No likelihood: judged by sample-quality metrics."""

    likelihood = "none"
    selects_by_validation = False  # the validation score is a discriminator's loss
    gradient_sync = "per-optimizer"

    @abc.abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """{player name: its parameters}, disjoint, covering every trainable parameter."""

    @abc.abstractmethod
    def train_step(
        self, batch: Batch, step: int, optimizers: Mapping[str, torch.optim.Optimizer], loss_fn: LossFn
    ) -> dict[str, torch.Tensor]:
        """The players' updates of step ``step``; ``loss_fn`` is not used."""


class ReconstructionModel(GenerativeModel):
    """A deterministic auto-encoder: ``reconstruction_log_prob(x)`` = log p(x | z = e(x)), no likelihood."""

    likelihood = "reconstruction"
    has_codes = True

    @abc.abstractmethod
    def reconstruction_log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | e(x)) of each image, nats: a reconstruction score, not a likelihood of x."""
