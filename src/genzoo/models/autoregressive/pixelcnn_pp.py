"""PixelCNN++ [1]: shifted-convolution streams over several resolutions, discretized logistic mixtures.

    x (scaled to [-1, 1], plus a channel of ones that marks the zero padding)
    u  = down_shift(DownShifted 2x3 (x))                                   rows above
    ul = down_shift(DownShifted 1x3 (x)) + right_shift(DownRightShifted 2x1 (x))   pixels before
    up pass, at every resolution s = 0..S-1:   [stride-2 shifted conv if s > 0]
        num_resnet x (u = GatedResNet(u);  ul = GatedResNet(ul, skip=u))     every output kept
    down pass, s = S-1..0:  [transposed shifted conv if s < S-1]
        num_resnet (+1 if s < S-1) x (u = GatedResNet(u, skip=kept u); ul = GatedResNet(ul, skip=[u, kept ul]))
    raw = 1x1(elu(ul))  ->  per-subpixel distributions

The down pass consumes the kept up-pass outputs in reverse, one per block (the shortcuts of [1],
section 2.5 and figure 2). Stride-2 layers round sizes up, so any H, W works (1 x 1 stays 1 x 1); the
layers are drawn in ``genzoo.nn.shifted_conv``. The raw output at pixel p depends only on pixels before
p in raster order; the colours of p enter through the distribution (``genzoo.nn.logistic_mixture``):
``forward`` returns one 1-D mixture per subpixel, (N, C, H, W, 3K), where G's and B's already include the
coupling to the same pixel's earlier colours, so every subpixel's parameters depend only on subpixels
before it in ``ordering()`` (raster, channels innermost). For 2 levels the output is a Bernoulli logit
per subpixel instead (N, C, H, W), with the same linear coupling to earlier channels of the pixel.

Initial loss: the output layer starts with zero weights and biases that make every subpixel a broad
logistic mixture (means spread over [-0.3, 0.3], scales 1/e; spread so that the components are not
identical, or they would never separate): about 1.035 x D ln(levels) nats on uniform data (256 levels,
RGB too), exactly D ln 2 for binary.
No data-dependent initialization; ``weight_norm=True`` reparametrizes every convolution but the output
layer as in [1]. EMA of the weights (used by [1] for evaluation) is the trainer's job.

Sampling: ``sample_cached`` computes each layer only at the positions a new pixel adds (the caching
of [2], per position, ``raw_by_pixel``): the u stream a row at a time, when a row of its resolution
begins, the ul stream one position per pixel (at resolution s, once per 2^s x 2^s block), so a pixel
costs about a full pass divided by H W. ``sample_naive`` (inherited) runs one ordinary full pass per
subpixel; the two give the same images unless float rounding flips a draw. Measured with
benchmarks/sample_speed.py on 1 CPU thread, 64 images of a trained 8x8, 17-level model (default
options, 8.6M parameters): 1.0 s cached, 32 s naive (31x), identical images.

Image conditioning (``condition_shape``, ``condition_levels``: p(x | y) for super-resolution or
colorization): a conditioning network (``genzoo.nn.conditioning``) gives features at full resolution,
2x2-averaged down to every coarser one; every gated resnet block adds a zero-initialized 1x1
projection of the features at its resolution before its gate. They depend on no pixel of x: the
streams stay causal. The cached sampler projects them at the positions it computes.

Defaults are for 28x28 data (64 filters); [1] uses channels=160, num_resnet=5, num_mixtures=10,
dropout=0.5 for CIFAR-10 (2.92 bits/dim).

[1] T. Salimans, A. Karpathy, X. Chen, D. P. Kingma. PixelCNN++: Improving the PixelCNN with
    Discretized Logistic Mixture Likelihood and Other Modifications. ICLR 2017.
[2] P. Ramachandran, T. L. Paine, P. Khorrami, et al. Fast Generation for Convolutional Autoregressive
    Models. ICLR workshop 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from genzoo.models.base import AutoregressiveModel, sized_default
from genzoo.nn import logistic_mixture as dmol
from genzoo.nn.conditioning import ImageConditioned, downsampled, zero_projection
from genzoo.nn.distributions import discrete_log_prob, discrete_sample, symmetric_inputs
from genzoo.nn.shifted_conv import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    GatedResNet,
    Span,
    StepCache,
    down_shift,
    pointwise,
    right_shift,
)


class PixelCNNPlusPlus(ImageConditioned, AutoregressiveModel):
    """PixelCNN++ over (C, H, W) images with ``levels`` values per subpixel.

    channels: filters of every layer (160 in [1] for CIFAR-10); None: 24 for images of at most 16x16
        pixels (the 8x8 digits train at interactive speed), else 64.
    num_resnet: gated resnet blocks per resolution in the up pass (the down pass has one more from the
        second resolution on, [1]); None: 1 for small images, else 5 as in [1].
    num_mixtures: logistic components K (ignored for 2 levels: Bernoulli output); None: 5 for small
        images, else 10 as in [1].
    dropout: inside every gated resnet block (training only).
    num_resolutions: 1 keeps full resolution; each further one halves H and W (rounding up); None: 2 for
        small images, else 3 as in [1].
    weight_norm: weight normalization [1] of the convolutions (without data-dependent init).
    condition_shape, condition_levels, condition_channels, condition_blocks: an image condition y
        (C', h, w) with L' levels; see ``genzoo.nn.conditioning``. None: unconditioned.
    """

    def __init__(
        self,
        image_shape,
        levels: int,
        channels: int | None = None,
        num_resnet: int | None = None,
        num_mixtures: int | None = None,
        dropout: float = 0.5,
        num_resolutions: int | None = None,
        weight_norm: bool = False,
        condition_shape=None,
        condition_levels: int | None = None,
        condition_channels: int = 32,
        condition_blocks: int = 2,
    ):
        super().__init__(image_shape, levels)
        c = self.image_shape[0]
        channels = sized_default(channels, self.image_shape, 24, 64)
        num_resnet = sized_default(num_resnet, self.image_shape, 1, 5)
        num_mixtures = sized_default(num_mixtures, self.image_shape, 5, 10)
        num_resolutions = sized_default(num_resolutions, self.image_shape, 2, 3)
        for name, value, low in (
            ("channels", channels, 1),
            ("num_resnet", num_resnet, 0),
            ("num_mixtures", num_mixtures, 1),
            ("num_resolutions", num_resolutions, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_mixtures, self.num_resolutions = num_mixtures, num_resolutions
        f = channels
        self.input_u = DownShiftedConv2d(c + 1, f, (2, 3))
        self.input_ul_above = DownShiftedConv2d(c + 1, f, (1, 3))
        self.input_ul_left = DownRightShiftedConv2d(c + 1, f, (2, 1))

        def blocks(count, u_skip, ul_skip):
            return nn.ModuleList(
                nn.ModuleList(
                    [
                        GatedResNet(f, DownShiftedConv2d, u_skip, dropout),
                        GatedResNet(f, DownRightShiftedConv2d, ul_skip, dropout),
                    ]
                )
                for _ in range(count)
            )

        self.up = nn.ModuleList(blocks(num_resnet, 0, f) for _ in range(num_resolutions))
        self.down = nn.ModuleList(
            blocks(num_resnet + (s < num_resolutions - 1), f, 2 * f) for s in range(num_resolutions)
        )
        self.downsample = nn.ModuleList(
            nn.ModuleList([DownShiftedConv2d(f, f, (2, 3), stride=2), DownRightShiftedConv2d(f, f, (2, 2), stride=2)])
            for _ in range(num_resolutions - 1)
        )
        self.upsample = nn.ModuleList(
            nn.ModuleList([DownShiftedConvTranspose2d(f, f), DownRightShiftedConvTranspose2d(f, f)])
            for _ in range(num_resolutions - 1)
        )
        if weight_norm:
            for module in self.modules():
                if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                    nn.utils.parametrizations.weight_norm(module, dim=int(isinstance(module, nn.ConvTranspose2d)))
        raw = c + dmol.num_pairs(c) if levels == 2 else dmol.raw_size(c, num_mixtures)
        self.output = nn.Conv2d(f, raw, 1)
        self._init_output()
        if self.init_condition(condition_shape, condition_levels, condition_channels, condition_blocks):
            blocks = [block for part in (self.up, self.down) for stage in part for pair in stage for block in pair]
            self._block_index = {block: i for i, block in enumerate(blocks)}  # a plain dict: not submodules
            self.condition_maps = nn.ModuleList(zero_projection(condition_channels, 2 * f) for _ in blocks)

    def _init_output(self) -> None:
        """Zero weights; biases giving a near-uniform prediction (see the module docstring)."""
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        if self.levels > 2:
            c, k = self.image_shape[0], self.num_mixtures
            with torch.no_grad():
                centres = 0.3 * ((2 * torch.arange(k) + 1) / k - 1)  # distinct, or they never separate
                self.output.bias[k : k + c * k] = centres.repeat(c)
                self.output.bias[k + c * k : k + 2 * c * k] = -1.0

    def _condition(self, block: nn.Module, features, s: int):
        """The conditioning term of gated resnet ``block`` at resolution ``s`` (None if unconditioned)."""
        return None if features is None else self.condition_maps[self._block_index[block]](features[s])

    def network(self, v: torch.Tensor, features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Raw output (N, raw, H, W) from the scaled image ``v`` (N, C, H, W) in [-1, 1].

        ``features``: an image condition's features at every resolution (``condition_pyramid``), or None.
        Separate from ``forward`` so that tests can differentiate with respect to the input.
        """
        v = torch.cat([v, torch.ones_like(v[:, :1])], 1)
        u = down_shift(self.input_u(v))
        ul = down_shift(self.input_ul_above(v)) + right_shift(self.input_ul_left(v))
        kept = [(u, ul)]
        for s, stage in enumerate(self.up):
            if s > 0:
                u, ul = (conv(t) for conv, t in zip(self.downsample[s - 1], (u, ul)))
                kept.append((u, ul))
            for u_block, ul_block in stage:
                u = u_block(u, None, self._condition(u_block, features, s))
                ul = ul_block(ul, u, self._condition(ul_block, features, s))
                kept.append((u, ul))
        u, ul = kept.pop()
        for s in reversed(range(self.num_resolutions)):
            if s < self.num_resolutions - 1:
                size = kept[-1][0].shape[-2:]
                u, ul = (conv(t, size) for conv, t in zip(self.upsample[s], (u, ul)))
            for u_block, ul_block in self.down[s]:
                u_kept, ul_kept = kept.pop()
                u = u_block(u, u_kept, self._condition(u_block, features, s))
                ul = ul_block(ul, torch.cat([u, ul_kept], 1), self._condition(ul_block, features, s))
        return self.output(F.elu(ul))

    def distribution_params(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-subpixel parameters from the raw output and the image (couples a pixel's colours)."""
        if self.levels > 2:
            return dmol.conditional_params(raw, x, self.levels, self.num_mixtures)
        c = self.image_shape[0]
        raw = raw.float().permute(0, 2, 3, 1)[..., None]  # (N, H, W, raw, 1)
        v = symmetric_inputs(x, self.levels).permute(0, 2, 3, 1)
        logits = dmol.couple_channels(raw[..., :c, :], raw[..., c:, :], v)  # (N, H, W, C, 1)
        return logits[..., 0].permute(0, 3, 1, 2)

    def condition_pyramid(self, y: torch.Tensor | None) -> list[torch.Tensor] | None:
        """The conditioning features (N, F, H_s, W_s) at every resolution s, or None without a condition."""
        features = self.condition_features(y)
        return None if features is None else downsampled(features, self.num_resolutions)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        v = symmetric_inputs(x, self.levels)
        return self.distribution_params(self.network(v, self.condition_pyramid(y)), x)

    def pixel_log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.levels == 2:
            return discrete_log_prob(params, x, 2)
        return dmol.mixture_log_prob(params, x, self.levels)

    def pixel_sample(self, params, index, x, generator):
        c, h, w = index
        if self.levels == 2:
            return discrete_sample(params[:, c, h, w], 2, generator)
        return dmol.mixture_sample(params[:, c, h, w], self.levels, generator)

    def sample_cached(self, x, known, y, generator):
        """Ancestral sampling that computes every layer at the new positions only, pixel by pixel [2].

        ``raw_by_pixel`` gives the raw output at each pixel in turn; the pixel's colours are then
        visited, skipped when known and drawn as in ``sample_naive``, from the same generator. The naive
        sampler takes the raw outputs from full passes instead (``forward``, as ``log_prob`` does),
        equal up to float rounding (other summation orders): the images are the same unless a draw
        falls within rounding error of a boundary between two values. Call ``eval()`` first: dropout
        would draw from the global generator.
        """
        pyramid = self.condition_pyramid(y)
        with parametrize.cached():  # weight-normalized weights computed once, not at every position
            for r, col, raw in self.raw_by_pixel(x, pyramid):
                for ch in range(x.shape[1]):
                    keep = known[:, ch, r, col]
                    if bool(keep.all()):
                        continue
                    params = self.distribution_params(raw, x[:, :, r : r + 1, col : col + 1])
                    drawn = self.pixel_sample(params, (ch, 0, 0), x, generator)
                    x[:, ch, r, col] = torch.where(keep, x[:, ch, r, col], drawn)
        return x

    def raw_by_pixel(self, x: torch.Tensor, pyramid: list[torch.Tensor] | None = None):
        """Yield (r, c, raw output (N, raw, 1, 1) at pixel (r, c)) for every pixel in raster order.

        ``pyramid``: an image condition's features per resolution (``condition_pyramid``), or None.

        ``network``, computed incrementally: pixel (r, c) of ``x`` is read when the next pixel is asked
        for, so it may be filled in meanwhile (sampling). Every layer stores its inputs in a
        ``StepCache`` and computes its outputs from the windows stored there:

        - u (rows above only): row i of resolution s once, for the whole row, when image row 2^s i
          begins; its rows i - 1 and i read image rows < 2^s i.
        - ul (pixels before): position (i, j) of resolution s once, when sampling reaches pixel
          (2^s i, 2^s j), the first of its 2^s x 2^s block: stride-2 layers read the finer positions
          (2i - 1..2i, 2j - 1..2j), the last of which is computed just before, at the same pixel;
          the 2x2 layers read (i - 1..i, j - 1..j), the input layers the row above and the column
          to the left; up-sampling reads (i // 2, j // 2), made at the same pixel or earlier. So the
          position depends only on pixels before (2^s i, 2^s j).

        A pixel costs one position of every ul layer, plus a row of the u layers per row: about a full
        pass's work divided by H W.
        """
        n, _, height, width = x.shape
        condition = None if pyramid is None else [f.permute(0, 2, 3, 1).contiguous() for f in pyramid]
        cache, u_values = StepCache(height, width, condition), {}
        zeros = self.output.weight.new_zeros(n, width, self.input_u.out_channels)  # what the shifts bring in
        for r in range(height):
            u_values.update(enumerate(self._u_row(cache, r, zeros)))
            for c in range(width):
                yield r, c, self._ul_position(cache, r, c, zeros[:, :1], u_values)
                self._store_pixel(cache, x, r, c)

    def _u_row(self, cache: StepCache, r: int, zeros: torch.Tensor) -> list[list[torch.Tensor]]:
        """The u stream along the rows starting at image row r; per resolution, its blocks' outputs."""
        u = zeros if r == 0 else self.input_u.at(cache, Span(0, r - 1, 0, cache.width))  # down_shift
        spans = [Span(s, r >> s, 0, cache.size(s)[1]) for s in self._levels_starting_at(r, 0)]
        return self._stream(cache, spans, 0, u)

    def _ul_position(self, cache: StepCache, r: int, c: int, zeros: torch.Tensor, u_values) -> torch.Tensor:
        """Raw output (N, raw, 1, 1) at pixel (r, c): the ul stream at the positions starting there."""
        ul = zeros
        if r > 0:  # down_shift
            ul = ul + self.input_ul_above.at(cache, Span(0, r - 1, c, c + 1))
        if c > 0:  # right_shift
            ul = ul + self.input_ul_left.at(cache, Span(0, r, c - 1, c))
        spans = [Span(s, r >> s, c >> s, (c >> s) + 1) for s in self._levels_starting_at(r, c)]
        ul = self._stream(cache, spans, 1, ul, u_values)[0][-1]
        return pointwise(self.output, F.elu(ul)).permute(0, 2, 1)[..., None]

    def _levels_starting_at(self, r: int, c: int) -> range:
        """Resolutions s whose position (r >> s, c >> s) starts at image position (r, c)."""
        s = 1
        while s < self.num_resolutions and r % 2**s == 0 and c % 2**s == 0:
            s += 1
        return range(s)

    def _stream(self, cache: StepCache, spans: list[Span], stream: int, h, u_values=None):
        """``network``'s stream ``stream`` (0: u, 1: ul) at ``spans``, one per resolution 0, 1, ...

        ``h`` is the stream's (shifted) input at spans[0]. Returns every block's output per resolution,
        up pass then down pass. For ul, ``u_values`` maps each resolution to that result of the u
        stream (whole rows): the k-th is (part of) the skip input of ul's k-th block there. The first
        resolution not in ``spans`` enters the down pass through its up-sampling layer's stored input.
        """
        top = self.num_resolutions - 1
        kept, made = [], []
        for s, span in enumerate(spans):
            if s > 0:
                h = self.downsample[s - 1][stream].at(cache, span)
            kept.append([h])
            made.append([])
            for pair in self.up[s]:
                skip = None if u_values is None else u_values[s][len(made[s])][:, span.start : span.stop]
                h = pair[stream].step(cache, span, h, skip, self._span_condition(cache, pair[stream], span))
                kept[s].append(h)
                made[s].append(h)
            if s < top:
                self.downsample[s][stream].store(cache, span, h)
        for s in reversed(range(len(spans))):
            span = spans[s]
            h = kept[s].pop() if s == top else self.upsample[s][stream].at(cache, span)
            for pair in self.down[s]:
                skip = kept[s].pop()
                if u_values is not None:
                    skip = torch.cat([u_values[s][len(made[s])][:, span.start : span.stop], skip], -1)
                h = pair[stream].step(cache, span, h, skip, self._span_condition(cache, pair[stream], span))
                made[s].append(h)
            if s > 0:
                self.upsample[s - 1][stream].store(cache, span, h)
        return made

    def _span_condition(self, cache: StepCache, block: nn.Module, span: Span) -> torch.Tensor | None:
        """``_condition`` at ``span`` only, channels last (N, L, 2 channels)."""
        if cache.condition is None:
            return None
        features = cache.condition[span.level][:, span.row, span.start : span.stop]
        return pointwise(self.condition_maps[self._block_index[block]], features)

    def _store_pixel(self, cache: StepCache, x: torch.Tensor, r: int, c: int) -> None:
        """Pixel (r, c) of ``x``, scaled and with its channel of ones, as the input layers' input."""
        v = symmetric_inputs(x[:, :, r, c], self.levels)
        v = torch.cat([v, torch.ones_like(v[:, :1])], 1)[:, None]
        for conv in (self.input_u, self.input_ul_above, self.input_ul_left):
            conv.store(cache, Span(0, r, c, c + 1), v)
