"""Tiny configurations of every explicit-density model, small enough to enumerate every image.

name -> list of (image_shape, levels, options). Each model appears with binary data and with
multi-level data; models that handle colour also appear with 3 channels (RGB ordering).
"""
TINY = {
    "independent": [((1, 2, 2), 2, {}), ((1, 2, 2), 3, {})],
    "fvsbn": [((1, 2, 3), 2, {}), ((1, 2, 2), 3, {})],
    "nade": [((1, 2, 3), 2, {"hidden": 8}), ((1, 2, 2), 3, {"hidden": 8})],
    "made": [((1, 2, 3), 2, {"hidden": [16, 16], "num_masks": 1}),
             ((1, 2, 3), 2, {"hidden": [16, 16], "num_masks": 3}),
             ((1, 2, 2), 3, {"hidden": [16], "num_masks": 2})],
    "pixelcnn": [((1, 2, 3), 2, {"channels": 8, "num_blocks": 1}),
                 ((1, 3, 3), 3, {"channels": 8, "num_blocks": 2}),
                 ((3, 1, 2), 3, {"channels": 12, "num_blocks": 1})],
}


def cases():
    """pytest parameters: (name, image_shape, levels, options) with readable ids."""
    import pytest

    out = []
    for name, configs in TINY.items():
        for shape, levels, options in configs:
            out.append(pytest.param(name, shape, levels, options,
                                    id=f"{name}-{'x'.join(map(str, shape))}-L{levels}-{len(out)}"))
    return out