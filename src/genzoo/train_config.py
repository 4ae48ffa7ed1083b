"""The training configuration: one dataclass, the single source of its defaults, help texts and flags.

``TrainConfig`` is what a run stores in every checkpoint. Its fields carry their command-line flag,
parser and help in their metadata, and ``add_train_arguments`` generates the ``genzoo train`` flags
(and the benchmarks' flags) from them, so the parser, the Python API and the checkpoints cannot drift.
Flags default to "not given", so that ``given_options`` tells what a user asked for: those values
override a recipe's (``genzoo.recipes``) and, on resume, are checked against the stored config.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from genzoo.errors import UsageError

SCHEDULES = ("constant", "cosine", "exponential")
OPTIMIZERS = ("adam", "adamw", "sgd")


# -- parsers: every number is checked when the command line is read, before any work -----------------


def _number(kind: type, text: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _checked(kind: type, ok: Callable[[float], bool], requirement: str) -> Callable[[str], float]:
    """A parser of ``kind`` numbers that refuses values failing ``ok`` with "must be <requirement>"."""

    def parse(text: str):
        value = _number(kind, text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


positive_int = _checked(int, lambda v: v > 0, "a positive integer")
count = _checked(int, lambda v: v >= 0, ">= 0")
positive_float = _checked(float, lambda v: v > 0, "a positive number")
nonnegative_float = _checked(float, lambda v: v >= 0, ">= 0")
fraction = _checked(float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")  # a number in [0, 1)


def clip_norm(text: str) -> float | None:
    """A positive gradient-norm bound, or 0 for no clipping (None)."""
    value = nonnegative_float(text)
    return None if value == 0 else value


def option(default: Any, help: str, *flags: str, parse: Callable | None = None, **argparse_options) -> Any:
    """A TrainConfig field with its command-line flags (default: --field-name) and help."""
    meta = {"help": help, "flags": flags, "parse": parse, "argparse": argparse_options}
    if isinstance(default, (list, tuple, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored as JSON in every checkpoint."""

    batch_size: int = option(64, "images per step, global: split evenly over DDP processes", parse=positive_int)
    lr: float = option(1e-3, "peak learning rate", parse=positive_float)
    optimizer: str = option("adam", "adam, adamw (decoupled weight decay) or sgd (with --momentum)", choices=OPTIMIZERS)
    momentum: float = option(0.0, "SGD heavy-ball momentum (e.g. 0.9 for RBMs); sgd only", parse=fraction)
    weight_decay: float = option(0.0, "L2 penalty (adam, sgd) or decoupled decay (adamw)", parse=nonnegative_float)
    betas: tuple = option((0.9, 0.999), "Adam's moment decay rates", parse=fraction, nargs=2, metavar=("B1", "B2"))
    schedule: str = option(
        "constant", "learning-rate schedule: constant, cosine (to 0 at --decay-steps) or exponential", choices=SCHEDULES
    )
    warmup_steps: int = option(0, "linear warm-up steps from lr/N up to lr", "--warmup", parse=count)
    decay_steps: int | None = option(
        None, "cosine horizon in steps (default: the step budget)", parse=positive_int, metavar="N"
    )
    lr_decay: float = option(0.9999, "exponential schedule: lr multiplied by this after every step", parse=fraction)
    grad_clip: float | None = option(1.0, "clip the gradient's global L2 norm to this; 0: no clipping", parse=clip_norm)
    ema_decay: float | None = option(
        None, "evaluate and save an exponential moving average of the weights, e.g. 0.999", "--ema", parse=fraction
    )
    max_steps: int | None = option(None, "stop after this many optimizer steps", "--steps", parse=positive_int)
    max_epochs: float | None = option(
        None, "stop after this many passes over the train split", "--epochs", parse=positive_float
    )
    max_time: float | None = option(
        None, "stop after this many seconds of training (accumulated across resumes)", "--time", parse=positive_float
    )
    eval_every: int = option(1000, "validate every N steps (and at the end)", parse=positive_int)
    eval_batch_size: int = option(256, "images per batch when validating and evaluating", parse=positive_int)
    eval_split: str = option("valid", "the split validated on during training", choices=("valid", "test", "train"))
    eval_max_images: int | None = option(None, "validate on the first N images only, for speed", parse=positive_int)
    patience: int | None = option(
        None, "early stopping: stop after this many validations in a row without a new best", parse=positive_int
    )
    keep_best: bool = option(
        True, "do not keep the best-validation weights (model_best.safetensors); score the last", "--no-keep-best"
    )
    checkpoint_every: int = option(500, "checkpoint every N steps (and at the end or on a signal)", parse=positive_int)
    log_every: int = option(50, "log every N steps (a line's loss is the mean since the last)", parse=positive_int)
    seed: int = option(0, "seed of the weights, the data order and every random draw", parse=count)
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:N")
    amp: str = option("auto", "bf16 autocast: auto (on CUDA only), bf16 or off", choices=("auto", "bf16", "off"))
    compile: bool = option(False, "torch.compile the loss")
    progress: bool = option(True, "no progress bar", "-q", "--quiet")

    def validate(self) -> None:
        """Raise ValueError for a config that cannot run (the command line already checks each value)."""
        budgets = (self.max_steps, self.max_epochs, self.max_time)
        checks = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (_finite_positive(self.lr) and self.warmup_steps >= 0, "lr must be finite and > 0, warmup_steps >= 0"),
            (any(b is not None for b in budgets), "set a training budget: max_steps, max_epochs or max_time"),
            (all(b is None or _finite_positive(b) for b in budgets), "training budgets must be finite and > 0"),
            (
                min(self.eval_every, self.checkpoint_every, self.log_every, self.eval_batch_size) >= 1,
                "eval_every, checkpoint_every, log_every and eval_batch_size must be >= 1",
            ),
            (self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.ema_decay is None or 0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1) or None"),
            (self.grad_clip is None or _finite_positive(self.grad_clip), "grad_clip must be finite and > 0, or None"),
            (0.0 <= self.momentum < 1.0, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.momentum == 0.0 or self.optimizer == "sgd", "momentum applies to the sgd optimizer only"),
            (0.0 < self.lr_decay <= 1.0, f"lr_decay must be in (0, 1], got {self.lr_decay}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per TrainConfig field (help and default from the field), each defaulting to "not given"."""
    group = parser.add_argument_group("training (TrainConfig)")
    for name, f in FIELDS.items():
        meta = f.metadata
        flags = meta["flags"] or ("--" + name.replace("_", "-"),)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs = dict(meta["argparse"], dest=name, default=argparse.SUPPRESS)
        if isinstance(default, bool):  # the flag switches the default off or on
            kwargs.update(action="store_const", const=not default)
            text = meta["help"]
        else:
            kwargs.update(type=meta["parse"] or str)
            text = f"{meta['help']} (default: {'none' if default is None else default})"
        group.add_argument(*flags, help=text.replace("%", "%%"), **kwargs)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line."""
    given = {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}
    if "betas" in given:
        given["betas"] = tuple(given["betas"])
    return given


def make_config(given: dict[str, Any], recipe: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig with the defaults, then a recipe's values, then the options given, in that order."""
    values = {**(recipe or {}), **given}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UsageError(f"unknown training options: {', '.join(unknown)}")
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return TrainConfig(**values)


# Fields a resumed run may change freely (how long, where and how fast it runs); every other field is part
# of the run and must match the checkpoint unless overridden; FIXED ones can never change mid-run.
SESSION_FIELDS = frozenset(
    {"max_steps", "max_epochs", "max_time", "patience", "progress", "device", "compile", "amp", "eval_batch_size",
     "checkpoint_every"}
)  # fmt: skip
FIXED_FIELDS = frozenset({"optimizer", "batch_size", "seed"})


def resume_changes(stored: TrainConfig, asked: TrainConfig, overrides=()) -> dict[str, tuple[Any, Any]]:
    """The run-defining fields where ``asked`` differs from the checkpoint's ``stored`` config, as
    {field: (stored, asked)}, all of them named in ``overrides``; UsageError listing every other difference
    (and any change of a FIXED field, or turning the EMA on or off, which no override allows)."""
    changes = {}
    for name in FIELDS:
        old, new = getattr(stored, name), getattr(asked, name)
        if name not in SESSION_FIELDS and old != new:
            changes[name] = (old, new)
    never = {k for k in changes if k in FIXED_FIELDS or (k == "ema_decay" and None in changes[k])}
    refused = never | (set(changes) - set(overrides))
    if refused:
        flag = lambda k: FIELDS[k].metadata["flags"][-1] if FIELDS[k].metadata["flags"] else "--" + k.replace("_", "-")
        listed = "; ".join(f"{flag(k)} {changes[k][1]!r} (stored: {changes[k][0]!r})" for k in sorted(refused))
        hint = (
            "resume with the stored values"
            + ("" if never else ", or change them with --override KEY=VALUE")
            + "; or start over with --restart"
        )
        raise UsageError(f"this run was trained with other options: {listed}; {hint}")
    return changes


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` of a TrainConfig field (``lr=0.01``, ``grad-clip=0``), parsed like its flag."""
    if "=" not in text:
        raise UsageError(f"--override {text!r} must look like KEY=VALUE, e.g. lr=0.0005")
    key, value = text.split("=", 1)
    key = key.strip().lstrip("-").replace("-", "_")
    aliases = {
        f.metadata["flags"][-1].lstrip("-").replace("-", "_"): name for name, f in FIELDS.items() if f.metadata["flags"]
    }
    key = aliases.get(key, key)
    if key not in FIELDS:
        raise UsageError(f"--override {text!r}: unknown training option {key!r}")
    parse = FIELDS[key].metadata["parse"] or str
    try:
        if isinstance(getattr(TrainConfig(), key), bool):
            parsed: Any = {"true": True, "false": False}[value.strip().lower()]
        elif key == "betas":
            parsed = tuple(parse(v) for v in value.split(","))
        else:
            parsed = parse(value)
    except (argparse.ArgumentTypeError, KeyError) as err:
        raise UsageError(f"--override {text!r}: {err or 'expected true or false'}") from None
    return key, parsed


def config_from_json(data: dict[str, Any]) -> TrainConfig:
    """The TrainConfig stored in a checkpoint (fields it lacks take today's defaults)."""
    return make_config({k: v for k, v in data.items() if k in FIELDS})
