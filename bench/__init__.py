"""Benchmarks (not part of the tests): ``python -m bench.<name>``."""
