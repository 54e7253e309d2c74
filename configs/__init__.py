"""Experiment configurations (`get_config()` in each file; run from the repository root)."""
