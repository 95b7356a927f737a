"""BRPPNet in Flax linen: `create_model(config)` builds it from `config.model`."""

from brppnet_jax.models.brppnet import BRPPNet
from brppnet_jax.models.brppnet import create_model

__all__ = ["BRPPNet", "create_model"]
