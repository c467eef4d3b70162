"""Adapting AugNet to a collection without labels, and its settings."""
