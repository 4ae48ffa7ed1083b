import pytest

import genzoo
from genzoo.registry import UnknownModelError


def test_unknown_model_is_a_clear_error():
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        genzoo.create("nope", image_shape=(1, 2, 2), levels=2)


def test_describe_lists_models():
    names = [name for name, _ in genzoo.describe()]
    assert "pixelcnn" in names and "made" in names
