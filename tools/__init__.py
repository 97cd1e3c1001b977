"""Simulators, benchmarks and generators that run beside the box."""
