"""Measurements, run as modules (`python -m benchmarks.train_step`); experiment drivers in
`benchmarks.experiments`, tools in `benchmarks.tools`; what they share in `benchmarks.common`."""
