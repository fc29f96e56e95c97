"""Benchmarks: `python -m bench` runs every bench/bench_*.py module's `main()` in turn.

Each prints its figures next to the target or baseline; nothing here is asserted.
"""
