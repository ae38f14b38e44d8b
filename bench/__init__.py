"""Benchmarks for ccswitch, run as modules (``python -m bench.media``), loopback only."""
