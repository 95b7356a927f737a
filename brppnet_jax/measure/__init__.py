"""Measurements, each `python -m brppnet_jax.measure.<name>`: speed, the loss ablation, the
text floor, parity with the original. Nothing in the package imports them."""
