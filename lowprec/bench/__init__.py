"""Benchmarking: side-by-side measurement of lowprec and its peers (see harness.py)."""
