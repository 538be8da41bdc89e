"""Hash-only verification services: adapters that send hashes and URLs (never image bytes) to parties allowed
to confirm a candidate (C3P Arachnid Shield, Meta HMA / OpenMediaMatch, Microsoft PhotoDNA Cloud)."""
