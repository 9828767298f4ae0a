"""Loopback lab: local fake servers and synthetic data for tests, demo and benchmarks."""
