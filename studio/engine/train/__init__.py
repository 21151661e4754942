"""Datasets, the training loop, resume and distributed training."""
