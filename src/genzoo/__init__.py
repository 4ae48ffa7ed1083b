"""genzoo: deep generative models with honest likelihoods.

import genzoo
model = genzoo.create("pixelcnn", image_shape=(1, 28, 28), levels=2)
model.loss(x)            # mean nats per example
model.log_prob(x)        # exact log-likelihood per image, nats
model.sample(16)         # LongTensor (16, 1, 28, 28)
model = genzoo.load("runs/pixelcnn-binarized-mnist")                  # best-validation weights if kept
model = genzoo.load("runs/pixelcnn-binarized-mnist", weights="last")  # the weights at the end
"""

from genzoo.checkpoint import load
from genzoo.registry import create, describe

__version__ = "0.1.0"
__all__ = ["create", "load", "describe", "__version__"]
