"""Matchers: compare a batch's signals with one bank each, returning the matching rows and evidence."""
