"""The product: the `Predictor` of a trained workdir, hiding a person, photos and spoken
requests, and the command line `python -m brppnet_jax.protect`."""
