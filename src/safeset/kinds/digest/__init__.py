"""Cryptographic digests of image bytes (MD5, SHA-1, SHA-256)."""

from safeset.kinds.digest import bank, matcher  # noqa: F401  (registration)
