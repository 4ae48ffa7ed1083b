"""The deterministic auto-encoder: the VAE's baseline without a prior or a posterior [1, 2].

    code z = e(x) (N, latent),   p(x | z) = the VAE's per-subpixel output distribution with logits d(z)
    loss(x) = -mean_x log p(x | z = e(x))     reconstruction negative log-likelihood, nats per example

The encoder and decoder networks are the VAE's (``genzoo.nn.encoders``, "mlp" or "conv"). The loss is
NOT a bound on -log p(x): the model defines no p(x), has no ``log_prob`` or ``log_prob_estimate``, and
the evaluator reports its reconstruction NLL under the name "reconstruction", never as an NLL.

Sampling (a heuristic, documented as such): ``sample(n)`` decodes codes drawn from a Gaussian with the
mean and full covariance of the training codes, then draws every subpixel from p(x | z). The code
statistics are running averages kept during training (like batch-norm statistics: an exact average
over the first 1/``code_momentum`` training batches, then an exponential one), so a checkpoint carries
them; ``fit_codes(x)`` sets them exactly from images. Before either, ``sample`` raises
NotImplementedError.

[1] G. E. Hinton, R. R. Salakhutdinov. Reducing the Dimensionality of Data with Neural Networks.
    Science 313, 2006.
[2] I. Goodfellow, Y. Bengio, A. Courville. Deep Learning, chapter 14 (autoencoders). MIT Press, 2016.
"""

from __future__ import annotations

import torch

from genzoo.models.base import ReconstructionModel
from genzoo.models.latent.decoders import pick_levels
from genzoo.nn.distributions import discrete_log_prob, num_params, symmetric_inputs
from genzoo.nn.encoders import ARCHITECTURES, image_decoder, image_encoder

DEFAULT_HIDDEN = {"mlp": [200, 200], "conv": [32, 64]}  # the VAE's defaults


class AutoEncoder(ReconstructionModel):
    """x -> z = e(x) -> p(x | z).

    ``latent``: size of the code z; ``architecture``: "mlp" (tanh layers) or "conv" (stride-2 conv stages);
    ``hidden``: widths of the MLP layers or channels of the conv stages, as for the VAE (None: its
    defaults); ``code_momentum``: the running-average rate of the code statistics that ``sample`` uses.
    """

    def __init__(
        self,
        image_shape,
        levels: int,
        latent: int = 50,
        hidden: list[int] | None = None,
        architecture: str = "mlp",
        code_momentum: float = 0.01,
    ):
        super().__init__(image_shape, levels)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
        hidden = DEFAULT_HIDDEN[architecture] if hidden is None else [int(h) for h in hidden]
        if latent < 1 or min(hidden, default=1) < 1 or (architecture == "conv" and not hidden):
            raise ValueError("latent and hidden sizes must be positive (a conv encoder needs at least one stage)")
        if not 0.0 < code_momentum <= 1.0:
            raise ValueError(f"code_momentum must be in (0, 1], got {code_momentum}")
        self.latent, self.code_momentum = int(latent), float(code_momentum)
        self.encoder = image_encoder(architecture, self.image_shape, hidden, self.latent)
        self.decoder = image_decoder(architecture, self.latent, hidden, self.image_shape, num_params(self.levels))
        self.register_buffer("code_mean", torch.zeros(self.latent))
        self.register_buffer("code_second_moment", torch.eye(self.latent))  # E[z z^T]
        self.register_buffer("code_batches", torch.zeros((), dtype=torch.long))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes z = e(x), (N, latent)."""
        self.check_images(x)
        return self.encoder(symmetric_inputs(x, self.levels)).float()

    @torch.no_grad()
    def code(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The code of each image, (N, latent) (the same as ``encode``, without gradients)."""
        return self.encode(x)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of p(x | z) for z (M, latent): (M, C, H, W), or (M, C, H, W, levels) above 2 levels."""
        return self.decoder(z)

    @torch.no_grad()
    def decode_images(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = False,
    ) -> torch.Tensor:
        """Images (M, C, H, W) from codes: every subpixel drawn from p(x | z), or its level nearest the mean."""
        return pick_levels(self.decode(z), self.levels, generator, mean)

    def reconstruction_log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | z = e(x)) per image, nats (a reconstruction score, not a likelihood of x)."""
        return self._log_prob_of_code(x, self.encode(x))

    def _log_prob_of_code(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return discrete_log_prob(self.decode(z), x, self.levels).flatten(1).sum(1)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean reconstruction NLL, nats per example."""
        return -self.reconstruction_log_prob(x).mean()

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None, step: int) -> torch.Tensor:
        """``loss``, also updating the running code statistics that ``sample`` draws from."""
        z = self.encode(x)
        self._track_codes(z.detach())
        return -self._log_prob_of_code(x, z).mean()

    def _track_codes(self, z: torch.Tensor) -> None:
        rate = max(self.code_momentum, 1.0 / float(self.code_batches + 1))
        z = z.to(self.code_mean.dtype)
        with torch.autocast(z.device.type, enabled=False):  # the statistics stay float32 under bf16 training
            self.code_mean.lerp_(z.mean(0), rate)
            self.code_second_moment.lerp_(z.t() @ z / z.shape[0], rate)
        self.code_batches += 1

    @torch.no_grad()
    def fit_codes(self, x: torch.Tensor, batch_size: int = 1024) -> None:
        """Set the code statistics exactly from images ``x`` (the training split, typically)."""
        codes = torch.cat([self.code(x[i : i + batch_size].to(self.device)) for i in range(0, x.shape[0], batch_size)])
        self.code_mean.copy_(codes.mean(0))
        self.code_second_moment.copy_(codes.t() @ codes / codes.shape[0])
        self.code_batches.fill_(max(1, int(self.code_batches)))

    def code_distribution(self) -> torch.distributions.MultivariateNormal:
        """The Gaussian N(mean, covariance) of the training codes (a small ridge keeps it proper)."""
        if int(self.code_batches) == 0:
            raise NotImplementedError(
                "an auto-encoder has no prior: train it (the code statistics are kept "
                "during training) or call fit_codes(images) before sampling"
            )
        cov = self.code_second_moment - torch.outer(self.code_mean, self.code_mean)
        cov = 0.5 * (cov + cov.t()) + 1e-4 * torch.eye(self.latent, device=cov.device)
        return torch.distributions.MultivariateNormal(self.code_mean, cov)

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` images decoded from codes ~ N(mean, covariance of the training codes); see the module
        docstring: a heuristic generator, not samples of a model of p(x)."""
        gaussian = self.code_distribution()
        eps = torch.randn(n, self.latent, generator=generator, device=self.device)
        z = gaussian.loc + eps @ gaussian.scale_tril.t()
        return self.decode_images(z, generator=generator)
