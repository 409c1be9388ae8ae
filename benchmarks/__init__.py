"""Benchmarks: run as modules, e.g. `python -m benchmarks.train_step`."""
