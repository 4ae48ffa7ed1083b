"""Latent-variable models: p(x) = ∫ p(z) p(x|z) dz, trained on a bound, evaluated with a bound and an estimate."""
