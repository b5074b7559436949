"""Tiny random-weight model bundles in the real on-disk layouts, for tests and smoke runs."""
