"""Tools for users and maintainers (`python -m benchmarks.tools.install_check`)."""
