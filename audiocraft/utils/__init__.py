"""Utilities shared across the library."""
