"""Naive Bayes: a class-conditional product of categoricals, fitted by counting.

    p(x | y) = prod_i Categorical(x_i | theta_{y,i}),     p(y) = pi_y

``log_prob(x, y)`` is the class-conditional density log p(x | y) in nats (what the evaluator scores with
the split's labels); ``predict_log_proba(x)`` is log p(y | x) by Bayes' rule. Fitted in closed form by
``fit`` (smoothed counts), or by gradient through the core trainer (``log_prob`` normalizes any logits).
The generative half of the generative/discriminative pair compared in [1]: with few examples naive
Bayes approaches its (higher) asymptotic error faster than logistic regression.

[1] A. Y. Ng, M. I. Jordan. On discriminative vs. generative classifiers: a comparison of logistic
    regression and naive Bayes. NIPS 2002.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import ExplicitDensityModel
from genzoo.models.classic.categorical import flat_images, level_counts, log_likelihood_table, safe_log, sample_table


class NaiveBayes(ExplicitDensityModel):
    """Class-conditional independent subpixels for ``num_classes`` classes.

    ``alpha`` is the Laplace/Lidstone pseudo-count that ``fit`` adds to every (class, subpixel, level)
    count and to every class count. Parameters: ``logits`` (classes, D, levels), softmax-normalized over
    the levels; buffer ``log_class_prior`` (classes,), log p(y) in nats (uniform until ``fit``).
    """

    conditional = True

    label_use = "always"
    fit_methods = ("closed-form",)
    default_fit = "closed-form"

    def __init__(self, image_shape, levels: int, num_classes: int = 10, alpha: float = 1.0):
        super().__init__(image_shape, levels, num_classes=int(num_classes))
        if self.num_classes < 1 or float(alpha) < 0:
            raise ValueError(f"need num_classes >= 1 and alpha >= 0, got {num_classes} and {alpha}")
        self.alpha = float(alpha)
        self.logits = nn.Parameter(torch.zeros(self.num_classes, self.num_dims, self.levels))
        self.register_buffer("log_class_prior", torch.full((self.num_classes,), -math.log(self.num_classes)))

    def log_theta(self) -> torch.Tensor:
        """log p(x_i = v | y), (classes, D, levels), nats."""
        return F.log_softmax(self.logits.float(), dim=-1)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, labels: torch.Tensor, alpha: float | None = None) -> "NaiveBayes":
        """Set theta_{y,i,v} = (n_{y,i,v} + alpha) / (n_y + levels*alpha),
        p(y) = (n_y + alpha) / (N + classes*alpha)."""
        self.check_images(images)
        labels = self.check_labels(labels, images.shape[0])
        alpha = self.alpha if alpha is None else float(alpha)
        onehot = F.one_hot(labels, self.num_classes).double()
        counts = level_counts(flat_images(images, self.device), onehot, self.levels)
        class_counts = onehot.sum(0)
        theta = (counts + alpha) / (class_counts[:, None, None] + self.levels * alpha).clamp_min(1e-300)
        prior = (class_counts + alpha) / (labels.numel() + self.num_classes * alpha)
        self.logits.copy_(safe_log(theta).float())
        self.log_class_prior.copy_(safe_log(prior).float())
        return self

    def class_log_likelihoods(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x | y=c) for every image and class, (N, classes), nats."""
        self.check_images(x)
        return log_likelihood_table(flat_images(x, self.device), self.log_theta())

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | y) of each image given its label, (N,), nats."""
        y = self.check_labels(y, x.shape[0])
        return self.class_log_likelihoods(x).gather(1, y[:, None]).squeeze(1)

    def predict_log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x) = log p(x | y) + log p(y) - log p(x), (N, classes), nats."""
        return torch.log_softmax(self.class_log_likelihoods(x) + self.log_class_prior, dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class of each image, LongTensor (N,)."""
        return self.predict_log_proba(x).argmax(1)

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images drawn from p(x | y) for the given labels: LongTensor (n, C, H, W)."""
        y = self.check_labels(y, n)
        device = generator.device if generator is not None else self.device
        x = sample_table(self.log_theta().to(device)[y.to(device)], generator)
        return x.reshape(n, *self.image_shape).to(self.device)
