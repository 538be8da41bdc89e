"""Banks of cryptographic digests of image bytes (MD5, SHA-1, SHA-256), stored as sorted fixed-width arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeset.banks.listfile import InvalidLines, ListFormat, ListValues
from safeset.banks.store import BankKind, register_kind
from safeset.kinds.digest.digestset import DigestSet
from safeset.signals.digests import DIGEST_SIZES, hex_to_digests


class DigestKind(BankKind):
    """Cryptographic hashes of image bytes (or of normalised URLs), as hex; one instance per kind."""

    def __init__(self, name: str, algorithm: str, description: str, safeset_hash_field: str | None = None) -> None:
        self.name = name
        self.algorithm = algorithm
        self.description = description
        names = (algorithm, f"{algorithm}_hash", "hash", "signal_value", "indicator", "value")
        self.list_format = ListFormat(entry_columns=names, safeset_hash_field=safeset_hash_field)

    def check(self, listing: ListValues) -> InvalidLines:
        invalid = InvalidLines(listing)
        digests, valid = hex_to_digests(listing.values, DIGEST_SIZES[self.algorithm])
        invalid.add(~valid, f"not a {self.algorithm} hex digest")
        invalid.derived["digests"] = digests
        return invalid

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        invalid = self.check(values)
        skipped = invalid.settle(skip_invalid)
        good = invalid.good
        dset = DigestSet.build(invalid.derived["digests"][good], values.lines[good])
        dset.save(folder)
        return {
            "entries": len(dset),
            "skipped_invalid": skipped,
            "duplicates": int(good.sum()) - len(dset),
            "details": {"bitmap_bits": dset.bits, "algorithm": self.algorithm},
        }

    def stored_files(self, details: dict[str, Any]) -> list[str]:
        int(details["bitmap_bits"])  # the matcher needs it to read the bitmap
        return list(DigestSet.FILES)


for _kind in (
    DigestKind("md5", "md5", "MD5 of image bytes (hex per line, a CSV column, or `safeset hash` output)", "md5"),
    DigestKind("sha1", "sha1", "SHA-1 of image bytes"),
    DigestKind("sha256", "sha256", "SHA-256 of image bytes"),
):
    register_kind(_kind)
