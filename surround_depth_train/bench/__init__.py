"""Benchmarks runnable as ``python -m surround_depth_train.bench.<name>``."""
