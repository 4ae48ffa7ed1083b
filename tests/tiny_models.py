"""Shared test helpers: tiny configurations of every explicit-density model, small enough to
enumerate every image, and the enumeration itself.

name -> list of (image_shape, levels, options). Each model appears with binary data and with
multi-level data; models that handle colour also appear with 3 channels (RGB ordering).
"""

TINY = {
    "independent": [((1, 2, 2), 2, {}), ((1, 2, 2), 3, {})],
    "fvsbn": [((1, 2, 3), 2, {}), ((1, 2, 2), 3, {})],
    "nade": [((1, 2, 3), 2, {"hidden": 8}), ((1, 2, 2), 3, {"hidden": 8})],
    "made": [
        ((1, 2, 3), 2, {"hidden": [16, 16], "num_masks": 1}),
        ((1, 2, 3), 2, {"hidden": [16, 16], "num_masks": 3}),
        ((1, 2, 2), 3, {"hidden": [16], "num_masks": 2}),
        ((1, 2, 2), 3, {"hidden": [16], "inputs": "scalar", "output_rank": 2}),  # the 256-level defaults' form
        ((1, 2, 2), 4, {"hidden": [16], "num_masks": 2, "output_rank": 3, "direct": True}),
    ],
    "pixelcnn": [
        ((1, 2, 3), 2, {"channels": 8, "num_blocks": 1}),
        ((1, 3, 3), 3, {"channels": 8, "num_blocks": 2}),
        ((3, 1, 2), 3, {"channels": 12, "num_blocks": 1}),
    ],
    "pixelcnn++": [
        ((1, 2, 3), 2, {"channels": 8, "num_resnet": 1, "num_resolutions": 2}),
        ((1, 3, 3), 3, {"channels": 8, "num_resnet": 1, "num_mixtures": 2, "num_resolutions": 2, "weight_norm": True}),
        ((3, 1, 2), 3, {"channels": 8, "num_resnet": 1, "num_mixtures": 2, "num_resolutions": 2}),
    ],
    "gated-pixelcnn": [
        ((1, 2, 3), 2, {"channels": 8, "num_layers": 2, "kernel_size": 3}),
        ((1, 3, 3), 3, {"channels": 8, "num_layers": 2, "kernel_size": 3}),
        ((3, 1, 2), 3, {"channels": 6, "num_layers": 2, "kernel_size": 3}),
    ],
    "row-lstm": [
        ((1, 2, 3), 2, {"hidden": 4, "num_layers": 2}),
        ((1, 3, 3), 3, {"hidden": 4, "num_layers": 2}),
        ((3, 1, 2), 3, {"hidden": 6, "num_layers": 2}),
    ],
    "diagonal-bilstm": [
        ((1, 2, 3), 2, {"hidden": 4, "num_layers": 2}),
        ((1, 3, 3), 3, {"hidden": 4, "num_layers": 2}),
        ((3, 1, 2), 3, {"hidden": 6, "num_layers": 2}),
    ],
    "pixelsnail": [
        ((1, 2, 3), 2, {"channels": 4, "num_blocks": 1, "num_resnet": 1, "key_channels": 4, "value_channels": 4}),
        ((1, 3, 3), 3, {"channels": 4, "num_blocks": 2, "num_resnet": 1, "key_channels": 4, "value_channels": 4}),
        (
            (3, 1, 2),
            3,
            {
                "channels": 6,
                "num_blocks": 1,
                "num_resnet": 1,
                "key_channels": 4,
                "value_channels": 4,
                "attention_heads": 2,
            },
        ),
        (
            (3, 1, 2),
            3,
            {
                "channels": 4,
                "num_blocks": 1,
                "num_resnet": 1,
                "key_channels": 4,
                "value_channels": 4,
                "output": "logistic",
                "num_mixtures": 2,
            },
        ),
    ],
}


def cases():
    """pytest parameters: (name, image_shape, levels, options) with readable ids."""
    import pytest

    out = []
    for name, configs in TINY.items():
        for shape, levels, options in configs:
            out.append(
                pytest.param(
                    name, shape, levels, options, id=f"{name}-{'x'.join(map(str, shape))}-L{levels}-{len(out)}"
                )
            )
    return out


def all_images(shape, levels):
    """Every integer image of ``shape`` with ``levels`` values per subpixel, as a LongTensor."""
    import itertools
    import math

    import torch

    grid = torch.tensor(list(itertools.product(range(levels), repeat=math.prod(shape))), dtype=torch.long)
    return grid.reshape(-1, *shape)


def normal_weights_model(name, shape, levels, scale=1.0, seed=0, **options):
    """Model ``name`` with every parameter drawn from N(0, scale^2) (seeded), in eval mode."""
    import torch

    import genzoo

    torch.manual_seed(seed)
    model = genzoo.create(name, image_shape=shape, levels=levels, **options)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


def perturbed_model(name, shape, levels, options, seed=0):
    """Model ``name`` at its initialization plus N(0, 0.5^2) noise on every parameter (seeded), in eval
    mode: away from the (often zero) initialization, so that the property tests are not trivial."""
    import torch

    import genzoo

    torch.manual_seed(seed)
    model = genzoo.create(name, image_shape=shape, levels=levels, **options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def naive_and_cached_samples(model, n, seed, **kwargs):
    """(naive, cached) draws of ``n`` images from the same seed: the pair every cached sampler must match."""
    import torch

    naive = model.sample(n, generator=torch.Generator().manual_seed(seed), naive=True, **kwargs)
    cached = model.sample(n, generator=torch.Generator().manual_seed(seed), **kwargs)
    return naive, cached


def prototype_dataset(name, n=256):
    """``n`` binary 3x3 images: three prototypes with 8% of the bits flipped (seeded); valid/test = first 16."""
    import torch

    from genzoo.data.base import ImageDataset, ImageSplit

    g = torch.Generator().manual_seed(0)
    prototypes = torch.tensor([[1, 1, 1, 0, 0, 0, 1, 1, 1], [0, 1, 0, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0, 0, 0, 1]])
    flips = (torch.rand(n, 9, generator=g) < 0.08).long()
    x = (prototypes[torch.randint(0, 3, (n,), generator=g)] ^ flips).reshape(n, 1, 3, 3).to(torch.uint8)
    return ImageDataset(name, 2, ImageSplit(x), ImageSplit(x[:16]), ImageSplit(x[:16]))
