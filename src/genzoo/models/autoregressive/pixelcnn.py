"""PixelCNN [1]: a stack of masked convolutions giving every subpixel's conditional in one pass.

Architecture ([1], section 3.4, figure 5 and table 2), with ``h = channels // 2``:

    7x7 conv, mask A, C -> 2h
    num_blocks residual blocks:  x + [ReLU, 1x1 2h->h, ReLU, 3x3 mask B h->h, ReLU, 1x1 h->2h](x)
    ReLU, 1x1 mask B 2h -> output_channels, ReLU, 1x1 mask B -> C*K logits

All layers, 1x1 ones included, carry the RGB channel mask (``genzoo.nn.masked_conv``): feature
channels are split into C colour groups so that R is predicted from past pixels, G also from R of the
same pixel and B also from R and G. K = 1 (Bernoulli logits) for 2 levels, else K = levels (softmax).

The model sees the integers scaled to [-1, 1]. The final layer starts at zero, so the initial
prediction is uniform and the initial loss is exactly C*H*W*ln(levels) nats; with PyTorch's default
(variance-shrinking) initialization the residual stream stays O(1) however deep the stack.

The stacked 3x3 mask-B convolutions leave a blind spot (part of the rows above, to the right of the
receptive field's cone, is never seen); Gated PixelCNN removes it with separate vertical and
horizontal stacks.

Image conditioning (``condition_shape=[C', h, w]``, ``condition_levels``: p(x | y) for super-resolution or
colorization, ``genzoo.nn.conditioning``): a conditioning network reads ``y`` and a zero-initialized 1x1
projection of its features is added to the residual stream before every block and after the last
(the ``condition`` of ``features``), so every layer is biased by the condition; the maps depend on no
pixel of ``x``, so the outputs stay causal and p(x | y) is exactly normalized for every ``y``.
``condition_loss=w > 0`` adds the auxiliary term of the pixel-recursive super-resolution model [2]
(section 4: without it "the model tends to ignore the conditioning network") to the training
objective: a 1x1 head on the conditioning features predicts every subpixel independently from ``y``
alone, and its negative log-likelihood, times w, is added to the loss. The head serves training only:
log p(x | y), sampling and evaluation never use it.

Defaults: 1 + 12 + 2 = 15 masked layers as in [1] ("fifteen layers"), and a width that is a multiple
of 2*3 so that the same defaults work for RGB. [1] reports 81.30 nats on binarized MNIST.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu. Pixel Recurrent Neural Networks. ICML 2016.
[2] R. Dahl, M. Norouzi, J. Shlens. Pixel Recursive Super Resolution. ICCV 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from genzoo.models.autoregressive import pixelcnn_sampling
from genzoo.models.base import AutoregressiveModel
from genzoo.nn.conditioning import ImageConditioned, zero_projection
from genzoo.nn.distributions import discrete_log_prob, num_params, symmetric_inputs
from genzoo.nn.masked_conv import MaskedConv2d


class ResidualBlock(nn.Module):
    """[1] figure 5: a bottleneck 2h -> h -> h -> 2h added to its input; every layer mask B."""

    def __init__(self, channels: int, kernel_size: int, colors: int, dropout: float):
        super().__init__()
        h = channels // 2
        self.branch = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(channels, h, 1, "B", colors),
            nn.ReLU(),
            MaskedConv2d(h, h, kernel_size, "B", colors),
            nn.ReLU(),
            nn.Dropout(dropout),
            MaskedConv2d(h, channels, 1, "B", colors),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class PixelCNN(ImageConditioned, AutoregressiveModel):
    """PixelCNN over (C, H, W) images with ``levels`` values per subpixel.

    channels: width 2h of the residual stream; a multiple of 2*C (the blocks' inner width h is split
        into C colour groups too).
    num_blocks: residual blocks of one 3x3 mask-B convolution each.
    first_kernel / kernel_size: kernel of the mask-A input layer / of the blocks' masked convolution.
    output_channels: width of the two ReLU 1x1 output layers' hidden layer; a multiple of C.
    dropout: inside each residual branch, before its last 1x1 convolution (training only).
    condition_shape, condition_levels: the condition image y (C', h, w) with L' levels, h and w dividing
        H and W; None: unconditioned. condition_channels / condition_blocks: width and residual blocks
        of the conditioning network (``genzoo.nn.conditioning.ConditionNet``). condition_loss: weight of
        the conditioning network's own per-subpixel prediction in the training objective (0: none).
    """

    def __init__(
        self,
        image_shape,
        levels: int,
        channels: int = 96,
        num_blocks: int = 12,
        first_kernel: int = 7,
        kernel_size: int = 3,
        output_channels: int = 96,
        dropout: float = 0.0,
        condition_shape=None,
        condition_levels: int | None = None,
        condition_channels: int = 32,
        condition_blocks: int = 2,
        condition_loss: float = 0.0,
    ):
        super().__init__(image_shape, levels)
        c = self.image_shape[0]
        if channels < 2 * c or channels % (2 * c):
            raise ValueError(
                f"channels must be a positive multiple of 2*C = {2 * c} for {c} colour channel(s) "
                f"(the residual blocks split channels//2 features into {c} colour groups), got {channels}"
            )
        if output_channels < c or output_channels % c:
            raise ValueError(f"output_channels must be a positive multiple of C = {c}, got {output_channels}")
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        for name, k in (("first_kernel", first_kernel), ("kernel_size", kernel_size)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer, got {k}")
        self.params_per_subpixel = num_params(levels)
        self.input_conv = MaskedConv2d(c, channels, first_kernel, "A", c)
        self.blocks = nn.Sequential(*(ResidualBlock(channels, kernel_size, c, dropout) for _ in range(num_blocks)))
        self.output = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(channels, output_channels, 1, "B", c),
            nn.ReLU(),
            MaskedConv2d(output_channels, c * self.params_per_subpixel, 1, "B", c),
        )
        nn.init.zeros_(self.output[-1].weight)  # uniform initial prediction: loss = D ln(levels) nats
        nn.init.zeros_(self.output[-1].bias)
        if self.init_condition(condition_shape, condition_levels, condition_channels, condition_blocks):
            # one bias map of the residual stream per block input and one at the end
            self.condition_maps = nn.ModuleList(
                zero_projection(condition_channels, channels) for _ in range(num_blocks + 1)
            )
        if condition_loss < 0 or (condition_loss > 0 and self.condition_net is None):
            raise ValueError(f"condition_loss must be >= 0 and needs an image condition, got {condition_loss}")
        self.condition_loss = float(condition_loss)
        if self.condition_loss:
            self.condition_head = nn.Conv2d(condition_channels, c * self.params_per_subpixel, 1)

    def features(self, u: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The residual stream (N, channels, H, W) after the last block, from scaled float input ``u``.

        ``condition``: an optional map (N, channels, H, W), or broadcastable to it, that depends on no
        pixel of the image (e.g. a projection of a VAE's latent code); it is added to the stream before
        every residual block and after the last, which keeps every output causal in the image. A list
        of num_blocks + 1 such maps gives each of those places its own (``condition_terms``).
        """
        h = self.input_conv(u)
        if condition is None:
            return self.blocks(h)
        maps = condition if isinstance(condition, (list, tuple)) else [condition] * (len(self.blocks) + 1)
        for block, c in zip(self.blocks, maps):
            h = block(h + c)
        return h + maps[-1]

    def condition_terms(self, y: torch.Tensor | None) -> list[torch.Tensor] | None:
        """The num_blocks + 1 bias maps (N, channels, H, W) of validated condition images; None without."""
        features = self.condition_features(y)
        return None if features is None else self.project_condition(features)

    def project_condition(self, features: torch.Tensor) -> list[torch.Tensor]:
        """The num_blocks + 1 bias maps of conditioning features (N, condition_channels, H, W)."""
        return [project(features) for project in self.condition_maps]

    def network(self, u: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Logits in the base layout from float input ``u`` (N, C, H, W) (the scaled image).

        Separate from ``forward`` so that tests can differentiate with respect to the input.
        """
        return self.parameter_layout(self.output(self.features(u, condition)))

    def parameter_layout(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, C*K, H, W) output channels -> the base layout (N, C, H, W[, K])."""
        n, _, h, w = logits.shape
        # output channel c*K + k belongs to colour group c: (N, C, K, H, W) -> (N, C, H, W, K)
        logits = logits.reshape(n, self.image_shape[0], self.params_per_subpixel, h, w).permute(0, 1, 3, 4, 2)
        return logits.squeeze(-1) if self.params_per_subpixel == 1 else logits

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.network(symmetric_inputs(x, self.levels), self.condition_terms(y))

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        """``loss``, plus condition_loss times the head's NLL of x given y alone (module docstring)."""
        if not self.condition_loss:
            return super().training_loss(x, y, step)
        self.check_images(x)
        features = self.condition_features(self.check_labels(y, x.shape[0]))
        params = self.network(symmetric_inputs(x, self.levels), self.project_condition(features))
        head = self.parameter_layout(self.condition_head(features))
        nll = -self.pixel_log_prob(params, x).flatten(1).sum(1).mean()
        return nll - self.condition_loss * discrete_log_prob(head, x, self.levels).flatten(1).sum(1).mean()

    def sample_cached(self, x, known, y, generator):
        """Ancestral sampling at one position's cost per subpixel, from per-layer activation caches
        (``pixelcnn_sampling``); the same draws as ``sample_naive`` for the same generator."""
        return pixelcnn_sampling.sample_cached(self, x, known, generator, condition=self.condition_terms(y))
