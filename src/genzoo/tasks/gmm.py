"""Gaussian mixtures for continuous vectors (latent codes, features), and clustering scores.

A thin wrapper of scikit-learn's ``GaussianMixture`` (fitted by EM, Dempster et al. 1977) that takes
torch tensors or numpy arrays. Not an image model: its ``score_samples`` is a log DENSITY of real
vectors, in nats, comparable only with other densities on the same vectors, never with the discrete
log-likelihoods (nats per image) of the models in the registry.
"""

from __future__ import annotations

import numpy as np
import torch


def _numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


class GaussianMixtureModel:
    """``components`` Gaussians with ``covariance`` "full" or "diag"; ``reg_covar`` is added to every
    covariance diagonal (numerical safety); ``restarts`` EM runs keep the best; ``seed`` fixes them."""

    def __init__(
        self,
        components: int = 10,
        covariance: str = "full",
        seed: int = 0,
        max_iter: int = 200,
        restarts: int = 1,
        reg_covar: float = 1e-6,
    ):
        if covariance not in ("full", "diag"):
            raise ValueError(f"covariance must be 'full' or 'diag', got {covariance!r}")
        self.components, self.covariance, self.seed = int(components), covariance, int(seed)
        self.max_iter, self.restarts, self.reg_covar = int(max_iter), int(restarts), float(reg_covar)
        self.model = None

    def fit(self, x) -> "GaussianMixtureModel":
        """Fit to vectors ``x`` (N, d) by EM."""
        from sklearn.mixture import GaussianMixture

        self.model = GaussianMixture(
            self.components,
            covariance_type=self.covariance,
            max_iter=self.max_iter,
            n_init=self.restarts,
            reg_covar=self.reg_covar,
            random_state=self.seed,
        )
        self.model.fit(_numpy(x))
        return self

    def _fitted(self):
        if self.model is None:
            raise RuntimeError("call fit first")
        return self.model

    def predict(self, x) -> np.ndarray:
        """The most probable component of each vector, (N,) ints."""
        return self._fitted().predict(_numpy(x))

    def predict_proba(self, x) -> np.ndarray:
        """Posterior p(component | x), (N, components)."""
        return self._fitted().predict_proba(_numpy(x))

    def score_samples(self, x) -> np.ndarray:
        """log p(x) of each vector, (N,), nats (a density: it can be positive)."""
        return self._fitted().score_samples(_numpy(x))

    def score(self, x) -> float:
        """Mean log density, nats per vector."""
        return float(self.score_samples(x).mean())

    def bic(self, x) -> float:
        """Bayesian information criterion (lower is better), for choosing ``components``."""
        return float(self._fitted().bic(_numpy(x)))


def cluster_scores(labels_true, labels_pred) -> dict[str, float]:
    """Agreement of a clustering with true labels: adjusted Rand index and normalized mutual information
    (both 1 for a perfect match up to relabelling, about 0 for chance)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    truth, pred = np.asarray(labels_true).reshape(-1), np.asarray(labels_pred).reshape(-1)
    return {"ari": float(adjusted_rand_score(truth, pred)), "nmi": float(normalized_mutual_info_score(truth, pred))}
