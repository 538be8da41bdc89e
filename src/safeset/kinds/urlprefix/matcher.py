"""URL prefix matching: each URL's canonical form cut after 1, 2, ... path segments, looked up per depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import safeset.kinds.urlprefix.bank  # noqa: F401  (registers the url-prefix kinds)
from safeset.banks.store import LINE_COLUMN, BankInfo
from safeset.fsutil import read_parquet
from safeset.kinds.base import DatasetOffer, Hits, Matcher, entry_line, entry_lines, positions_of, register_matcher
from safeset.kinds.urlprefix.bank import PREFIXES_FILE
from safeset.signals.compute import Signals


@register_matcher
class UrlPrefixMatcher(Matcher):
    """A URL matches an entry of depth d when its first d `/`-separated parts (query removed) equal the
    entry, so a match always ends at a segment boundary. One `is_in` per depth the bank holds."""

    kinds = ("url-prefix", "exclude-url-prefix")

    def __init__(self, info: BankInfo, folder: Path) -> None:
        super().__init__(info, folder)
        table = read_parquet(folder / PREFIXES_FILE)
        depths = table["depth"].to_numpy()
        self.prefixes = table["prefix"].combine_chunks()
        self.lines = table[LINE_COLUMN].combine_chunks() if LINE_COLUMN in table.column_names else None
        self.by_depth = {int(d): self.prefixes.filter(pa.array(depths == d)) for d in sorted(set(depths.tolist()))}

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        if offer.has_urls:
            return None
        return f"bank {self.info.name!r} holds URL prefixes, but the dataset has no URL column"

    def match(self, signals: Signals) -> list[Hits]:
        canonical = signals.url_form("canonical")
        if canonical is None or not self.by_depth:
            return []
        path = pc.list_element(pc.split_pattern(canonical, "?", max_splits=1), 0)
        parts = pc.split_pattern(path, "/")
        available = np.asarray(pc.fill_null(pc.list_value_length(parts), 0).to_numpy(zero_copy_only=False))
        matched = np.zeros(len(canonical), dtype=bool)
        entry = np.empty(len(canonical), dtype=object)
        for depth, prefixes in self.by_depth.items():  # shallowest first: the broadest entry is reported
            deep_enough = available >= depth
            if not deep_enough.any():
                continue
            candidate = pc.binary_join(pc.list_slice(parts, 0, depth), "/")
            found = pc.fill_null(pc.is_in(candidate, value_set=prefixes), False)
            mask = np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
            new = mask & deep_enough & ~matched
            if new.any():
                entry[new] = np.asarray(candidate.filter(pa.array(new)).to_pylist(), dtype=object)
                matched |= new
        if not matched.any():
            return []
        pos = positions_of(matched)
        lines = entry_lines(pa.array(list(entry[pos]), type=pa.string()), self.prefixes, self.lines)
        evidence = [f"url-prefix:{e}{entry_line(n)}" for e, n in zip(entry[pos], lines, strict=True)]
        return [Hits(pos, evidence, self.info.kind)]
