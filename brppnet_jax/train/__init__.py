"""Training: the state and its pure jitted steps, the losses, checkpoints and resuming, the
loop (`loop.train_and_evaluate`), and an original h5 imported as a workdir."""
