"""URL prefixes: a listed folder of a site covers every URL under it."""

from safeset.kinds.urlprefix import bank, matcher  # noqa: F401  (registration)
