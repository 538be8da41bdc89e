"""URL prefix banks: a host, or a host and path, that covers every URL below it (`example.org/gallery`).

Entries are put in the canonical URL form (scheme dropped, IDNA lower-case host, default port dropped,
percent-encoding normalised) without a trailing slash. A URL matches when its canonical form starts with
an entry at a path-segment boundary: `example.org/gallery` covers `example.org/gallery`, `.../gallery/1.jpg`
and `.../gallery?page=2`, not `example.org/gallery2`. A host alone covers that host only; for the host and
its subdomains use a `domain` bank. Entries with a query are refused: for one exact URL use a `url` bank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.banks.listfile import ListValues
from safeset.banks.store import BankKind, register_kind
from safeset.policy.actions import Action
from safeset.signals.urls import NORMALIZERS, hosts_array

PREFIXES_FILE = "prefixes.parquet"


def _np(mask: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


class UrlPrefixKind(BankKind):
    name = "url-prefix"
    description = "host or host/path prefixes; a URL matches at a path-segment boundary"

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        hosts = hosts_array(values.values)
        bad = ~_np(pc.not_equal(hosts, "")) | _np(pc.match_substring_regex(values.values, r"\s"))
        skipped = self.reject_or_skip(values, bad, source, "not a host or URL prefix", skip_invalid)
        good = values.values.filter(pa.array(~bad))
        canonical = NORMALIZERS["canonical"].normalize_array(good)
        has_query = _np(pc.match_substring(canonical, "?"))
        if has_query.any():
            shown = ListValues(good, values.lines[~bad])
            skipped += self.reject_or_skip(
                shown, has_query, source, "a prefix has no query (use a url bank for exact URLs)", skip_invalid
            )
            canonical = canonical.filter(pa.array(~has_query))
        prefixes = pc.utf8_rtrim(canonical, "/")
        depth = pc.list_value_length(pc.split_pattern(prefixes, "/"))
        table = pa.table({"prefix": prefixes, "depth": pc.cast(depth, pa.int32())})
        unique = table.group_by(["prefix", "depth"]).aggregate([]).sort_by("prefix")
        pq.write_table(unique, folder / PREFIXES_FILE)
        return {
            "entries": unique.num_rows,
            "skipped_invalid": skipped,
            "duplicates": table.num_rows - unique.num_rows,
            "details": {"form": "canonical", "max_depth": int(pc.max(depth).as_py() or 0)},
        }


class ExcludeUrlPrefixKind(UrlPrefixKind):
    name = "exclude-url-prefix"
    default_action = Action.EXCLUDE
    description = "rights holders' opt-outs by host or path prefix"


register_kind(UrlPrefixKind())
register_kind(ExcludeUrlPrefixKind())
