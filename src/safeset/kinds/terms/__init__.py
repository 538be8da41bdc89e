"""Caption terms: script-aware whole-word, Hangul-particle and substring matching."""

from safeset.kinds.terms import bank, matcher  # noqa: F401  (registration)
