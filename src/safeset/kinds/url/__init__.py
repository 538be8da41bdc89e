"""URLs, URL digests (hotline URL-MD5 lists) and domains, opt-out lists included."""

from safeset.kinds.url import bank, matcher  # noqa: F401  (registration)
