"""Benchmarks that print ratios measured side by side in one run (medians; these machines are noisy).

    python -m surround_depth_train.bench render|models|train|all [args...]
    python -m surround_depth_train.bench.<name> [args...]
"""
