"""Decoders p(x | z) beyond independent subpixels, and reading images off a decoder.

``PixelCNNDecoder`` (PixelVAE-style [1]): p(x | z) = prod_i p(x_i | x_<i, z), a PixelCNN
(``genzoo.models.autoregressive.pixelcnn``, reused by composition) whose residual stream receives a
map m(z) of shape (channels, H, W) before every residual block (``PixelCNN.features(u, condition)``).
m is the VAE's own decoder network (MLP or upsampling convolutions, ``genzoo.nn.encoders``) with
``channels`` outputs per pixel, so the latent code sets a location-dependent bias, as z's upsampled
feature maps do in [1]; a spatially constant projection would be the conditional PixelCNN of [2].
m depends on no pixel, so the decoder stays causal in x and log p(x | z) is exact (nats). Sampling
given z is ancestral: m(z) is computed once and the PixelCNN's cached sampler
(``genzoo.models.autoregressive.pixelcnn_sampling``) walks the subpixels with it, one position's work
per subpixel; ``naive=True`` takes one full pass per subpixel instead (the reference: both give the
same images from the same generator, up to float rounding of the logits). The default PixelCNN is
shallow on purpose: a decoder that can model x on its own tends to ignore z [3].

[1] I. Gulrajani, K. Kumar, F. Ahmed, A. A. Taiga, F. Visin, D. Vazquez, A. Courville. PixelVAE: A
    Latent Variable Model for Natural Images. ICLR 2017.
[2] A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu. Conditional
    Image Generation with PixelCNN Decoders. NeurIPS 2016.
[3] X. Chen, D. P. Kingma, T. Salimans, Y. Duan, P. Dhariwal, J. Schulman, I. Sutskever, P. Abbeel.
    Variational Lossy Autoencoder. ICLR 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from genzoo.models.autoregressive import pixelcnn_sampling
from genzoo.nn.distributions import discrete_sample, symmetric_inputs
from genzoo.nn.encoders import image_decoder

DECODERS = ("factorized", "pixelcnn")
# options of the PixelCNN inside a "pixelcnn" decoder (any PixelCNN option may be overridden); widths
# are multiples of 6 so that RGB works too
PIXELCNN_DEFAULTS = {"channels": 48, "num_blocks": 2, "first_kernel": 5, "kernel_size": 3, "output_channels": 48}


def pick_levels(
    params: torch.Tensor, levels: int, generator: torch.Generator | None = None, mean: bool = False
) -> torch.Tensor:
    """One level per subpixel from its distribution's parameters (layout of ``genzoo.nn.distributions``):
    a draw, or with ``mean`` the level nearest the distribution's mean (a deterministic picture)."""
    if not mean:
        return discrete_sample(params, levels, generator)
    if levels == 2:
        return (params.float() > 0).long()  # P(1) > 1/2
    probs = torch.softmax(params.float(), dim=-1)
    expected = (probs * torch.arange(levels, device=probs.device, dtype=probs.dtype)).sum(-1)
    return expected.round().long().clamp(0, levels - 1)


class PixelCNNDecoder(nn.Module):
    """p(x | z) by a PixelCNN conditioned on m(z); ``options`` override ``PIXELCNN_DEFAULTS``."""

    def __init__(
        self,
        in_features: int,
        image_shape,
        levels: int,
        architecture: str,
        hidden: list[int],
        options: dict | None = None,
    ):
        super().__init__()
        from genzoo.models.autoregressive.pixelcnn import PixelCNN

        self.image_shape, self.levels = tuple(image_shape), int(levels)
        self.pixelcnn = PixelCNN(self.image_shape, self.levels, **{**PIXELCNN_DEFAULTS, **(options or {})})
        channels = self.pixelcnn.input_conv.out_channels
        _, h, w = self.image_shape
        self.condition = image_decoder(architecture, in_features, hidden, (channels, h, w), 1)

    @property
    def activations_per_subpixel(self) -> int:
        """Roughly the floats a forward pass holds per subpixel (for chunking many samples)."""
        p = self.pixelcnn
        return (p.input_conv.out_channels * (len(p.blocks) + 2) + p.output[1].out_channels) // p.image_shape[0]

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits of p(x_i | x_<i, z) for every subpixel, (M, C, H, W) or (M, C, H, W, levels); those of
        subpixel i depend on ``x`` (M, C, H, W) only through the subpixels before i."""
        return self.pixelcnn.network(symmetric_inputs(x, self.levels), self.condition(z))

    @torch.no_grad()
    def generate(
        self, z: torch.Tensor, generator: torch.Generator | None = None, mean: bool = False, naive: bool = False
    ) -> torch.Tensor:
        """Images (M, C, H, W) given z (M, in_features), subpixel by subpixel in the PixelCNN's order:
        each drawn from its conditional (ancestral sampling) or, with ``mean``, set to its mean level.

        By the PixelCNN's cached sampler conditioned on m(z); ``naive=True``: one full pass of the
        network per subpixel. Both consume ``generator`` identically. Dropout acts per position in the
        cached sampler, so the two agree only in eval mode (as sampling should run)."""
        condition = self.condition(z)
        x = torch.zeros((z.shape[0], *self.image_shape), dtype=torch.long, device=z.device)

        def draw(params: torch.Tensor) -> torch.Tensor:
            return pick_levels(params, self.levels, generator, mean)

        if naive:
            return self._generate_naive(x, condition, draw)
        known = torch.zeros_like(x, dtype=torch.bool)
        return pixelcnn_sampling.sample_cached(self.pixelcnn, x, known, generator, condition=condition, draw=draw)

    def _generate_naive(self, x: torch.Tensor, condition: torch.Tensor, draw) -> torch.Tensor:
        """Fill ``x`` in the PixelCNN's order, one full forward pass per subpixel."""
        _, h, w = self.image_shape
        for flat in self.pixelcnn.ordering().tolist():
            c, i, j = flat // (h * w), (flat // w) % h, flat % w
            logits = self.pixelcnn.network(symmetric_inputs(x, self.levels), condition)
            x[:, c, i, j] = draw(logits[:, c, i, j])
        return x
