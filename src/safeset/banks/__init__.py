"""Banks: named lists of known items (hashes, URLs, domains, opt-outs) with provenance, imported once and
stored compactly so that scans load them in seconds."""
