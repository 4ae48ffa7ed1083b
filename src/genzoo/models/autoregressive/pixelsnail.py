"""PixelSNAIL [1]: gated residual blocks of causal convolutions interleaved with causal self-attention.

    u = x scaled to [-1, 1]
    s = masked conv A (u)                                          first_kernel x first_kernel
    num_blocks x:
        num_resnet x  s = GatedResidual(s)                         masked convs B, kernel_size
        a = CausalPixelAttention(queries from s, keys/values from [s, u])     every earlier pixel
        s = GatedResidual1x1(s, aux=a)                             mixes the attention read in
    raw = masked 1x1 B (ELU(s))  ->  per-subpixel distribution

GatedResidual: s + A * sigmoid(B), [A, B] = conv(dropout(ELU(conv(ELU(s)) [+ 1x1(ELU(aux))]))), the
gated residual unit of [1] (taken from PixelCNN++). Convolutions alone see a bounded, blind-spotted
neighbourhood; the attention blocks ([1], section 3, ``genzoo.nn.attention``) give every pixel the
whole past of the image, so after the first block the output at p depends on every earlier pixel.

Colour order (``output="categorical"``): every feature is split into C colour groups and every
convolution carries the mask of ``genzoo.nn.masked_conv`` (A on the input, B after), so group g at
pixel p depends on pixels before p and on colours < g of p. The attention reads strictly earlier pixels
only, with one query per colour group, so its output keeps the same property, and the output layer
gives colour c its logits from group c: softmax over the levels (Bernoulli logits for 2 levels).
``output="logistic"`` (levels > 2): one colour group, so the network sees strictly earlier pixels only,
and the colours of p enter through PixelCNN++'s discretized logistic mixture with coupled means
(``genzoo.nn.logistic_mixture``), as [1] does.

Initial loss: the categorical output layer starts at zero, so the initial prediction is uniform, D ln(levels)
nats exactly; the last convolution of every residual starts at a tenth of PyTorch's scale so that the
residual stream stays O(1).

Defaults are for 28x28 binarized MNIST (about 0.5M parameters): far smaller than [1]'s CIFAR-10 model
(256 filters, 12 attention blocks, one head with keys 16 and values 128, dropout 0.5), keeping [1]'s
small keys and a single head; 48 channels are a multiple of 3 so that the same defaults work for RGB.
Masked convolutions (not [1]'s shifted ones) let the cached sampler reuse ``IncrementalConv2d``; their
blind spot is covered by the attention, which sees every earlier pixel.

Image conditioning (``condition_shape``, ``condition_levels``: p(x | y), ``genzoo.nn.conditioning``):
every gated residual adds a zero-initialized 1x1 projection of the conditioning network's features
before its gate. They depend on no pixel of x, so the outputs stay causal; the cached sampler
projects them at each position.

Sampling: ``sample_cached`` keeps a cache of every convolution's input (``genzoo.nn.incremental``) and
every attention block's keys and values (``AttentionCache``): a subpixel costs one position of every
convolution plus one attention query against the t keys before it, and draws the same images as
``sample(naive=True)`` for the same generator (up to float rounding of the logits).

[1] X. Chen, N. Mishra, M. Rohaninejad, P. Abbeel. PixelSNAIL: An Improved Autoregressive Generative
    Model. ICML 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import AutoregressiveModel
from genzoo.nn import logistic_mixture as dmol
from genzoo.nn.attention import AttentionCache, CausalPixelAttention
from genzoo.nn.conditioning import ImageConditioned, zero_projection
from genzoo.nn.distributions import num_params, symmetric_inputs
from genzoo.nn.incremental import incremental_convs
from genzoo.nn.masked_conv import MaskedConv2d
from genzoo.nn.shifted_conv import pointwise


def full_conv(conv: nn.Module, value: torch.Tensor) -> torch.Tensor:
    """The convolution applied to whole images (``GatedResidual``'s default ``apply``)."""
    return conv(value)


class GatedResidual(nn.Module):
    """s + A * sigmoid(B) with colour-grouped masked convolutions (module docstring).

    ``apply(conv, value)`` evaluates a convolution: the module itself on whole images, or an
    ``IncrementalConv2d`` at one position (then ``s``, ``aux`` and ``c`` are (N, channels) vectors).
    ``c``: an optional conditioning term (N, 2 channels[, H, W]) added before the gate.
    """

    def __init__(self, channels: int, kernel_size: int, groups: int, dropout: float, aux_channels: int = 0):
        super().__init__()
        self.groups = groups
        self.conv_in = MaskedConv2d(channels, channels, kernel_size, "B", groups)
        self.aux = MaskedConv2d(aux_channels, channels, 1, "B", groups) if aux_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = MaskedConv2d(channels, 2 * channels, kernel_size, "B", groups)
        with torch.no_grad():
            self.conv_out.weight.mul_(0.1)
            self.conv_out.bias.zero_()

    def forward(self, s: torch.Tensor, aux: torch.Tensor | None = None, apply=full_conv, c=None) -> torch.Tensor:
        h = apply(self.conv_in, F.elu(s))
        if self.aux is not None:
            h = h + apply(self.aux, F.elu(aux))
        out = apply(self.conv_out, self.dropout(F.elu(h)))
        if c is not None:
            out = out + c
        # each colour group of the output holds [A_g, B_g]: split within groups so gating never mixes them
        a, b = out.unflatten(1, (self.groups, 2, -1)).unbind(2)
        return s + (a * torch.sigmoid(b)).flatten(1, 2)


class SnailBlock(nn.Module):
    """``num_resnet`` gated residuals, one causal attention over [features, image], one 1x1 gated mix."""

    def __init__(
        self,
        channels: int,
        image_channels: int,
        num_resnet: int,
        kernel_size: int,
        groups: int,
        heads: int,
        key_channels: int,
        value_channels: int,
        dropout: float,
    ):
        super().__init__()
        self.residuals = nn.ModuleList(GatedResidual(channels, kernel_size, groups, dropout) for _ in range(num_resnet))
        self.attention = CausalPixelAttention(
            channels, channels + image_channels, key_channels, value_channels, heads, groups
        )
        self.mix = GatedResidual(channels, 1, groups, dropout, aux_channels=self.attention.out_channels)

    def forward(self, s: torch.Tensor, u: torch.Tensor, terms=None) -> torch.Tensor:
        """``terms``: the conditioning terms of the residuals and of the mix (a list), or None."""
        terms = terms or [None] * (len(self.residuals) + 1)
        for residual, c in zip(self.residuals, terms):
            s = residual(s, c=c)
        return self.mix(s, self.attention(s, torch.cat([s, u], 1)), c=terms[-1])


class PixelSNAIL(ImageConditioned, AutoregressiveModel):
    """PixelSNAIL over (C, H, W) images with ``levels`` values per subpixel.

    channels: width of the residual stream; for ``output="categorical"`` a multiple of C (colour groups).
    num_blocks: attention blocks, each after ``num_resnet`` gated residuals of two masked convolutions.
    attention_heads, key_channels, value_channels: heads of each attention block, and the key and value
        width of each head ([1]: one head, keys 16, values 128).
    kernel_size / first_kernel: kernel of the residuals' mask-B convolutions / of the mask-A input layer.
    dropout: inside every gated residual (training only).
    output: "categorical" (softmax over levels; Bernoulli for 2 levels) or "logistic" (levels > 2:
        discretized logistic mixture of ``num_mixtures`` components, as in [1]).
    condition_shape, condition_levels, condition_channels, condition_blocks: an image condition y
        (C', h, w) with L' levels; see ``genzoo.nn.conditioning``. None: unconditioned.
    """

    def __init__(
        self,
        image_shape,
        levels: int,
        channels: int = 48,
        num_blocks: int = 4,
        num_resnet: int = 2,
        attention_heads: int = 1,
        key_channels: int = 16,
        value_channels: int = 32,
        kernel_size: int = 3,
        first_kernel: int = 5,
        dropout: float = 0.0,
        output: str = "categorical",
        num_mixtures: int = 5,
        condition_shape=None,
        condition_levels: int | None = None,
        condition_channels: int = 32,
        condition_blocks: int = 2,
    ):
        super().__init__(image_shape, levels)
        c = self.image_shape[0]
        if output not in ("categorical", "logistic"):
            raise ValueError(f"output must be 'categorical' or 'logistic', got {output!r}")
        if output == "logistic" and self.levels == 2:
            raise ValueError("output='logistic' needs levels > 2; binary data uses 'categorical' (Bernoulli)")
        groups = c if output == "categorical" else 1
        if channels < groups or channels % groups:
            raise ValueError(
                f"channels must be a positive multiple of C = {groups} for {c} colour channels "
                f"(features are split into colour groups for the R -> G -> B order), got {channels}"
            )
        for name, n, least in (
            ("num_blocks", num_blocks, 1),
            ("num_resnet", num_resnet, 0),
            ("attention_heads", attention_heads, 1),
            ("key_channels", key_channels, 1),
            ("value_channels", value_channels, 1),
            ("num_mixtures", num_mixtures, 1),
        ):
            if n < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {n}")
        for name, k in (("first_kernel", first_kernel), ("kernel_size", kernel_size)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer, got {k}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.output_type, self.num_mixtures = output, num_mixtures
        self.params_per_subpixel = num_params(levels)
        self.input_conv = MaskedConv2d(c, channels, first_kernel, "A", groups)
        self.blocks = nn.ModuleList(
            SnailBlock(
                channels, c, num_resnet, kernel_size, groups, attention_heads, key_channels, value_channels, dropout
            )
            for _ in range(num_blocks)
        )
        raw = c * self.params_per_subpixel if output == "categorical" else dmol.raw_size(c, num_mixtures)
        self.output = MaskedConv2d(channels, raw, 1, "B", groups)
        self._init_output()
        if self.init_condition(condition_shape, condition_levels, condition_channels, condition_blocks):
            # one term per gated residual: every block's residuals, then its mix
            self.condition_maps = nn.ModuleList(
                nn.ModuleList(zero_projection(condition_channels, 2 * channels) for _ in range(num_resnet + 1))
                for _ in range(num_blocks)
            )

    def _init_output(self) -> None:
        """Zero weights: uniform categorical prediction; broad, distinct logistic components (as PixelCNN++)."""
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        if self.output_type == "logistic":
            c, k = self.image_shape[0], self.num_mixtures
            with torch.no_grad():
                self.output.bias[k : k + c * k] = (0.3 * ((2 * torch.arange(k) + 1) / k - 1)).repeat(c)
                self.output.bias[k + c * k : k + 2 * c * k] = -1.0

    def network(self, u: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Raw output (N, raw, H, W) from the scaled image ``u`` (N, C, H, W) in [-1, 1].

        ``features``: an image condition's features (N, F, H, W) (``condition_features``), or None.
        Categorical: channel c*K + k is logit k of colour c. Separate from ``forward`` so that tests
        can differentiate with respect to the input.
        """
        s = self.input_conv(u)
        for k, block in enumerate(self.blocks):
            terms = None if features is None else [project(features) for project in self.condition_maps[k]]
            s = block(s, u, terms)
        return self.output(F.elu(s))

    def distribution_params(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-subpixel parameters (N, C, H, W[, K]) from the raw output and the image."""
        if self.output_type == "logistic":
            return dmol.conditional_params(raw, x, self.levels, self.num_mixtures)
        n, _, h, w = raw.shape
        logits = raw.reshape(n, self.image_shape[0], self.params_per_subpixel, h, w).permute(0, 1, 3, 4, 2)
        return logits.squeeze(-1) if self.params_per_subpixel == 1 else logits

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        v = symmetric_inputs(x, self.levels)
        return self.distribution_params(self.network(v, self.condition_features(y)), x)

    def pixel_log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.output_type == "logistic":
            return dmol.mixture_log_prob(params, x, self.levels)
        return super().pixel_log_prob(params, x)

    def pixel_sample(self, params, index, x, generator):
        if self.output_type == "logistic":
            c, h, w = index
            return dmol.mixture_sample(params[:, c, h, w], self.levels, generator)
        return super().pixel_sample(params, index, x, generator)

    def sample_cached(self, x, known, y, generator):
        """Ancestral sampling with cached convolutions and attention keys/values (module docstring).

        Visits the subpixels in ``ordering()``, skips those known in every image and draws with
        ``pixel_sample`` on the single pixel's parameters, so it consumes the generator exactly as
        ``sample_naive`` does. Dropout acts per position: sample in eval mode.
        """
        if not torch.equal(self.ordering(), AutoregressiveModel.ordering(self)):
            raise ValueError("cached PixelSNAIL sampling needs the raster ordering with the colours innermost")
        channels, height, width = self.image_shape
        stepper = PixelSNAILStepper(self, x, self.condition_features(y))
        # group g's features at a pixel read its colours < g: all are final once evaluated at colour >= last_group
        last_group = self.input_conv.color_groups - 1
        for i in range(height):
            for j in range(width):
                raw, evaluated = None, -1  # colour at which the pixel was last evaluated
                for c in range(channels):
                    keep = known[:, c, i, j]
                    if bool(keep.all()):
                        continue
                    if raw is None or self.input_conv.color_groups > 1:  # one group: raw ignores this pixel
                        raw, evaluated = stepper.raw(i, j), c
                    params = self.distribution_params(raw[:, :, None, None], x[:, :, i : i + 1, j : j + 1])
                    drawn = self.pixel_sample(params, (c, 0, 0), x, generator)
                    x[:, c, i, j] = torch.where(keep, x[:, c, i, j], drawn)
                if evaluated < last_group:  # some colours were known: complete the features with them
                    stepper.raw(i, j)
                stepper.finish(i, j)
        return x


class PixelSNAILStepper:
    """A PixelSNAIL evaluated position by position on the images ``x``, read at each step.

    ``raw(i, j)``: the raw output (N, raw) at (i, j), writing its activations into the caches; call it in
    raster order after the colours it should condition on are in ``x``. ``finish(i, j)``: once every
    colour of (i, j) is in ``x`` and the last ``raw(i, j)`` saw all but its last colour, stores the pixel's
    input and its attention keys and values, so that later pixels can read it.
    ``features``: an image condition's features (N, F, H, W), projected at each position, or None.
    """

    def __init__(self, model: PixelSNAIL, x: torch.Tensor, features: torch.Tensor | None = None):
        self.model, self.x = model, x
        self.features = None if features is None else features.permute(0, 2, 3, 1).contiguous()
        n, _, h, w = x.shape
        self.convs = incremental_convs(model, n, h, w)
        self.attention = [AttentionCache(block.attention, n, h, w) for block in model.blocks]
        self.contexts: list[torch.Tensor] = []  # each block's attention-input features at the last position

    def input_at(self, i: int, j: int) -> torch.Tensor:
        return symmetric_inputs(self.x[:, :, i, j], self.model.levels)

    def raw(self, i: int, j: int) -> torch.Tensor:
        def apply(conv, value):
            return self.convs[conv].step(value, i, j)

        s = apply(self.model.input_conv, self.input_at(i, j))
        self.contexts = []
        for k, (block, cache) in enumerate(zip(self.model.blocks, self.attention)):
            terms = [None] * (len(block.residuals) + 1)
            if self.features is not None:
                terms = [pointwise(project, self.features[:, i, j]) for project in self.model.condition_maps[k]]
            for residual, c in zip(block.residuals, terms):
                s = residual(s, apply=apply, c=c)
            self.contexts.append(s)
            s = block.mix(s, cache.read(s, i, j), apply=apply, c=terms[-1])
        return apply(self.model.output, F.elu(s))

    def finish(self, i: int, j: int) -> None:
        u = self.input_at(i, j)
        self.convs[self.model.input_conv].store(u, i, j)
        for cache, s in zip(self.attention, self.contexts):
            cache.append(torch.cat([s, u], 1), i, j)
