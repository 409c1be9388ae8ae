"""Experiment drivers (`python -m benchmarks.experiments.label_sweep`); results in results/."""
