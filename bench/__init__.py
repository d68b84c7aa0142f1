"""Benchmarks (not tests): ratios measured in the same run."""
