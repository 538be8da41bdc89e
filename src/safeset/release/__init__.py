"""Release: write the cleaned dataset in its own format, with manifests, checking that every row is accounted for."""
