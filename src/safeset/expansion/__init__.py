"""Expansion: the second pass that grows findings around the first (copies, embedding neighbours)."""
