"""PDQ banks: lists of 256-bit perceptual hashes (64 hex digits), stored with a multi-index for radius search.

Accepted files, one hash per line:
- plain lists: `<64 hex>`;
- CSV or TSV without a header: `hash[,quality[,...]]` (the layout ThreatExchange's PDQ tools and HMA's bank
  exports use: the hash first, the quality score second, anything after ignored);
- the same with a header row (`hash,quality,...`, `pdq_hash,...`, `signal_value,...`): the header is
  recognised because its first field is not a hash, and a column named `quality` supplies the quality;
- python-threatexchange's signal-per-line form: `pdq <64 hex> [...]`;
- any CSV with a header, choosing the hash column with `--column` (e.g. ThreatExchange descriptor exports'
  `indicator` column); a `quality` column is then used if present.

Hashes with a known quality below the minimum (50 by default, as Meta recommends: low-quality hashes come
from flat or tiny images and match unrelated pictures) are dropped and counted. Hashes without a quality are
kept. A PDQ hash from the reference has exactly 128 bits set (bits are set above the median of 256
coefficients); other counts only arise from ties (flat images) or from hashes that are not PDQ at all.
They are kept, since some producers' pipelines differ, but counted in `details.not_128_bits` and reported.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.banks.listfile import ListValues, read_list
from safeset.banks.store import BankKind, register_kind
from safeset.errors import InputError
from safeset.match.mih import DEFAULT_RADIUS, MultiIndexHash
from safeset.signals.digests import hex_to_digests

DEFAULT_MIN_QUALITY = 50
_QUALITY_NAMES = ("quality", "pdq_quality", "signal_quality")


def _split(values: pa.Array) -> pa.Array:
    """Fields of each line, split on commas, tabs, semicolons or spaces, padded so that 3 always exist."""
    padded = pc.binary_join_element_wise(values, "\x1f-\x1f-", "")
    return pc.split_pattern_regex(padded, r"[,\t; \x1f]+")


def _fields(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Hash and quality field of each line; a leading `pdq` signal-type label shifts both by one."""
    parts = _split(values)
    labelled = pc.equal(pc.utf8_lower(pc.list_element(parts, 0)), "pdq")
    hash_field = pc.if_else(labelled, pc.list_element(parts, 1), pc.list_element(parts, 0))
    quality_field = pc.if_else(labelled, pc.list_element(parts, 2), pc.list_element(parts, 1))
    return hash_field, quality_field


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
    accepted_options = frozenset({"min_quality"})
    description = "PDQ perceptual hashes (64 hex per line, or CSV hash[,quality]); matched within a Hamming radius"

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        return self._store(values, None, folder, source, skip_invalid, {})

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: dict[str, Any]
    ) -> dict[str, Any]:
        if column is not None:
            values = read_list(source, column)
            with source.open("r", encoding="utf-8", errors="replace", newline="") as handle:
                header = next(csv.reader(handle), [])
            named = next((h for h in header if h.strip().lower() in _QUALITY_NAMES), None)
            quality_field = read_list(source, named).values if named else None
            if quality_field is not None and len(quality_field) != len(values.values):
                quality_field = None  # blank cells: quality unknown rather than misaligned
            return self._store(values, quality_field, folder, source, skip_invalid, options)
        values = read_list(source)
        hash_field, quality_field = _fields(values.values)
        if len(values.values):
            first = hash_field[0].as_py() or ""
            _, ok = hex_to_digests(pa.array([first]), 32)
            if not ok[0]:
                # A header row: remember which field holds the quality, and drop the row.
                names = [f.strip().lower() for f in _split(values.values[:1])[0].as_py()]
                quality_index = next((i for i, f in enumerate(names) if f in _QUALITY_NAMES), None)
                values = ListValues(values.values[1:], values.lines[1:])
                hash_field = hash_field[1:]
                if quality_index is None:
                    quality_field = None
                else:
                    lists = _split(values.values).to_pylist()
                    quality_field = pa.array(
                        [f[quality_index] if len(f) > quality_index else None for f in lists], pa.string()
                    )
        return self._store(ListValues(hash_field, values.lines), quality_field, folder, source, skip_invalid, options)

    def _store(
        self,
        values: ListValues,
        quality_field: pa.Array | None,
        folder: Path,
        source: Path,
        skip_invalid: bool,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        min_quality = int(options.get("min_quality", DEFAULT_MIN_QUALITY))
        if not 0 <= min_quality <= 100:
            raise InputError(f"minimum quality must be 0..100, not {min_quality}", source)
        hashes, valid = hex_to_digests(pc.fill_null(values.values, ""), 32)
        skipped = self.reject_or_skip(values, ~valid, source, "not a 64-hex-digit PDQ hash", skip_invalid)
        quality, known = _quality_numbers(quality_field, len(values.values))
        out_of_range = known & (quality > 100)
        skipped += self.reject_or_skip(
            values, out_of_range & valid, source, "PDQ quality must be an integer 0..100", skip_invalid
        )
        keep = valid & ~out_of_range
        low = keep & known & (quality < min_quality)
        keep &= ~low
        kept_hashes, kept_quality = hashes[keep], np.where(known[keep], quality[keep], -1).astype(np.int16)
        unique, first = np.unique(kept_hashes, axis=0, return_index=True) if len(kept_hashes) else (kept_hashes, [])
        index = MultiIndexHash.build(unique, DEFAULT_RADIUS)
        index.save(folder)
        np.save(folder / "quality.npy", kept_quality[np.asarray(first, dtype=np.int64)])
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


register_kind(PdqKind())
