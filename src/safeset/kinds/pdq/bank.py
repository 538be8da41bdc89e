"""PDQ banks: lists of 256-bit perceptual hashes (64 hex digits), stored with a multi-index for radius search.

Accepted files, one hash per line (read by `listfile`, like every kind: BOM, CRLF, comments, line numbers):
- plain lists: `<64 hex>`;
- CSV or TSV without a header: `hash[,quality[,...]]` (the layout ThreatExchange's PDQ tools and HMA's bank
  exports use: the hash first, the quality score second, anything after ignored);
- the same with a header row (`hash,quality,...`, `pdq_hash,...`, `signal_value,...`): by the shared header
  rule, a first line that is not a hash and names a column; rows are then read with the `csv` module, and a
  column named `quality` supplies each row's quality from the same row;
- python-threatexchange's signal-per-line form: `pdq <64 hex> [...]`;
- `safeset hash` output as is (`path, md5, pdq, quality[, 8 dihedral hashes]`): the pdq and quality fields;
- any CSV with a header, choosing the hash column with `--column` (e.g. ThreatExchange descriptor exports'
  `indicator` column); a `quality` column is then used if present (a blank cell: quality unknown).

Hashes with a known quality below the minimum (50 by default, as Meta recommends: low-quality hashes come
from flat or tiny images and match unrelated pictures) are dropped and counted. Hashes without a quality are
kept. A PDQ hash from the reference has exactly 128 bits set (bits are set above the median of 256
coefficients); other counts only arise from ties (flat images) or from hashes that are not PDQ at all.
They are kept, since some producers' pipelines differ, but counted in `details.not_128_bits` and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.banks.listfile import InvalidLines, ListFormat, ListValues, SplitLines
from safeset.banks.store import BankKind, register_kind
from safeset.errors import InputError
from safeset.kinds.pdq.index import DEFAULT_RADIUS, MultiIndexHash
from safeset.kinds.pdq.options import DEFAULT_MIN_QUALITY, PdqImportOptions
from safeset.signals.digests import hex_to_digests

#: Source line of each stored hash, aligned with `pdq.npy` (absent in banks imported before lines were kept).
PDQ_LINES_FILE = "lines.npy"
_QUALITY_NAMES = ("quality", "pdq_quality", "signal_quality")


def split_pdq_line(values: pa.Array) -> SplitLines:
    """Hash and quality field of each headerless line, split on commas, tabs, semicolons or spaces; a leading
    `pdq` signal-type label shifts both by one."""
    padded = pc.binary_join_element_wise(values, "\x1f-\x1f-", "")  # so that 3 fields always exist
    parts = pc.split_pattern_regex(padded, r"[,\t; \x1f]+")
    labelled = pc.equal(pc.utf8_lower(pc.list_element(parts, 0)), "pdq")
    hash_field = pc.if_else(labelled, pc.list_element(parts, 1), pc.list_element(parts, 0))
    quality_field = pc.if_else(labelled, pc.list_element(parts, 2), pc.list_element(parts, 1))
    return SplitLines(hash_field, {"quality": quality_field})


def _quality_numbers(field: pa.Array | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(quality as int16, known) from a text column; non-numeric or missing values are unknown."""
    if field is None:
        return np.zeros(n, np.int16), np.zeros(n, dtype=bool)
    text = pc.utf8_trim_whitespace(pc.cast(field, pa.string()))
    numeric = pc.fill_null(pc.match_substring_regex(text, r"^\d{1,3}$"), False)
    known = np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=bool)
    quality = np.zeros(n, np.int16)
    if known.any():
        quality[known] = np.asarray(pc.cast(text.filter(numeric), pa.int16()).to_numpy(zero_copy_only=False))
    return quality, known


class PdqKind(BankKind):
    name = "pdq"
    import_options = PdqImportOptions
    description = "PDQ perceptual hashes (64 hex per line, CSV hash[,quality], or `safeset hash` output)"
    list_format = ListFormat(
        entry_columns=("pdq", "pdq_hash", "hash", "signal_value", "indicator", "value"),
        optional_columns={"quality": _QUALITY_NAMES},
        split_line=split_pdq_line,
        safeset_hash_field="pdq",
    )

    def check(self, listing: ListValues) -> InvalidLines:
        invalid = InvalidLines(listing)
        hashes, valid = hex_to_digests(pc.fill_null(listing.values, ""), 32)
        invalid.add(~valid, "not a 64-hex-digit PDQ hash")
        quality, known = _quality_numbers(listing.field_values("quality"), len(listing.values))
        invalid.add(known & (quality > 100), "PDQ quality must be an integer 0..100")
        invalid.derived.update(hashes=hashes, quality=quality, known=known)
        return invalid

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: PdqImportOptions
    ) -> dict[str, Any]:
        min_quality = int(options.min_quality)
        if not 0 <= min_quality <= 100:
            raise InputError(f"minimum quality must be 0..100, not {min_quality}", source)
        listing = self.read(source, column)
        counts = self._store(listing, folder, skip_invalid, min_quality)
        counts["details"].update(listing.details())
        return counts

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        return self._store(values, folder, skip_invalid, DEFAULT_MIN_QUALITY)

    def _store(self, listing: ListValues, folder: Path, skip_invalid: bool, min_quality: int) -> dict[str, Any]:
        invalid = self.check(listing)
        skipped = invalid.settle(skip_invalid)
        hashes, quality, known = (invalid.derived[k] for k in ("hashes", "quality", "known"))
        keep = invalid.good
        low = keep & known & (quality < min_quality)
        keep &= ~low
        kept_hashes, kept_quality = hashes[keep], np.where(known[keep], quality[keep], -1).astype(np.int16)
        unique, first = np.unique(kept_hashes, axis=0, return_index=True) if len(kept_hashes) else (kept_hashes, [])
        first = np.asarray(first, dtype=np.int64)
        index = MultiIndexHash.build(unique, DEFAULT_RADIUS)
        index.save(folder)
        np.save(folder / "quality.npy", kept_quality[first])
        # Source line of each stored hash (np.unique's first occurrence), aligned with pdq.npy.
        np.save(folder / PDQ_LINES_FILE, listing.lines[keep][first].astype(np.int32))
        bit_counts = np.bitwise_count(unique).sum(axis=1) if len(unique) else np.zeros(0, np.int64)
        return {
            "entries": len(unique),
            "skipped_invalid": skipped,
            "duplicates": int(keep.sum()) - len(unique),
            "details": {
                "min_quality": min_quality,
                "dropped_low_quality": int(low.sum()),
                "quality_unknown": int((keep & ~known).sum()),
                "not_128_bits": int((bit_counts != 128).sum()),
                "mih_chunks": len(index.layout),
                "index_bytes": index.memory_bytes(),
            },
        }

    def stored_files(self, details: dict[str, Any]) -> list[str]:
        chunks = int(details["mih_chunks"])
        per_chunk = [f"mih_{part}_{c}.npy" for c in range(chunks) for part in ("order", "offsets")]
        return ["pdq.npy", "mih_layout.npy", "quality.npy", *per_chunk]


register_kind(PdqKind())
