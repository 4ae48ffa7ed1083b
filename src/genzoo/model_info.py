"""What a registered model is and how to use it, gathered from what the code declares: ``genzoo describe``.

Nothing here is written by hand per model. The options come from the constructor's signature (type and
default) and their meanings from the docstrings of the class, its ``__init__`` and its module, in any of
the forms the model files use::

    channels: width 2h of the residual stream          (a definition line; indented lines continue it)
    ``latent``: size of z; ``channels``: width of ...  (inline definitions, up to ';' or the sentence end)
    ``prior`` is the Dirichlet pseudo-count ...        (a sentence that names the option)

An option that none of them names is reported as "(undocumented)" (``undocumented_options`` lists them all:
tests/test_describe.py keeps that list from growing). The capabilities are the class's declarations
(``genzoo.models.base``), the recipes come from ``genzoo.recipes``, the measured results from the rows of
benchmarks/RESULTS.md whose model or run column names the model, and the ``genzoo train`` flags from the
command line's own parser, filtered by what the model declares.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

UNDOCUMENTED = "(undocumented)"
LIKELIHOOD_TEXT = {
    "exact": "log p(x) computed exactly: test NLL in nats and bits/dim",
    "bound": "negative ELBO (upper bound on the NLL) and a k-sample importance estimate",
    "partition": "log p(x) = -F(x) - log Z, log Z by exact enumeration (small models) or AIS (an estimate ± σ)",
    "reconstruction": "no likelihood of x: a reconstruction NLL -log p(x | e(x)) only",
    "none": "no likelihood; judged by sample-quality metrics (FD, KID, precision/recall)",
}
LABEL_TEXT = {
    "never": "never (unconditional only)",
    "optional": "optional (--conditional: the dataset's class count)",
    "always": "always (trained with the dataset's labels)",
}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


# -- option meanings from docstrings -----------------------------------------------------------------------


def _own_doc(obj) -> str:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if doc else ""


def _one_line(text: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", text).strip().rstrip(";,")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _definition_lines(doc: str, names: set[str]) -> dict[str, str]:
    """``name: meaning`` / ``a, b: meaning`` / ``a / b: meaning`` at the start of a line (after optional
    indentation or a bullet), continued by the following lines indented as deep or deeper up to a blank line
    or the next definition; a further ``name:`` after a sentence end starts another definition."""
    found: dict[str, str] = {}
    lines = doc.splitlines()
    names_list = rf"{_NAME}(?:\s*(?:,|/|and)\s*{_NAME})*"
    head = re.compile(rf"^(\s*)(?:-\s+)?({names_list}):\s+(.+)$")

    def defines(line: str) -> list[str]:
        m = head.match(line)
        keys = re.findall(_NAME, re.sub(r"\s+and\s+", ",", m.group(2))) if m else []
        return keys if keys and all(k in names for k in keys) else []

    for i, line in enumerate(lines):
        keys = defines(line)
        if not keys:
            continue
        m = head.match(line)
        indent, text = len(m.group(1)), [m.group(3)]
        for more in lines[i + 1 :]:
            if not more.strip() or len(more) - len(more.lstrip()) < indent or defines(more):
                break
            text.append(more.strip())
        joined = " ".join(text)
        parts = re.split(rf"(?<=\.)\s+(?={names_list}:\s)", joined)
        for k in keys:
            found.setdefault(k, parts[0])
        for part in parts[1:]:
            more, _, meaning = part.partition(":")
            for k in re.findall(_NAME, re.sub(r"\s+and\s+", ",", more)):
                if k in names:
                    found.setdefault(k, meaning.strip())
    return found


def _paragraphs(doc: str) -> list[str]:
    return [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]


def _clause(text: str, start: int) -> str:
    """``text`` from ``start`` up to the first ';' or sentence end outside parentheses."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        depth += (ch in "([") - (ch in ")]")
        if depth <= 0 and (ch == ";" or (ch == "." and (i + 1 == len(text) or text[i + 1] == " "))):
            return text[start:i]
    return text[start:]


def _inline_definitions(doc: str, names: set[str]) -> dict[str, str]:
    """A run of ``name`` (or ``name=value``) literals followed by a colon, up to the next ';' or sentence end;
    a short qualifier between the names and the colon (``lr``/``betas`` None: ...) is kept."""
    found: dict[str, str] = {}
    literal = rf"``({_NAME})(?:=[^`]*)?``"
    pattern = re.compile(rf"((?:{literal}(?:\s*(?:,|/|and|or)\s*)?)+)(\s+[^:;.`]{{1,16}})?:\s+")
    for paragraph in _paragraphs(doc):
        for m in pattern.finditer(paragraph):
            keys = re.findall(literal, m.group(1))
            qualifier = (m.group(3) or "").strip()
            text = _clause(paragraph, m.end())
            meaning = f"{qualifier}: {text}" if qualifier else text
            for k in keys:
                if k in names:
                    found.setdefault(k, meaning)
    return found


