"""Benchmarks of the recovery toolkit (``make bench``); never part of the test pass/fail."""
