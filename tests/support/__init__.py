"""Helpers for the test suite: real processes on loopback, real files."""
