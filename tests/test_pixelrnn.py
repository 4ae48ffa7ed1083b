"""PixelRNN-specific checks: cached sampling reproduces naive sampling, context shapes, sane initial loss.

The generic properties (normalization, causality, chi-square sampling, save/load) are covered for both
models by tests/test_autoregressive.py through tests/tiny_models.py.
"""

import math

import pytest
import torch

import genzoo
from genzoo.nn.lstm2d import skew, unskew

MODELS = ["row-lstm", "diagonal-bilstm"]


def build(name, shape, levels, seed=0, **options):
    torch.manual_seed(seed)
    model = genzoo.create(name, image_shape=shape, levels=levels, **options)
    with torch.no_grad():  # away from the initialization, as in test_autoregressive.py
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


CACHE_CASES = [((1, 5, 5), 2, 4), ((3, 3, 3), 4, 6)]  # (shape, levels, hidden)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape,levels,hidden", CACHE_CASES)
def test_cached_sampling_equals_naive_sampling(name, shape, levels, hidden):
    model = build(name, shape, levels, hidden=hidden, num_layers=2)
    assert model.has_cached_sampling
    naive = model.sample(8, generator=torch.Generator().manual_seed(7), naive=True)
    cached = model.sample(8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(cached, naive)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape,levels,hidden", CACHE_CASES)
def test_cached_completion_equals_naive_completion(name, shape, levels, hidden):
    model = build(name, shape, levels, hidden=hidden, num_layers=2)
    x = torch.randint(0, levels, (8, *shape), generator=torch.Generator().manual_seed(3))
    known = torch.zeros_like(x, dtype=torch.bool)
    known[:, :, : shape[1] // 2] = True  # a kept top half ...
    known[:4, 0, -1, 1] = True  # ... and some subpixels known in only part of the batch
    known[:, -1, -1, -1] = True  # and a last colour known everywhere (skipped draw)
    naive = model.sample(8, x=x, known=known, generator=torch.Generator().manual_seed(9), naive=True)
    cached = model.sample(8, x=x, known=known, generator=torch.Generator().manual_seed(9))
    assert torch.equal(cached, naive)
    assert torch.equal(cached[known], x[known])


@pytest.mark.parametrize("name", MODELS)
def test_cached_parameters_match_the_forward_pass(name):
    """The per-pixel recurrences of the cached sampler compute the same conditionals as ``forward``."""
    model = build(name, (3, 4, 5), 3, hidden=6, num_layers=3)
    seen = {}
    draw = model.pixel_sample

    def record(params, index, x, generator):
        seen["params"] = params
        return draw(params, index, x, generator)

    model.pixel_sample = record
    out = model.sample(5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(out)
    torch.testing.assert_close(seen["params"], expected, rtol=1e-5, atol=1e-5)


def test_diagonal_bilstm_sees_the_whole_past_and_row_lstm_a_triangle():
    """Flip each earlier pixel: the Diagonal BiLSTM output at ``centre`` always changes (no blind spot)
    unless ``full_context=False``;
    a one-layer Row LSTM misses pixels far above-right, outside its cone widening one column per row."""
    shape, centre = (1, 6, 16), (5, 4)
    x = torch.randint(0, 2, (1, *shape), generator=torch.Generator().manual_seed(0))
    for name, options in [("diagonal-bilstm", {}), ("diagonal-bilstm", {"full_context": False}), ("row-lstm", {})]:
        model = build(name, shape, 2, hidden=4, num_layers=1, **options)
        missed = set()
        with torch.no_grad():
            base = model(x)[0, 0][centre]
            for r in range(centre[0] + 1):
                for c in range(shape[2]):
                    if (r, c) >= centre:
                        continue
                    changed = x.clone()
                    changed[0, 0, r, c] = 1 - changed[0, 0, r, c]
                    if model(changed)[0, 0][centre] == base:
                        missed.add((r, c))
        if name == "diagonal-bilstm" and options:  # [1] as written: the previous row's last pixel
            assert missed == {(4, 15)}
        elif name == "diagonal-bilstm":
            assert not missed
        else:
            # the state at (5, 4) reads row-4 states at columns 3..5, those read row 3 at 2..6, ...; the
            # 1x3 input-to-state and the 7x7 input layer add 1 + 3 columns: row r is seen up to 11 - r
            assert missed == {(r, c) for r in range(5) for c in range(12 - r, 16)}


@pytest.mark.parametrize("name", MODELS)
def test_initial_loss_is_near_uniform_on_binarized_mnist_shape(name):
    torch.manual_seed(0)
    model = genzoo.create(name, image_shape=(1, 28, 28), levels=2)
    x = (torch.rand(4, 1, 28, 28) < 0.2).long()
    with torch.no_grad():
        loss = model.loss(x).item()
    assert loss <= 1.1 * 784 * math.log(2)


@pytest.mark.parametrize("name", MODELS)
def test_hidden_must_split_into_colour_groups(name):
    with pytest.raises(ValueError, match="multiple of the 3 image channels"):
        genzoo.create(name, image_shape=(3, 4, 4), levels=4, hidden=16)
    with pytest.raises(ValueError, match="num_layers"):
        genzoo.create(name, image_shape=(1, 4, 4), levels=2, num_layers=0)


def test_row_lstm_kernel_size_must_be_odd():
    with pytest.raises(ValueError, match="kernel_size"):
        genzoo.create("row-lstm", image_shape=(1, 4, 4), levels=2, kernel_size=2)


def test_skew_moves_row_r_right_by_r_and_unskew_inverts_it():
    x = torch.arange(12.0).reshape(1, 1, 3, 4) + 1
    s = skew(x)
    assert s.shape == (1, 1, 3, 6)
    for r in range(3):
        assert torch.equal(s[0, 0, r, r : r + 4], x[0, 0, r])
        assert s[0, 0, r].count_nonzero() == 4
    assert torch.equal(unskew(s, 4), x)


@pytest.mark.parametrize("dim", [0, -2])
def test_gated_cell_backward_matches_autograd_of_the_lstm_formula(dim):
    from genzoo.nn.lstm2d import gated_cell

    torch.manual_seed(0)
    shape = (4, 3, 5) if dim == 0 else (3, 2, 4, 5)  # gates-first, or (..., groups, 4, m)
    p = torch.randn(shape, dtype=torch.double, requires_grad=True)
    c = torch.randn(p.select(dim, 0).shape, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, c: gated_cell(p, c, dim), (p, c))
    o, f, i, g = p.unbind(dim)
    c_ref = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h, c_new = gated_cell(p, c, dim)
    torch.testing.assert_close(c_new, c_ref)
    torch.testing.assert_close(h, torch.sigmoid(o) * torch.tanh(c_ref))
