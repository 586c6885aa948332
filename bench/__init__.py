"""Benchmarks of the lease service: ``python bench/run.py --help``."""
