"""Bank kinds, one folder each: how its list is imported and stored, indexed, and matched, with its options.

A kind's package registers its bank kind(s) and matcher(s) on import; `safeset.registry` names the packages."""
