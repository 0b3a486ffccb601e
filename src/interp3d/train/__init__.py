"""Training: the engine and the supervised and semi-supervised stages."""
