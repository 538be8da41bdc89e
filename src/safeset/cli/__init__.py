"""The `safeset` command line."""
