"""Training: typed config, builders, the loop, checkpoints, resumable sharded sampling, teacher cache."""
