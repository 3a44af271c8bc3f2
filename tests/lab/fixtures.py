"""Pytest fixtures of the registry lab."""
