"""Adversarial models: GANs (DCGAN, WGAN-GP, class-conditional), which have samples and no likelihood."""
