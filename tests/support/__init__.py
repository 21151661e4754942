"""Helpers for the test suite (real parts: sound server, signals, tiny datasets)."""
