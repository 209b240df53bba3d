"""Benchmarks (never part of the tests).

``python -m bench`` (``make bench``) runs them all and writes ``bench/RESULTS.md``;
``python -m bench.<name>`` runs one and prints its tables.
"""