def _sentences_naming(doc: str, names: set[str]) -> dict[str, str]:
    """The first sentence that names ``name`` (or ``name=value``) as a literal: a description in prose. Of a
    long sentence only its clause (between semicolons) naming it, or else the docstring line naming it."""
    found: dict[str, str] = {}
    literal = rf"``({_NAME})(?:=[^`]*)?``"
    for paragraph in _paragraphs(doc):
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z`(\[-])", paragraph):
            for k in re.findall(literal, sentence):
                if k in names and k not in found:
                    clause = next(c for c in sentence.split("; ") if re.search(rf"``{k}(?:=[^`]*)?``", c))
                    if len(clause) > 220:
                        clause = next(line.strip() for line in doc.splitlines() if f"``{k}" in line)
                    found[k] = clause
    return found


def option_meanings(cls, names) -> dict[str, str]:
    """{option: one line of meaning} for the options of model class ``cls`` that its docstrings document."""
    names = set(names)
    init = inspect.unwrap(cls.__init__) if "__init__" in cls.__dict__ else None
    own = "\n\n".join(d for d in (_own_doc(cls), _own_doc(init) if init else "") if d)
    module = _own_doc(sys.modules[cls.__module__])
    found: dict[str, str] = {}
    for finder in (_definition_lines, _inline_definitions):
        for doc in (own, module):
            for k, v in finder(doc, names).items():
                found.setdefault(k, v)
    for doc in (own, module):
        for k, v in _sentences_naming(doc, names).items():
            found.setdefault(k, v)
    for k, v in list(found.items()):  # "see the module docstring": what the module docstring says
        if v.lower().startswith("see the module docstring"):
            better = {**_sentences_naming(module, {k}), **_inline_definitions(module, {k})}
            found[k] = better.get(k, v)
    return {k: _one_line(v) for k, v in found.items()}


def first_reference(cls) -> str | None:
    """The first reference of the model's module docstring ("[1] A. Author. Title. Venue year"), joined."""
    lines = _own_doc(sys.modules[cls.__module__]).splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*\[1\]\s", line):
            text = [line.strip()]
            for more in lines[i + 1 :]:
                if not more.strip() or re.match(r"^\s*\[\d+\]", more):
                    break
                text.append(more.strip())
            return " ".join(text)
    return None


# -- the model's description -------------------------------------------------------------------------------


