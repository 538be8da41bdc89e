"""URL prefix banks: a host, or a host and path, that covers every URL below it (`example.org/gallery`).

Entries are put in the canonical URL form (scheme dropped, IDNA lower-case host, default port dropped,
percent-encoding normalised) without a trailing slash. A URL matches when its canonical form starts with
an entry at a path-segment boundary: `example.org/gallery` covers `example.org/gallery`, `.../gallery/1.jpg`
and `.../gallery?page=2`, not `example.org/gallery2`. A host alone covers that host only; for the host and
its subdomains use a `domain` bank. Entries with a query are refused: for one exact URL use a `url` bank; so
are entries whose host is a public suffix (`co.kr/...`, or a lone word), which would cover a whole registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.banks.listfile import InvalidLines, ListFormat, ListValues
from safeset.banks.store import LINE_COLUMN, BankKind, register_kind
from safeset.kinds.url.bank import public_suffix_hosts
from safeset.policy.actions import Action
from safeset.signals.urls import NORMALIZERS, hosts_array

PREFIXES_FILE = "prefixes.parquet"


def _np(mask: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


class UrlPrefixKind(BankKind):
    name = "url-prefix"
    description = "host or host/path prefixes; a URL matches at a path-segment boundary"
    list_format = ListFormat(entry_columns=("prefix", "url_prefix", "url", "host", "domain", "indicator", "value"))

    def check(self, listing: ListValues) -> InvalidLines:
        invalid = InvalidLines(listing)
        values = listing.values
        hosts = hosts_array(values)
        invalid.add(
            ~_np(pc.not_equal(hosts, "")) | _np(pc.match_substring_regex(values, r"\s")), "not a host or URL prefix"
        )
        # `co.kr/...` would cover every site under co.kr's registry; a lone word (a header's `prefix`) is no host.
        invalid.add(
            public_suffix_hosts(hosts, invalid.good), "the host is a public suffix, which covers every site under it"
        )
        rows = np.flatnonzero(invalid.good)
        canonical = NORMALIZERS["canonical"].normalize_array(values.take(pa.array(rows)))
        has_query = np.zeros(len(values), dtype=bool)
        has_query[rows] = _np(pc.match_substring(canonical, "?"))
        invalid.add(has_query, "a prefix has no query (use a url bank for exact URLs)")
        invalid.derived.update(rows=rows, canonical=canonical)
        return invalid

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        invalid = self.check(values)
        skipped = invalid.settle(skip_invalid)
        rows, canonical = invalid.derived["rows"], invalid.derived["canonical"]
        kept = invalid.good[rows]
        canonical = canonical.filter(pa.array(kept))
        prefixes = pc.utf8_rtrim(canonical, "/")
        depth = pc.list_value_length(pc.split_pattern(prefixes, "/"))
        lines = pa.array(values.lines[rows[kept]].astype(np.int32), type=pa.int32())
        table = pa.table({"prefix": prefixes, "depth": pc.cast(depth, pa.int32()), LINE_COLUMN: lines})
        # One row per prefix, with the first line that listed it (findings name their entry: `url-prefix L5`).
        grouped = table.group_by(["prefix", "depth"]).aggregate([(LINE_COLUMN, "min")])
        unique = pa.table(
            {"prefix": grouped["prefix"], "depth": grouped["depth"], LINE_COLUMN: grouped[f"{LINE_COLUMN}_min"]}
        ).sort_by("prefix")
        pq.write_table(unique, folder / PREFIXES_FILE)
        return {
            "entries": unique.num_rows,
            "skipped_invalid": skipped,
            "duplicates": table.num_rows - unique.num_rows,
            "details": {"form": "canonical", "max_depth": int(pc.max(depth).as_py() or 0)},
        }

    def stored_files(self, details: dict[str, Any]) -> list[str]:
        return [PREFIXES_FILE]


class ExcludeUrlPrefixKind(UrlPrefixKind):
    name = "exclude-url-prefix"
    default_action = Action.EXCLUDE
    description = "rights holders' opt-outs by host or path prefix"


register_kind(UrlPrefixKind())
register_kind(ExcludeUrlPrefixKind())
