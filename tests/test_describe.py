"""``genzoo describe MODEL`` and ``genzoo list --options/--recipes``: generated from signatures, docstrings,
declarations, recipes and benchmarks/RESULTS.md, for every registered model."""

from __future__ import annotations

import inspect
import json

import pytest

from genzoo import model_info
from genzoo.cli import main
from genzoo.recipes import RECIPES
from genzoo.registry import MODELS, entry, model_class, options_of

# Options that no docstring of their class, __init__ or module names yet (to be documented in the model files;
# this list may only shrink: test_no_option_becomes_undocumented).
KNOWN_UNDOCUMENTED: dict[str, list[str]] = {}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_described_from_its_declarations(name):
    d = model_info.describe_model(name)
    cls = model_class(name)
    assert [o["name"] for o in d["options"]] == [p.name for p in options_of(name)]
    for option, parameter in zip(d["options"], options_of(name)):
        default = entry(name).options.get(parameter.name, parameter.default)
        if default is not inspect.Parameter.empty:
            assert json.loads(option["default"]) == json.loads(json.dumps(default))
        assert option["meaning"] and option["type"]
    c = d["capabilities"]
    assert c["likelihood"] == cls.likelihood and c["fit_methods"] == list(cls.fit_methods)
    assert c["can_complete"] == cls.can_complete and c["has_codes"] == cls.has_codes
    if cls.can_complete:
        assert isinstance(c["cached_sampling"], bool)
    assert [r["name"] for r in d["recipes"]] == list(RECIPES.get(name, {}))
    flags = {f["flags"] for f in d["train_flags"]}
    assert ("--conditional" in flags) == (c["label_use"] == "optional")
    assert ("--fit" in flags) == bool(cls.fit_methods)
    assert ("--em-iterations" in flags) == ("em" in cls.fit_methods)
    assert ("--eval-k" in flags) == (cls.likelihood == "bound")
    assert ("--preset" in flags) == bool(RECIPES.get(name))
    assert ("--lr" in flags) == (cls.default_fit is None) and "--seed" in flags
    text = model_info.format_description(d)
    assert text.startswith(f"{name}: ") and "capabilities:" in text and "flags that apply" in text


def test_capabilities_say_what_a_user_can_do():
    nade, gan, mixture = (model_info.capabilities(n) for n in ("nade", "dcgan", "bernoulli-mixture"))
    assert nade["cached_sampling"] is True and nade["can_complete"] and nade["label_use"] == "never"
    assert model_info.capabilities("made")["cached_sampling"] is False
    assert gan["likelihood"] == "none" and gan["label_use"] == "optional" and gan["cached_sampling"] is None
    assert set(gan["optimizer_options"]) == {"generator", "discriminator"}  # its own lr and betas
    assert model_info.capabilities("cgan")["label_use"] == "always"
    assert mixture["default_fit"] == "em" and model_info.capabilities("naive-bayes")["label_use"] == "always"
    assert model_info.first_reference(model_class("pixelcnn")).startswith("[1] A. van den Oord")


def test_option_meanings_are_read_from_every_docstring_form():
    class Documented:
        """A model.

        ``latent``: size of z; ``lr``/``betas`` None: the papers' values; ``depth`` (layers, as in [1]; at
        least 1): ignored here.

        ``prior`` is the pseudo-count added to every count. Mixture of ``components`` parts.
        ``gamma`` and ``delta`` are not defined here (``missing`` neither).

            width: channels of every layer; a multiple of C
                (continued here).
            first / second: two kernels. third: the last one.
        """

    Documented.__module__ = __name__
    names = ["latent", "lr", "betas", "prior", "components", "width", "first", "second", "third", "absent"]
    found = model_info.option_meanings(Documented, names)
    assert found["latent"] == "size of z"
    assert found["lr"] == found["betas"] == "None: the papers' values"
    assert found["prior"].startswith("``prior`` is the pseudo-count") and "components" in found
    assert found["width"] == "channels of every layer; a multiple of C (continued here)."
    assert found["first"] == found["second"] == "two kernels." and found["third"] == "the last one."
    assert "absent" not in found


def test_no_option_becomes_undocumented():
    new = {
        cls: sorted(set(names) - set(KNOWN_UNDOCUMENTED.get(cls, [])))
        for cls, names in model_info.undocumented_options().items()
    }
    assert not {cls: names for cls, names in new.items() if names}, "document these options in their docstrings"


def test_every_model_option_is_documented():
    assert model_info.undocumented_options() == {}


def test_measured_results_are_the_rows_naming_the_model(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Results\n\n## 1. MNIST\n\n| run | model | test NLL |\n|---|---|---|\n"
        "| `pixelcnn-small` | PixelCNN, 64 channels | 91.27 |\n| `gated-pixelcnn-small` | Gated PixelCNN | 90.57 |\n"
        "| `pcnn-pp` | PixelCNN++ (logistic mixture) | 3.1 |\n\n## 2. other\n\n| model | NLL |\n|---|---|\n"
        "| NADE | 99.68 |\n"
    )
    rows = model_info.measured_results("pixelcnn", results)
    assert [r["cells"]["test NLL"] for r in rows] == ["91.27"] and rows[0]["section"] == "1. MNIST"
    assert [r["cells"]["test NLL"] for r in model_info.measured_results("gated-pixelcnn", results)] == ["90.57"]
    assert [r["cells"]["test NLL"] for r in model_info.measured_results("pixelcnn++", results)] == ["3.1"]
    assert [r["section"] for r in model_info.measured_results("nade", results)] == ["2. other"]
    assert model_info.measured_results("nade", tmp_path / "absent.md") == []


def test_the_commands(capsys):
    assert main(["describe", "made"]) == 0
    out = capsys.readouterr().out
    assert "num_masks" in out and "germain2015-32masks" in out and "--conditional" not in out
    assert main(["describe", "vae", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["capabilities"]["likelihood"] == "bound" and any(f["flags"] == "--eval-k" for f in d["train_flags"])
    assert main(["describe", "no-such-model"]) == 2
    assert main(["list", "--options"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: " in out for name in MODELS) and "(undocumented)" not in out  # every option documented
    assert main(["list", "--recipes"]) == 0
    out = capsys.readouterr().out
    assert "rbm --preset salakhutdinov2008-cd25" in out and "86.34" in out
