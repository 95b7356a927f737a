"""RPCOCO data: TFDS builder, synthetic twin, vocabulary and input pipeline."""
