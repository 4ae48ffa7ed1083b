"""Cached sampling for PixelCNN: one position's worth of work per subpixel instead of a full forward pass.

Every activation of the network at pixel (i, j) depends only on the input before (i, j) in raster
order and, in colour group g, on the colours < g of (i, j) itself. So walking the subpixels in order,
each masked convolution keeps a cache of its input (``genzoo.nn.incremental``); when subpixel
(c, i, j) is next, the whole network is evaluated at the single position (i, j) from those caches,
which also writes (i, j) into them; colour c is drawn from that position's logits and stored in
the input cache. After the step for colour c the activations of groups <= c at (i, j) are final, so
after the last colour the whole pixel is final and later positions can read it. A step costs
O(layers * k^2 * channels^2), independent of the image size.

Draws consume the generator exactly as ``AutoregressiveModel.sample_naive`` does (same order, same
skipped subpixels, same ``discrete_sample`` call on an (N,) or (N, levels) slice), so both give the
same images for the same seed up to float rounding of the logits (the position's matmuls sum in a
different order from the full convolution; a draw flips only if its uniform variate falls within
~1e-7 of a boundary).

A conditioned PixelCNN (``PixelCNN.features(u, condition)``, e.g. a VAE's PixelCNN decoder given z)
samples through the same loop: pass the ``condition`` map, which the stepper adds at each position
where the full pass adds it, and ``draw`` to pick levels another way (e.g. the mean level).
"""

from __future__ import annotations

from typing import Callable

import torch

from genzoo.models.base import AutoregressiveModel
from genzoo.nn.distributions import discrete_sample, symmetric_inputs
from genzoo.nn.incremental import incremental_convs, sequential_step


class PixelCNNStepper:
    """A PixelCNN evaluated position by position on the images ``x`` (N, C, H, W), read at each step.

    ``logits(i, j)`` returns the logits at pixel (i, j), (N, C, K) with K = 1 for 2 levels, and writes
    the activations there into the caches. Call it in raster order, for every pixel, after the
    colours of (i, j) it should condition on have been written into ``x``; a value written into ``x``
    after the last call at its pixel must also go into the input cache with ``store_input``.
    Dropout acts per position, so it matches a full pass only in eval mode (as sampling should run).
    ``condition``: the map ``model.features`` adds to the residual stream, (N, channels, H, W) or
    broadcastable to it, or the list of one map per block and one for the end (an image-conditioned
    PixelCNN's ``condition_terms``); None for the plain PixelCNN.
    """

    def __init__(self, model, x: torch.Tensor, condition: torch.Tensor | None = None):
        self.model = model
        self.x = x
        n, _, h, w = x.shape
        self.convs = incremental_convs(model, n, h, w)
        self.condition = None
        if condition is not None:  # channels last: one position's vector is a contiguous (N, channels) slice
            shape = (n, model.input_conv.out_channels, h, w)
            maps = condition if isinstance(condition, (list, tuple)) else [condition]
            maps = [torch.broadcast_to(c, shape).permute(0, 2, 3, 1).contiguous() for c in maps]
            self.condition = maps if len(maps) > 1 else maps * (len(model.blocks) + 1)

    def input_at(self, i: int, j: int) -> torch.Tensor:
        return symmetric_inputs(self.x[:, :, i, j], self.model.levels)

    def store_input(self, i: int, j: int) -> None:
        """Copy pixel (i, j) of ``x`` into the input cache (after a draw there), evaluating nothing."""
        self.convs[self.model.input_conv].store(self.input_at(i, j), i, j)

    def features(self, i: int, j: int) -> torch.Tensor:
        """The residual stream (N, channels) at (i, j), as ``model.features`` gives it."""
        model = self.model
        s = self.convs[model.input_conv].step(self.input_at(i, j), i, j)
        maps = self.condition
        for k, block in enumerate(model.blocks):
            if maps is not None:
                s = s + maps[k][:, i, j]
            s = s + sequential_step(block.branch, s, i, j, self.convs)
        return s if maps is None else s + maps[-1][:, i, j]

    def logits(self, i: int, j: int) -> torch.Tensor:
        out = sequential_step(self.model.output, self.features(i, j), i, j, self.convs)
        return out.reshape(out.shape[0], self.model.image_shape[0], self.model.params_per_subpixel)


def sample_cached(
    model,
    x: torch.Tensor,
    known: torch.Tensor,
    generator: torch.Generator | None,
    on_step: Callable[[tuple[int, int, int], torch.Tensor], None] | None = None,
    *,
    condition: torch.Tensor | None = None,
    draw: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Fill ``x`` where not ``known``, like ``sample_naive``, with cached per-position evaluation.

    ``on_step(index, params)``, if given, sees the distribution parameters of every drawn subpixel
    ``index`` = (c, i, j): (N,) Bernoulli logits or (N, levels) softmax logits (for tests).
    ``condition``: the map(s) of ``model.features(u, condition)`` (see ``PixelCNNStepper``).
    ``draw(params)``: the levels (N,) of a subpixel from those parameters; by default
    ``discrete_sample(params, model.levels, generator)``.
    """
    order = model.ordering()
    if not torch.equal(order, AutoregressiveModel.ordering(model)):
        raise ValueError("cached PixelCNN sampling needs the raster ordering with the colours innermost")
    channels, height, width = model.image_shape
    stepper = PixelCNNStepper(model, x, condition)
    unfinished = None  # a pixel whose caches lack its last colours: they were known, so never evaluated with them
    for flat in order.tolist():
        c, i, j = flat // (height * width), (flat // width) % height, flat % width
        if unfinished is not None and unfinished != (i, j):
            stepper.logits(*unfinished)  # later pixels read its activations: complete them
        unfinished = (i, j)
        keep = known[:, c, i, j]
        if bool(keep.all()):
            continue
        params = stepper.logits(i, j)[:, c]
        params = params.squeeze(-1) if model.params_per_subpixel == 1 else params
        if on_step is not None:
            on_step((c, i, j), params)
        drawn = discrete_sample(params, model.levels, generator) if draw is None else draw(params)
        x[:, c, i, j] = torch.where(keep, x[:, c, i, j], drawn)
        stepper.store_input(i, j)
        if c == channels - 1:
            unfinished = None  # evaluated with every earlier colour known: final for all groups
    return x
