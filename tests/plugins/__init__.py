"""Fixture plugins for the test suite."""
