"""Classifiers from generative models, and the discriminative baseline they are compared with.

``GenerativeClassifier`` turns ANY explicit class-conditional density into p(y | x) by Bayes' rule,

    log p(y | x) = log p(x | y) + log p(y) - logsumexp_c [ log p(x | c) + log p(c) ]      (nats)

from either one model with ``conditional = True`` (``log_prob(x, y)``) or a list of per-class
unconditional explicit models (``models[c].log_prob(x)``). ``LogisticRegressionClassifier`` models
p(y | x) directly on the same pixels: the discriminative partner of naive Bayes in Ng & Jordan (2002).
Both share the small surface ``fit`` / ``predict_log_proba`` / ``predict`` / ``accuracy``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def log_prior_from_labels(labels, num_classes: int, alpha: float = 0.0) -> torch.Tensor:
    """log p(y) from label counts with ``alpha`` pseudo-counts per class, (num_classes,), nats."""
    counts = torch.bincount(torch.as_tensor(labels).long().reshape(-1), minlength=num_classes).double() + alpha
    return (counts / counts.sum()).log()


class GenerativeClassifier:
    """p(y | x) ∝ p(x | y) p(y) for explicit-density models.

    ``models``: one class-conditional model (``conditional`` true, ``num_classes`` set) or a sequence
    of explicit models, one per class. ``log_prior``: log p(y) of shape (classes,), renormalized here;
    None means uniform. Scores are computed in batches of ``batch_size`` on each model's device.
    """

    def __init__(self, models, log_prior=None, batch_size: int = 1024):
        if isinstance(models, Sequence):
            self.models, self.num_classes = list(models), len(models)
        elif models.conditional and models.num_classes:
            self.models, self.num_classes = models, int(models.num_classes)
        else:
            raise ValueError("pass one class-conditional model (conditional=True) or a list of per-class models")
        for model in self.models if isinstance(self.models, list) else [self.models]:
            if model.likelihood not in ("exact", "partition"):
                raise TypeError(f"{type(model).__name__} has no exact log_prob: it cannot classify by Bayes' rule")
        if log_prior is None:
            log_prior = torch.full((self.num_classes,), -math.log(self.num_classes))
        log_prior = torch.as_tensor(log_prior, dtype=torch.float64).reshape(-1).cpu()
        if log_prior.numel() != self.num_classes:
            raise ValueError(f"log_prior has {log_prior.numel()} entries for {self.num_classes} classes")
        self.log_prior = torch.log_softmax(log_prior, 0)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def class_log_likelihoods(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x | y=c) for every image and class, float64 (N, classes) on the CPU, nats."""
        out = []
        for start in range(0, x.shape[0], self.batch_size):
            xb = x[start : start + self.batch_size]
            out.append(torch.stack([self._log_likelihood(xb, c) for c in range(self.num_classes)], dim=1))
        return torch.cat(out) if out else torch.zeros(0, self.num_classes, dtype=torch.float64)

    def _log_likelihood(self, x: torch.Tensor, c: int) -> torch.Tensor:
        if isinstance(self.models, list):
            model = self.models[c]
            return model.log_prob(x.to(model.device)).double().cpu()
        model = self.models
        y = torch.full((x.shape[0],), c, dtype=torch.long, device=model.device)
        return model.log_prob(x.to(model.device), y).double().cpu()

    def predict_log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x), float64 (N, classes), rows log-normalized."""
        return torch.log_softmax(self.class_log_likelihoods(x) + self.log_prior, dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_log_proba(x).argmax(1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.predict(x) == torch.as_tensor(y).cpu()).double().mean())


class LogisticRegressionClassifier:
    """Multinomial logistic regression on pixels scaled to [0, 1] (scikit-learn, L2 penalty ``C``).

    ``C`` is scikit-learn's inverse regularization strength (1.0 by default; Ng & Jordan fit without a
    penalty, which diverges on separable small samples). Classes absent from the training labels get
    probability 0 (log -inf).
    """

    def __init__(self, num_classes: int, levels: int, C: float = 1.0, max_iter: int = 1000):
        self.num_classes, self.levels, self.C, self.max_iter = int(num_classes), int(levels), float(C), int(max_iter)
        self.model = None

    def _features(self, images: torch.Tensor) -> np.ndarray:
        return images.reshape(images.shape[0], -1).double().cpu().numpy() / (self.levels - 1)

    def fit(self, images: torch.Tensor, labels: torch.Tensor) -> "LogisticRegressionClassifier":
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        self.model.fit(self._features(images), torch.as_tensor(labels).cpu().numpy())
        return self

    def predict_log_proba(self, images: torch.Tensor) -> torch.Tensor:
        """log p(y | x), float64 (N, num_classes)."""
        if self.model is None:
            raise RuntimeError("call fit first")
        out = torch.full((images.shape[0], self.num_classes), -math.inf, dtype=torch.float64)
        out[:, torch.as_tensor(self.model.classes_).long()] = torch.from_numpy(
            self.model.predict_log_proba(self._features(images))
        ).double()
        return out

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict_log_proba(images).argmax(1)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(images) == torch.as_tensor(labels).cpu()).double().mean())
