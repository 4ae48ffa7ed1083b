"""PixelCNN specifics: the mask pictures, an exact Jacobian causality check that detects planted
leaks, the blind spot, and a sane initial loss. The generic properties (normalization, sampling,
save/load, ...) are in test_autoregressive.py."""

import copy
import math

import pytest
import torch

import genzoo
from genzoo.nn.masked_conv import MaskedConv2d, causal_mask

PAST = torch.tensor(
    [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
)  # the 3x3 taps strictly before the centre in raster order


def expected_mask(centre: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3): PAST everywhere, with the centre tap given by the (out, in) 0/1 matrix."""
    mask = PAST.repeat(*centre.shape, 1, 1)
    mask[:, :, 1, 1] = centre
    return mask


def test_single_colour_masks_are_the_pictures():
    assert torch.equal(causal_mask(1, 1, 3, "A"), torch.tensor([[[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]]))
    assert torch.equal(causal_mask(1, 1, 3, "B"), torch.tensor([[[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]]))
    assert torch.equal(causal_mask(2, 4, 3, "B"), expected_mask(torch.ones(4, 2)))


def test_rgb_masks_order_the_colours():
    a = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])  # rows: output R, G, B; columns: input
    b = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.equal(causal_mask(3, 3, 3, "A", 3), expected_mask(a))
    assert torch.equal(causal_mask(3, 3, 3, "B", 3), expected_mask(b))
    # wider layers: contiguous equal groups (channels 0-1 are R, 2-3 G, 4-5 B)
    assert torch.equal(causal_mask(3, 6, 3, "A", 3), expected_mask(a.repeat_interleave(2, 0)))
    assert torch.equal(causal_mask(6, 3, 1, "B", 3), b.repeat_interleave(2, 1)[:, :, None, None])


def test_masked_conv_masks_functionally_and_validates():
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 6, 3, "A", color_groups=3)
    before = conv.weight.detach().clone()
    x = torch.randn(2, 3, 5, 5)
    out = conv(x)
    assert torch.allclose(out, torch.nn.functional.conv2d(x, before * conv.mask, conv.bias, padding=1))
    out.sum().backward()
    assert torch.equal(conv.weight.detach(), before)  # the stored weight is never modified
    assert torch.all(conv.weight.grad[conv.mask == 0] == 0)
    assert "mask" not in conv.state_dict()  # rebuilt from the constructor arguments
    with pytest.raises(ValueError, match="divisible by color_groups"):
        MaskedConv2d(3, 8, 3, "B", color_groups=3)
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d(1, 4, 3, "C")


def make_model(shape=(3, 5, 5), levels=4, **options):
    torch.manual_seed(0)
    model = genzoo.create(
        "pixelcnn", shape, levels, **{"channels": 12, "num_blocks": 2, "output_channels": 6, **options}
    )
    with torch.no_grad():  # leave the zero initialization of the last layer behind
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def dependence(model, samples: int = 3) -> torch.Tensor:
    """|d logits of subpixel i / d input subpixel j|, summed over logits and random inputs, (D, D), rows and
    columns in generation order. Float64 so that exactly-masked paths give exact zeros."""
    net = copy.deepcopy(model).double()
    shape, d = net.image_shape, net.num_dims
    total = torch.zeros(d, d, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for _ in range(samples):
        u = torch.rand(d, generator=generator, dtype=torch.float64) * 2 - 1
        jac = torch.autograd.functional.jacobian(lambda v: net.network(v.reshape(1, *shape)).reshape(d, -1), u)
        total += jac.abs().sum(1)
    order = net.ordering()
    return total[order][:, order]


def sees_the_future(model) -> bool:
    return bool(torch.triu(dependence(model)).any())  # diagonal included: i may not see itself


def test_jacobian_no_output_depends_on_its_own_or_a_future_subpixel():
    model = make_model()
    dep = dependence(model)
    assert not torch.triu(dep).any()
    # ...and the receptive field works: the left and upper neighbours (all colours) and the earlier
    # colours of the same pixel are seen. (The original PixelCNN still has a blind spot, see below.)
    c_, h_, w_ = model.image_shape
    step = {flat: i for i, flat in enumerate(model.ordering().tolist())}

    def at(c, h, w):
        return step[(c * h_ + h) * w_ + w]

    for c, h, w in [(0, 2, 2), (1, 2, 2), (2, 2, 2), (2, 4, 4), (0, 1, 1)]:
        for k in range(c_):
            assert dep[at(c, h, w), at(k, h, w - 1)] > 0
            assert dep[at(c, h, w), at(k, h - 1, w)] > 0
        for k in range(c):
            assert dep[at(c, h, w), at(k, h, w)] > 0


def test_blind_spot_of_the_original_architecture():
    # Stacked 3x3 mask-B layers never see the row above beyond the reach of the first layer to the
    # right: with a 7x7 first layer, subpixel (4, 0) never sees (3, 4), however deep the network.
    # Gated PixelCNN (vertical + horizontal stacks) removes this blind spot.
    model = make_model(shape=(1, 5, 5), num_blocks=4)
    dep = dependence(model)
    assert dep[4 * 5 + 0, 3 * 5 + 4] == 0
    assert dep[4 * 5 + 0, 3 * 5 + 3] > 0


@pytest.mark.parametrize("leak", ["first layer mask B", "1x1 without colour mask", "3x3 without colour groups"])
def test_the_causality_check_detects_a_planted_leak(leak):
    model = make_model()
    assert not sees_the_future(model)
    with torch.no_grad():
        if leak == "first layer mask B":
            conv = model.input_conv
            conv.mask.copy_(causal_mask(conv.in_channels, conv.out_channels, 7, "B", 3))
        elif leak == "1x1 without colour mask":  # e.g. R reading G and B of its own pixel
            model.blocks[1].branch[1].mask.fill_(1.0)
        else:
            conv = model.blocks[0].branch[3]
            conv.mask.copy_(causal_mask(conv.in_channels, conv.out_channels, 3, "B", 1))
    assert sees_the_future(model)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 8)])
@pytest.mark.parametrize("levels", [2, 256])
def test_initial_loss_is_near_uniform(shape, levels):
    torch.manual_seed(0)
    model = genzoo.create("pixelcnn", shape, levels, channels=24, output_channels=24)  # default depth
    x = torch.randint(0, levels, (8, *shape))
    uniform = math.prod(shape) * math.log(levels)
    with torch.no_grad():
        assert model.loss(x).item() == pytest.approx(uniform, rel=1e-5)  # zero-initialized last layer
        # even with a randomly initialized last layer the residual stream stays O(1): no 10^5 nats
        features = model.features(torch.rand(8, *shape) * 2 - 1)
        assert 1e-2 < features.std().item() < 10
        model.output[-1].reset_parameters()
        assert model.loss(x).item() < 1.1 * uniform


def test_output_layout_and_bad_widths():
    model = make_model(shape=(3, 4, 5), levels=7)
    assert model(torch.zeros(2, 3, 4, 5, dtype=torch.long)).shape == (2, 3, 4, 5, 7)
    binary = make_model(shape=(1, 4, 5), levels=2, channels=8, output_channels=8)
    assert binary(torch.zeros(2, 1, 4, 5, dtype=torch.long)).shape == (2, 1, 4, 5)
    with pytest.raises(ValueError, match="multiple of 2\\*C = 6"):
        genzoo.create("pixelcnn", (3, 4, 4), 4, channels=8)
    with pytest.raises(ValueError, match="output_channels"):
        genzoo.create("pixelcnn", (3, 4, 4), 4, output_channels=8)
