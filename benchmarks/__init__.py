"""Benchmarks of generation speed, load time and codec speed (see benchmarks/README.md)."""