def _type_text(parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        default = parameter.default
        return "any" if default is None or default is inspect.Parameter.empty else type(default).__name__
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _value_text(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "(required)"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def options(name: str) -> list[dict]:
    """Every constructor option of model ``name``: {name, type, default, meaning, documented, fixed}; ``fixed``
    when the registry entry sets it (e.g. ``iwae``'s objective), the default then being the entry's value."""
    from genzoo.registry import entry, model_class, options_of

    cls, fixed = model_class(name), entry(name).options
    parameters = options_of(name)
    meanings = option_meanings(cls, [p.name for p in parameters])
    out = []
    for p in parameters:
        default = fixed.get(p.name, p.default)
        out.append(
            {
                "name": p.name,
                "type": _type_text(p),
                "default": _value_text(default),
                "meaning": meanings.get(p.name, UNDOCUMENTED),
                "documented": p.name in meanings,
                "fixed": p.name in fixed,
            }
        )
    return out


def undocumented_options() -> dict[str, list[str]]:
    """{model class (module.Class): options that no docstring of its class, __init__ or module names}."""
    from genzoo.registry import MODELS, model_class

    out: dict[str, list[str]] = {}
    for name in sorted(MODELS):
        cls = model_class(name)
        missing = [o["name"] for o in options(name) if not o["documented"]]
        if missing:
            out.setdefault(f"{cls.__module__.removeprefix('genzoo.models.')}.{cls.__qualname__}", missing)
    return out


def _example_instance(name: str):
    """The model with its default options for tiny binary images (instance-level declarations), or None."""
    import torch

    from genzoo.registry import create, entry, model_class

    cls = model_class(name)
    extra = {"num_classes": 10} if cls.label_use == "always" or entry(name).conditional else {}
    try:
        with torch.random.fork_rng():
            return create(name, image_shape=(1, 8, 8), levels=2, **extra)
    except Exception:  # noqa: BLE001 (a model that cannot be built that small: leave the instance facts out)
        return None


def capabilities(name: str) -> dict[str, Any]:
    """The declarations of model ``name`` (``genzoo.models.base``), and what they mean for a user."""
    from genzoo.registry import entry, model_class

    cls, e = model_class(name), entry(name)
    instance = _example_instance(name)
    cached = instance.has_cached_sampling if cls.can_complete else None
    label_use = "always" if e.conditional else cls.label_use
    fits = list(cls.fit_methods)
    return {
        "likelihood": cls.likelihood,
        "likelihood_text": LIKELIHOOD_TEXT[cls.likelihood],
        "label_use": label_use,
        "label_text": LABEL_TEXT[label_use] + (" (this entry builds it with the classes)" if e.conditional else ""),
        "can_complete": cls.can_complete,
        "has_codes": cls.has_codes,
        "fit_methods": fits,
        "default_fit": cls.default_fit,
        "fit_text": (
            f"{', '.join(fits)} (default: {cls.default_fit or 'gradient steps'})" if fits else "gradient steps"
        ),
        "cached_sampling": cached,
        "selects_by_validation": cls.selects_by_validation,
        "optimizer_options": _optimizer_overrides(instance),
    }


def _optimizer_overrides(instance) -> dict[str, list[str]]:
    """{optimizer: TrainConfig fields the model sets itself} (e.g. a GAN's lr and betas)."""
    if instance is None:
        return {}
    out = {}
    for group in instance.parameter_groups():
        keys = sorted(instance.optimizer_options(group))
        if keys:
            out[group] = keys
    return out


def recipes(name: str) -> list[dict]:
    """The papers' recipes of model ``name`` (``genzoo train NAME --preset RECIPE``)."""
    from genzoo.recipes import RECIPES

    return [
        {
            "name": key,
            "description": r.description,
            "paper": r.paper,
            "figure": r.figure,
            "data": r.data,
            "options": r.options,
            "train": r.train,
        }  # fmt: skip
        for key, r in RECIPES.get(name, {}).items()
    ]


# -- measured results: benchmarks/RESULTS.md ---------------------------------------------------------------


def results_file() -> Path | None:
    """benchmarks/RESULTS.md of the working directory, else of the source checkout genzoo runs from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = root / "benchmarks" / "RESULTS.md"
        if path.is_file():
            return path
    return None


def _squash(text: str) -> str:
    return re.sub(r"[\s`*_\-]", "", text.lower())


def _names_model(cell: str, keys: list[str]) -> bool:
    cell = _squash(cell)
    return any(cell.startswith(k) and not cell[len(k) : len(k) + 1] == "+" for k in keys)


def measured_results(name: str, path: str | Path | None = None) -> list[dict]:
    """Rows of the markdown tables of RESULTS.md whose "model", "run" or "genzoo name" cell starts with the
    model's registry name or class name (best effort): {"section", "cells": {column: value}}."""
    from genzoo.registry import model_class

    path = Path(path) if path is not None else results_file()
    if path is None or not path.is_file():
        return []
    keys = sorted({_squash(name), _squash(model_class(name).__name__)}, key=len, reverse=True)
    if name == "bernoulli-mixture":
        keys.append("mixtureofbernoullis")
    section, header, rows = "", None, []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#"):
            section, header = line.lstrip("#").strip(), None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            continue
        by_column = dict(zip(header, cells))
        named = [v for k, v in by_column.items() if k.strip("`").lower() in ("model", "run", "genzoo name", "name")]
        if any(_names_model(v, keys) for v in named):
            rows.append({"section": section, "cells": by_column})
    return rows


# -- the genzoo train flags that apply ---------------------------------------------------------------------


def train_flags(name: str, caps: dict | None = None) -> list[dict]:
    """The ``genzoo train`` flags that apply to model ``name``, from the CLI's parser: {flags, help, group}.

    Left out: --conditional where labels are never used (or always), --fit/--em-iterations for models fitted
    by gradient steps only, --preset without recipes, --eval-k unless the model reports a bound, early
    stopping for models not selected by validation, and gradient-training flags for models fitted without
    gradient steps by default."""
    import argparse

    from genzoo.cli import build_parser
    from genzoo.registry import model_class
    from genzoo.train_config import FIELDS

    cls = model_class(name)
    caps = caps or capabilities(name)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    skip = {"model", "help"}
    if caps["label_use"] != "optional":
        skip.add("conditional")
    if not cls.fit_methods:
        skip |= {"fit", "em_iterations"}
    elif "em" not in cls.fit_methods:
        skip.add("em_iterations")
    if not recipes(name):
        skip.add("preset")
    if cls.likelihood != "bound":
        skip.add("eval_k")
    if not cls.selects_by_validation:
        skip |= {"patience", "keep_best"}
    fitted = cls.default_fit is not None
    overridden = {k for keys in caps.get("optimizer_options", {}).values() for k in keys}
    out = []
    for group in train._action_groups:
        for action in group._group_actions:
            if action.dest in skip or not action.option_strings:
                continue
            if (
                fitted
                and action.dest in FIELDS
                and action.dest not in ("seed", "device", "eval_batch_size", "progress")
            ):
                continue
            text = (action.help or "").replace("%%", "%")
            if action.dest in overridden:
                text += " [the model sets its own: see its options]"
            if action.dest == "fit" and cls.default_fit:
                text += f" [default for this model: {cls.default_fit}]"
            if action.choices and action.dest == "fit":
                text += f" [this model: {', '.join(cls.fit_methods)}]"
            out.append({"flags": ", ".join(action.option_strings), "help": text, "group": group.title})
    return out


# -- everything together -----------------------------------------------------------------------------------


def describe_model(name: str, results_path: str | Path | None = None) -> dict:
    """Everything ``genzoo describe NAME`` prints, as a dict (UnknownModelError for an unknown name)."""
    from genzoo.registry import entry, model_class

    e, cls = entry(name), model_class(name)
    caps = capabilities(name)
    return {
        "name": name,
        "description": e.description,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "paper": first_reference(cls),
        "capabilities": caps,
        "options": options(name),
        "recipes": recipes(name),
        "measured": measured_results(name, results_path),
        "train_flags": train_flags(name, caps),
    }


def _yes(flag: bool | None, yes: str, no: str = "no") -> str:
    return "n/a" if flag is None else (yes if flag else no)


def format_options(rows: list[dict], indent: str = "  ") -> list[str]:
    """One line per option: name, type, default, meaning."""
    width = max((len(o["name"]) for o in rows), default=0)
    type_width = max((len(o["type"]) for o in rows), default=0)
    lines = []
    for o in rows:
        default = o["default"] + (" (fixed by this entry)" if o["fixed"] else "")
        lines.append(f"{indent}{o['name']:<{width}}  {o['type']:<{type_width}}  default {default}  {o['meaning']}")
    return lines


def format_description(d: dict) -> str:
    """The text ``genzoo describe`` prints."""
    c = d["capabilities"]
    cached = c["cached_sampling"]
    lines = [
        f"{d['name']}: {d['description']}",
        f"  class  {d['class']}",
        f"  paper  {d['paper'] or '(no reference in the module docstring)'}",
        "",
        "capabilities:",
        f"  likelihood       {c['likelihood']}: {c['likelihood_text']}",
        f"  class labels     {c['label_text']}",
        f"  completion       {_yes(c['can_complete'], 'yes: genzoo complete RUN (sample(n, x=..., known=mask))')}",
        f"  latent codes     {_yes(c['has_codes'], 'yes: genzoo latent RUN ...')}",
        f"  fitting          {c['fit_text']}",
        "  cached sampling  "
        + (
            "n/a (not autoregressive)"
            if not c["can_complete"]
            else _yes(cached, "yes (sample --naive is the reference)")
        ),
        "  early stopping   "
        + (
            "yes: keeps the best-validation weights" if c["selects_by_validation"] else "no: not selected by validation"
        ),
    ]
    if c["optimizer_options"]:
        own = "; ".join(f"{g}: {', '.join(k)}" for g, k in c["optimizer_options"].items())
        lines.append(f"  optimizers       the model sets its own {own}")
    lines += ["", f"options (genzoo train {d['name']} -o KEY=VALUE):"]
    lines += format_options(d["options"]) or ["  (none)"]
    lines += ["", "recipes (--preset):"]
    for r in d["recipes"]:
        lines += [f"  {r['name']}: {r['description']}", f"    data {r['data']}; paper's figure: {r['figure']}",
                  f"    paper: {r['paper']}"]  # fmt: skip
    if not d["recipes"]:
        lines.append("  (none)")
    lines += ["", "measured (benchmarks/RESULTS.md):"]
    for row in d["measured"][:30]:
        cells = "; ".join(f"{k}: {v}" for k, v in row["cells"].items() if v)
        lines.append(f"  [{row['section'][:48]}] {_one_line(cells, 220)}")
    if not d["measured"]:
        lines.append("  (no rows found)")
    lines += ["", f"genzoo train {d['name']} flags that apply:"]
    width = max((len(f["flags"]) for f in d["train_flags"]), default=0)
    lines += [f"  {f['flags']:<{width}}  {_one_line(f['help'], 160)}" for f in d["train_flags"]]
    return "\n".join(lines)


def format_option_list() -> str:
    """``genzoo list --options``: every model's options, one line each."""
    from genzoo.registry import describe

    lines = []
    for name, text in describe():
        lines.append(f"{name}: {text}")
        lines += format_options(options(name)) or ["  (no options)"]
    return "\n".join(lines)


def format_recipe_list() -> str:
    """``genzoo list --recipes``: every recipe with its data and its paper's figure."""
    from genzoo.recipes import RECIPES

    lines = []
    for model in sorted(RECIPES):
        for key, r in RECIPES[model].items():
            lines += [f"{model} --preset {key}: {r.description}", f"    data {r.data}; paper's figure: {r.figure}"]
    return "\n".join(lines)
