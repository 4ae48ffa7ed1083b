"""Conditioning an image model on another image: a low-resolution version (super-resolution) or the
luminance (colorization) [1][2][3].

A conditioning network reads the condition ``y`` and gives feature maps at the resolution of the image
``x`` being modelled; every layer of the autoregressive model then adds a learned 1x1 projection of
them to its pre-activations, as the Gated PixelCNN adds its class embedding ([1], eq. 4; the spatial
form V * m(s) of eq. 5), and as the pixel-recursive super-resolution model adds a conditioning
network's output to a PixelCNN prior's ([2]; here inside every layer rather than at the logits only)::

    y (N, C', h, w) integers in [0, L')  ->  scaled to [-1, 1]
    3x3 conv C' -> F, ``blocks`` residual blocks at (h, w)          most of the work, at the low resolution
    nearest up-sampling by the integer factors (H / h, W / w)        (identity for colorization)
    3x3 conv F -> F, one residual block at (H, W)                    features (N, F, H, W)

The features depend on ``y`` only, never on ``x``: whatever a layer adds from them, every output stays
causal in ``x``, and the model is a normalized distribution p(x | y) for every ``y`` (tested by
enumeration). Each projection starts at zero, so training starts from the unconditional model.

The condition travels as the ``y`` argument of ``loss``, ``log_prob`` and ``sample`` (``check_condition``
validates it at the boundary); a model is built image-conditioned by its constructor options
``condition_shape=[C', h, w]`` and ``condition_levels=L'`` (recorded in its config like every option).

[1] A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu. Conditional
    Image Generation with PixelCNN Decoders. NeurIPS 2016.
[2] R. Dahl, M. Norouzi, J. Shlens. Pixel Recursive Super Resolution. ICCV 2017.
[3] S. Guadarrama, R. Dahl, D. Bieber, M. Norouzi, J. Shlens, K. Murphy. PixColor: Pixel Recursive
    Colorization. BMVC 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn.distributions import symmetric_inputs


def check_condition_options(image_shape, condition_shape, condition_levels) -> tuple | None:
    """Validate the constructor options; returns condition_shape as a tuple (None: unconditioned)."""
    if condition_shape is None and condition_levels is None:
        return None
    if condition_shape is None or condition_levels is None:
        raise ValueError("give both condition_shape=[C', h, w] and condition_levels, or neither")
    shape = tuple(int(s) for s in condition_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"condition_shape must be [C', h, w] with positive sizes, got {list(condition_shape)}")
    _, height, width = image_shape
    if height % shape[1] or width % shape[2]:
        raise ValueError(
            f"the condition's height and width {shape[1:]} must divide the image's {(height, width)} "
            "(integer up-sampling factors)"
        )
    if int(condition_levels) < 2:
        raise ValueError(f"condition_levels must be >= 2, got {condition_levels}")
    return shape


def check_condition(y, n: int, shape: tuple, levels: int, device=None) -> torch.Tensor:
    """``y`` as a LongTensor (n, *shape) on ``device``, or ValueError saying what was expected.

    Accepted: integer images (n, C', h, w), or one condition (C', h, w) or (1, C', h, w) repeated n times.
    """
    expected = f"condition images y: integers of shape (N, {', '.join(map(str, shape))}) in [0, {levels})"
    if y is None:
        raise ValueError(f"the model is image-conditioned: pass {expected}")
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"expected {expected}, got {type(y).__name__} of dtype {getattr(y, 'dtype', None)}")
    if tuple(y.shape) == tuple(shape):
        y = y[None]
    if y.dim() != 4 or tuple(y.shape[1:]) != tuple(shape) or y.shape[0] not in (1, n):
        raise ValueError(f"expected {expected} with N = {n} (or 1), got shape {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= levels):
        raise ValueError(f"expected {expected}, got values in [{int(y.min())}, {int(y.max())}]")
    return y.to(device=device, dtype=torch.long).expand(n, *shape)


class Residual(nn.Module):
    """x + conv3x3(ReLU(conv3x3(ReLU(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConditionNet(nn.Module):
    """Condition images (N, C', h, w) in [0, levels) -> features (N, channels, H, W) (module docstring)."""

    def __init__(self, condition_shape, levels: int, image_size, channels: int = 32, blocks: int = 2):
        super().__init__()
        c, h, w = (int(s) for s in condition_shape)
        height, width = (int(s) for s in image_size)
        if height % h or width % w:
            raise ValueError(f"image size {(height, width)} is not an integer multiple of {(h, w)}")
        if channels < 1 or blocks < 0:
            raise ValueError(f"condition_channels must be >= 1 and condition_blocks >= 0, got {channels}, {blocks}")
        self.levels, self.scale, self.out_channels = int(levels), (height // h, width // w), channels
        self.low = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), *(Residual(channels) for _ in range(blocks)))
        self.high = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), Residual(channels))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        f = self.low(symmetric_inputs(y, self.levels))
        if self.scale != (1, 1):
            f = f.repeat_interleave(self.scale[0], 2).repeat_interleave(self.scale[1], 3)
        return self.high(f)


def zero_projection(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 convolution starting at zero: the conditional model starts as the unconditional one."""
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def downsampled(features: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``features`` at ``levels`` resolutions, each the 2x2 average of the last (sizes rounded up)."""
    out = [features]
    for _ in range(levels - 1):
        out.append(F.avg_pool2d(out[-1], 2, ceil_mode=True))
    return out


class ImageConditioned:
    """Mixin for a model with an optional image condition: builds the ``ConditionNet`` and validates ``y``.

    Put it before the model's base class (``class PixelCNN(ImageConditioned, AutoregressiveModel)``) and
    call ``init_condition`` in the constructor. When the model is image-conditioned, ``check_labels``
    (which ``log_prob`` and ``sample`` call on ``y``) validates condition images instead of class labels;
    ``condition_shape`` is None for an unconditioned model. ``conditional`` (class labels) stays False.
    """

    condition_shape: tuple[int, int, int] | None = None
    condition_levels: int | None = None

    def init_condition(self, condition_shape, condition_levels, channels: int, blocks: int) -> ConditionNet | None:
        shape = check_condition_options(self.image_shape, condition_shape, condition_levels)
        self.condition_net = None
        if shape is not None:
            if self.num_classes is not None:
                raise ValueError("a model is conditioned on class labels or on an image, not both")
            self.condition_shape, self.condition_levels = shape, int(condition_levels)
            self.condition_net = ConditionNet(shape, condition_levels, self.image_shape[1:], channels, blocks)
        return self.condition_net

    def condition_features(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The conditioning network's features (N, F, H, W) of validated condition images, or None."""
        return None if self.condition_net is None or y is None else self.condition_net(y)

    def check_labels(self, y, n: int):
        if self.condition_shape is not None:
            return check_condition(y, n, self.condition_shape, self.condition_levels, self.device)
        return super().check_labels(y, n)
