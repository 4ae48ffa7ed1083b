"""Tasks built on the models: experiments that produce tables and figures (learning curves)."""
