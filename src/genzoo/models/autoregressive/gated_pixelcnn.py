"""Gated PixelCNN [2]: vertical + horizontal stacks of gated layers, no blind spot, optional classes.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
[2] A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu, "Conditional
    Image Generation with PixelCNN Decoders", NeurIPS 2016.
[3] P. Ramachandran, T. L. Paine, P. Khorrami, et al., "Fast Generation for Convolutional Autoregressive
    Models", ICLR workshop 2017 (caching activations for sampling).

    image -> [GatedLayer] x num_layers -> sum of skips -> ReLU -> 1x1 -> ReLU -> 1x1 -> logits

The layers, their kernels and the receptive field are drawn in ``genzoo.nn.gated``. Subpixels are
modelled in raster order with R -> G -> B inside a pixel [1]: the horizontal stack and the output
layers are masked by channel group. With ``num_classes`` the model is p(x | y): a learned embedding of
the label is added to the gate pre-activations of both stacks in every layer ([2], eq. 4). With
``condition_shape`` / ``condition_levels`` it is p(x | y) for a condition image y (a low-resolution or
grayscale version): the spatial form of [2], eq. 5, V * m(y) with m a conditioning network
(``genzoo.nn.conditioning``) and V a zero-initialized 1x1 projection per layer and stack, giving maps
(N, 2*channels, H, W) in place of the embedding rows. They depend on no pixel of x, so causality holds.

Sampling (``sample_cached``) reuses activations [3]: the vertical stack depends only on the rows
above, so it is computed once per row, for the whole row; the horizontal stack and the output layers
are computed for one pixel at a time from a cached row of every layer's inputs. A new subpixel costs
one pixel's work per layer instead of a full forward pass, and the draws are the ones ``sample_naive``
makes from the same generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import AutoregressiveModel, sized_default
from genzoo.nn.conditioning import ImageConditioned, zero_projection
from genzoo.nn.distributions import discrete_sample, num_params, symmetric_inputs
from genzoo.nn.gated import GatedLayer, HorizontalConv, channel_groups, gate


class GatedPixelCNN(ImageConditioned, AutoregressiveModel):
    """Gated PixelCNN for (C, H, W) images with ``levels`` values per subpixel.

    ``channels``: features of both stacks, divisible by C (one group per colour channel); None: 24 for
    images of at most 16x16 pixels, else 64 for grayscale and 32 per channel for colour (MNIST needs far
    fewer than the 384 of [2]'s ImageNet models). ``num_layers``: gated layers; None: 6 for small images,
    else 15, so that the receptive field (2 rows above per layer, as many columns to either side) covers
    the whole 28x28 image. ``kernel_size``: the vertical and horizontal stacks' width (5 as in [2]).
    ``num_classes``: class-conditional, p(x | y) with a label embedding in every layer ([2] eq. 4).
    ``condition_shape``, ``condition_levels``, ``condition_channels``, ``condition_blocks``: an image
    condition, as in ``PixelCNN`` (exclusive with ``num_classes``).
    """

    label_use = "optional"

    def __init__(
        self,
        image_shape,
        levels: int,
        channels: int | None = None,
        num_layers: int | None = None,
        kernel_size: int = 5,
        num_classes: int | None = None,
        condition_shape=None,
        condition_levels: int | None = None,
        condition_channels: int = 32,
        condition_blocks: int = 2,
    ):
        super().__init__(image_shape, levels, num_classes)
        c = self.image_shape[0]
        channels = sized_default(channels, self.image_shape, 24, 64 if c == 1 else 32 * c)
        num_layers = sized_default(num_layers, self.image_shape, 6, 15)
        if channels < c or channels % c:
            raise ValueError(f"channels must be a positive multiple of the {c} image channels, got {channels}")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"num_classes must be None or >= 1, got {num_classes}")
        self.conditional = num_classes is not None
        self.channels, self.num_layers, self.kernel_size = channels, num_layers, kernel_size
        self.layers = nn.ModuleList(
            GatedLayer(c if i == 0 else channels, channels, kernel_size, c, first=(i == 0)) for i in range(num_layers)
        )
        hidden = channel_groups(channels, c)
        k = num_params(levels)
        self.head = HorizontalConv(channels, channels, 1, hidden, hidden, strict=False)
        self.logits = HorizontalConv(channels, c * k, 1, hidden, torch.arange(c * k) // k, strict=False)
        if self.conditional:
            # e_v and e_h of every layer; zero at first, so training starts from the unconditional model
            self.embedding = nn.Embedding(int(num_classes), num_layers * 4 * channels)
            nn.init.zeros_(self.embedding.weight)
        if self.init_condition(condition_shape, condition_levels, condition_channels, condition_blocks):
            # V of [2] eq. 5 for the vertical and the horizontal stack of every layer
            self.condition_maps = nn.ModuleList(
                zero_projection(condition_channels, 4 * channels) for _ in range(num_layers)
            )

    def _label_terms(self, y, n: int) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
        """(e_v, e_h) of every layer, each (N, 2*channels) for classes, (N, 2*channels, H, W) for an image
        condition, or Nones for an unconditional model."""
        features = self.condition_features(y)
        if features is not None:
            return [tuple(project(features).chunk(2, dim=1)) for project in self.condition_maps]
        if not self.conditional:
            return [(None, None)] * self.num_layers
        if y is None:
            raise ValueError(
                f"model {self.config.get('name', type(self).__name__)} is class-conditional: pass labels y"
            )
        e = self.embedding(torch.as_tensor(y, device=self.device).long().reshape(-1).expand(n))
        e = e.view(n, self.num_layers, 2, 2 * self.channels)
        return [(e[:, i, 0], e[:, i, 1]) for i in range(self.num_layers)]

    def network(self, inputs: torch.Tensor, y=None) -> torch.Tensor:
        """The distribution parameters from float inputs (N, C, H, W), the scaled image (Bernoulli
        logits (N, C, H, W) for 2 levels, else softmax logits (N, C, H, W, levels))."""
        v = h = inputs
        skips = 0
        for layer, (e_v, e_h) in zip(self.layers, self._label_terms(y, inputs.shape[0])):
            v, h, skip = layer(v, h, e_v, e_h)
            skips = skips + skip
        out = self.logits(F.relu(self.head(F.relu(skips))))
        n, c, hh, ww = inputs.shape
        out = out.view(n, c, -1, hh, ww)
        return out[:, :, 0] if self.levels == 2 else out.permute(0, 1, 3, 4, 2)

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return self.network(symmetric_inputs(x, self.levels), y)

    # ---- cached sampling ----------------------------------------------------------------------------

    def sample_cached(self, x, known, y, generator):
        """Fill ``x`` where not ``known``, subpixel by subpixel in ``ordering()`` (see module docstring)."""
        n, c, height, width = x.shape
        half = self.kernel_size // 2
        features = self.condition_features(y)  # an image condition: its terms are made a row at a time
        labels = self._label_terms(y, n) if features is None else None
        mats = [(layer.horizontal.matrix(), layer.out.matrix()) for layer in self.layers]
        head = (self.head.matrix(), self.logits.matrix())
        sizes = [c] + [self.channels] * self.num_layers  # input channels of every layer
        # the last half+1 rows of every vertical input, zero-padded like VerticalConv.forward
        v_rows = [x.new_zeros((n, s, half + 1, width + 2 * half), dtype=torch.float) for s in sizes[:-1]]
        v_pre = [x.new_zeros((n, 2 * self.channels, 1, width), dtype=torch.float) for _ in self.layers]
        for r in range(height):
            if features is not None:  # (e_v, e_h) of row r, each (N, 2*channels, W)
                labels = [
                    tuple(project(features[:, :, r : r + 1])[:, :, 0].chunk(2, 1)) for project in self.condition_maps
                ]
            # shift_down: row r of the horizontal stack sees the vertical pre-activations of row r-1
            v_to_h = [layer.v_to_h(pre)[:, :, 0] for layer, pre in zip(self.layers, v_pre)]
            h_rows = [x.new_zeros((n, s, width + half), dtype=torch.float) for s in sizes[:-1]]
            step = (r, h_rows, v_to_h, mats, head, labels)
            # after the row's last unknown subpixel only the vertical stack needs the row (completion)
            unknown = (~known[:, :, r]).any(0).any(0).nonzero()
            for col in range(int(unknown.max()) + 1 if len(unknown) else 0):
                stale = True
                for ch in range(c):
                    keep = known[:, ch, r, col]
                    if bool(keep.all()):
                        continue
                    params = self._pixel(x, col, *step)[:, ch]
                    drawn = discrete_sample(params, self.levels, generator)
                    x[:, ch, r, col] = torch.where(keep, x[:, ch, r, col], drawn)
                    stale = ch < c - 1  # no feature at this pixel depends on its last channel
                if stale:  # the row cache must hold this pixel's features given its final value
                    self._pixel(x, col, *step)
                h_rows[0][:, :, col + half] = symmetric_inputs(x[:, :, r, col], self.levels)
            self._vertical_row(x, r, v_rows, v_pre, labels)
        return x

    def _pixel(self, x, col, r, h_rows, v_to_h, mats, head, labels):
        """Logits (N, C[, levels]) of pixel (r, col); stores its horizontal features in ``h_rows``."""
        n, c, _, _ = x.shape
        width = self.kernel_size // 2 + 1
        h_rows[0][:, :, col + width - 1] = symmetric_inputs(x[:, :, r, col], self.levels)
        skips = 0
        for i, (((w_h, b_h), (w_o, b_o)), (_, e_h)) in enumerate(zip(mats, labels)):
            pre = F.linear(h_rows[i][:, :, col : col + width].reshape(n, -1), w_h, b_h) + v_to_h[i][:, :, col]
            if e_h is not None:
                pre = pre + (e_h if e_h.dim() == 2 else e_h[:, :, col])
            res, skip = F.linear(gate(pre), w_o, b_o).chunk(2, dim=1)
            if i + 1 < len(mats):
                h_rows[i + 1][:, :, col + width - 1] = res if i == 0 else h_rows[i][:, :, col + width - 1] + res
            skips = skips + skip
        (w1, b1), (w2, b2) = head
        out = F.linear(F.relu(F.linear(F.relu(skips), w1, b1)), w2, b2).view(n, c, -1)
        return out[:, :, 0] if self.levels == 2 else out

    def _vertical_row(self, x, r, v_rows, v_pre, labels):
        """Advance the vertical stack by row r (now fully known): new windows and pre-activations."""
        half = self.kernel_size // 2
        row = symmetric_inputs(x[:, :, r], self.levels)
        for i, (layer, (e_v, _)) in enumerate(zip(self.layers, labels)):
            window = v_rows[i]
            window[:, :, :-1] = window[:, :, 1:].clone()
            window[:, :, -1, half : half + row.shape[-1]] = row
            pre = layer.vertical.row(window)
            if e_v is not None:
                pre = pre + (e_v[:, :, None] if e_v.dim() == 2 else e_v)
            v_pre[i] = pre[:, :, None]
            row = gate(pre)
