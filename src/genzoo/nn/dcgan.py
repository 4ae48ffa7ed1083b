"""DCGAN networks [1]: a generator of transposed convolutions and a discriminator of strided convolutions.

Both are sized from the image: the spatial size is halved ``k`` times (while even, at least 2, at most 3
times) down to a start size (28 -> 14 -> 7; 32 -> 16 -> 8 -> 4; 8 -> 4 -> 2), and the channel count doubles
with every halving. With ``channels=64``:

    generator      z (+ label embedding) -> linear -> 128 x 7 x 7 -> [convT 4x4/2, BN, ReLU] -> 64 x 14 x 14
                   -> convT 4x4/2 -> C x 28 x 28 -> tanh                       (BN + ReLU after every layer
                                                                                but the output, [1] sec. 3)
    discriminator  C x 28 x 28 -> conv 4x4/2, LReLU(0.2) -> 64 x 14 x 14 -> [conv 4x4/2, norm, LReLU(0.2)]
                   -> 128 x 7 x 7 -> linear -> 1 logit (no norm on the first layer, [1] sec. 3)

Class-conditional versions take labels: the generator concatenates a learned label embedding to z
(Mirza & Osindero [2]); the discriminator adds the projection <embed(y), h> of its last features h [3].
The discriminator's ``norm`` is "batch" [1], "layer" (what [4] uses in a WGAN-GP critic, where batch
statistics would couple the examples of the gradient penalty) or "none"; ``spectral_norm`` wraps each
of its weight layers in spectral normalization [5].

[1] A. Radford, L. Metz, S. Chintala. Unsupervised Representation Learning with Deep Convolutional
    Generative Adversarial Networks. ICLR 2016.
[2] M. Mirza, S. Osindero. Conditional Generative Adversarial Nets. arXiv:1411.1784, 2014.
[3] T. Miyato, M. Koyama. cGANs with Projection Discriminator. ICLR 2018.
[4] I. Gulrajani et al. Improved Training of Wasserstein GANs. NeurIPS 2017.
[5] T. Miyato et al. Spectral Normalization for Generative Adversarial Networks. ICLR 2018.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

NORMS = ("batch", "layer", "none")


def halvings(h: int, w: int, most: int = 3, smallest: int = 2) -> int:
    """How many stride-2 stages the networks use for an H x W image (see the module docstring)."""
    k = 0
    while k < most and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= smallest:
        h, w, k = h // 2, w // 2, k + 1
    return k


def dcgan_init(module: nn.Module) -> None:
    """Weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0 ([1] sec. 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(1, channels) if kind == "layer" else nn.Identity()  # GroupNorm(1): LayerNorm over C, H, W


class DCGANGenerator(nn.Module):
    """z (N, latent) [+ labels (N,)] -> images (N, C, H, W) in [-1, 1]."""

    def __init__(self, image_shape, latent: int, channels: int, num_classes: int | None = None):
        super().__init__()
        c, h, w = image_shape
        k = halvings(h, w)
        self.start = (channels * 2 ** max(k - 1, 0), h >> k, w >> k)
        self.embed = nn.Embedding(num_classes, latent) if num_classes else None
        self.project = nn.Linear(
            latent * (2 if num_classes else 1), self.start[0] * self.start[1] * self.start[2], bias=False
        )
        layers: list[nn.Module] = [nn.BatchNorm2d(self.start[0]), nn.ReLU()]
        width = self.start[0]
        for _ in range(k - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, c, 4, 2, 1) if k else nn.Conv2d(width, c, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return self.net(self.project(z).reshape(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """images (N, C, H, W) in [-1, 1] [+ labels (N,)] -> logits (or critic values) (N,)."""

    def __init__(
        self,
        image_shape,
        channels: int,
        num_classes: int | None = None,
        norm: str = "batch",
        spectral_norm: bool = False,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        c, h, w = image_shape
        k = halvings(h, w)
        layers: list[nn.Module] = [
            nn.Conv2d(c, channels, 4, 2, 1) if k else nn.Conv2d(c, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = channels
        for _ in range(k - 1):
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"),
                _norm(norm, width * 2),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        num_features = width * (h >> k) * (w >> k)
        self.out = nn.Linear(num_features, 1)
        self.embed = nn.Embedding(num_classes, num_features) if num_classes else None
        dcgan_init(self)
        if spectral_norm:  # after the init: the parametrization divides the initialized weights by sigma
            for m in list(self.modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    _spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.out(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out
