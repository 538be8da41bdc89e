"""Signals computed from rows: cryptographic image hashes, URL normal forms and hashes, hosts, image checks."""
