"""Shared building blocks: masked layers, causal convolutions, output distributions."""
