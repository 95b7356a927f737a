"""Measuring a network's masks: the metrics of spec section 6, the face test behind TDIR,
scoring a split (the training loop's), and evaluating a checkpoint or a predictor."""
