"""Benchmarks with a baseline measured in the same run: `python -m benchmarks` (see __main__.py)."""
