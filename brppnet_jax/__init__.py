"""BRPPNet in JAX/Flax: referring personal image privacy protection."""
