"""Benchmark scripts and their shared synthetic-data generator (see benchmarks/README.md)."""
