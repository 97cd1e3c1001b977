"""Benchmarks: one module per capability, each runnable alone; results go to docs/benchmarks.md."""
