"""URLs in several normal forms, URL digests and domains, matched exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.banks.store import LINE_COLUMN, BankInfo
from safeset.fsutil import read_parquet
from safeset.kinds.base import (
    DatasetOffer,
    Hits,
    Matcher,
    entry_line,
    entry_lines,
    first_lines,
    positions_of,
    register_matcher,
)
from safeset.kinds.digest.digestset import DigestedStrings, DigestSet
from safeset.signals.compute import Signals
from safeset.signals.digests import digests_to_hex


@register_matcher
class UrlDigestMatcher(Matcher):
    """Hashes of URLs, for lists that arrive already hashed: the row's URL is hashed in every normal form the
    bank names (ThreatExchange `te`, `canonical`; banks imported before forms were recorded: `te`), and the
    evidence says which form matched."""

    kinds = ("url-md5", "url-sha1", "url-sha256")

    def __init__(self, info: BankInfo, folder: Path) -> None:
        super().__init__(info, folder)
        self.algorithm = info.kind.removeprefix("url-")
        self.forms: list[str] = list(info.details.get("url_forms", ["te"]))
        self.digests = DigestSet.load(folder, int(info.details["bitmap_bits"]))

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        if offer.has_urls:
            return None
        return f"bank {self.info.name!r} holds URL hashes, but the dataset has no URL column"

    def match(self, signals: Signals) -> list[Hits]:
        matched: np.ndarray | None = None
        evidence: np.ndarray | None = None
        for index, form in enumerate(self.forms):
            pair = signals.url_digest(self.algorithm, form)
            if pair is None:
                return []
            digests, valid = pair
            for earlier in self.forms[:index]:  # a row whose form equals an earlier one's was looked up already
                same = signals.url_forms_equal(form, earlier)
                if same is not None:
                    valid = valid & ~same
            found = self.digests.lookup(digests, valid)
            mask = found >= 0
            if matched is None:
                matched, evidence = np.zeros(len(mask), dtype=bool), np.empty(len(mask), dtype=object)
            new = mask & ~matched  # the first form in the bank's order that matched is reported
            if new.any():
                pos = positions_of(new)
                lines = self.digests.lines_of(found[pos])
                evidence[pos] = [
                    f"{self.info.kind}:{h}{entry_line(line)} ({form} form)"
                    for h, line in zip(digests_to_hex(digests[pos]), lines, strict=True)
                ]
                matched |= new
        if matched is None or not matched.any():
            return []
        pos = positions_of(matched)
        return [Hits(pos, list(evidence[pos]), self.info.kind)]  # type: ignore[index]


@register_matcher
class UrlMatcher(Matcher):
    """Plain URL lists, matched in every normal form the bank was stored under."""

    kinds = ("url", "exclude-url")

    def __init__(self, info: BankInfo, folder: Path) -> None:
        super().__init__(info, folder)
        table = read_parquet(folder / "urls.parquet")
        lines = table[LINE_COLUMN].combine_chunks() if LINE_COLUMN in table.column_names else None
        self.forms: dict[str, pa.Array] = {}
        #: Per form, the source line of each distinct value (its first line), aligned with `forms`.
        self.lines: dict[str, np.ndarray | None] = {}
        for name in table.column_names:
            if name == LINE_COLUMN:
                continue
            column = table[name].combine_chunks()
            present = column.is_valid()
            distinct = pc.unique(column.filter(present))
            self.forms[name] = distinct
            self.lines[name] = (
                None if lines is None else first_lines(column.filter(present), distinct, lines.filter(present))
            )
        # Looked up by the MD5 of the batch's forms (shared with URL-MD5 banks); built once, not per batch.
        self.sets = {name: DigestedStrings(values) for name, values in self.forms.items()}

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        return None if offer.has_urls else f"bank {self.info.name!r} holds URLs, but the dataset has no URL column"

    def match(self, signals: Signals) -> list[Hits]:
        matched: np.ndarray | None = None
        evidence: np.ndarray | None = None
        for name, values in self.sets.items():
            forms = signals.url_form_bytes(name)
            digests = signals.url_digest("md5", name)
            if forms is None or digests is None:
                return []
            found = values.positions(digests[0], digests[1], forms)
            if matched is None:
                matched, evidence = np.zeros(len(found), dtype=bool), np.empty(len(found), dtype=object)
            new = (found >= 0) & ~matched  # the first form in the bank's order that matched is reported
            if new.any():
                pos = positions_of(new)
                lines = self.lines[name]
                if lines is None:  # a bank imported before lines were kept
                    evidence[pos] = f"url matched in {name} form"
                else:
                    evidence[pos] = [f"url L{int(line)} ({name} form)" for line in lines[found[pos]]]
                matched |= new
        if matched is None or evidence is None or not matched.any():
            return []
        pos = positions_of(matched)
        detector = "exclude-url" if self.info.kind == "exclude-url" else "url"
        return [Hits(pos, list(evidence[pos]), detector)]


@register_matcher
class DomainMatcher(Matcher):
    """Domain lists: a host matches its own entry or any parent domain's (sub.example.com -> example.com)."""

    kinds = ("domain", "exclude-domain")
    max_labels = 12

    def __init__(self, info: BankInfo, folder: Path) -> None:
        super().__init__(info, folder)
        table = read_parquet(folder / "domains.parquet")
        self.domains = table["domain"].combine_chunks()
        self.lines = table[LINE_COLUMN].combine_chunks() if LINE_COLUMN in table.column_names else None

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        return None if offer.has_urls else f"bank {self.info.name!r} holds domains, but the dataset has no URL column"

    def match(self, signals: Signals) -> list[Hits]:
        hosts = signals.hosts()
        if hosts is None or len(self.domains) == 0:
            return []
        n = len(hosts)
        matched = np.zeros(n, dtype=bool)
        entry = np.empty(n, dtype=object)
        candidate = hosts
        for _ in range(self.max_labels):
            mask = np.asarray(
                pc.fill_null(pc.is_in(candidate, value_set=self.domains), False).to_numpy(zero_copy_only=False)
            )
            new = mask & ~matched
            if new.any():
                entry[new] = np.asarray(candidate.filter(pa.array(new)).to_pylist(), dtype=object)
                matched |= new
            # Strip the leftmost label; hosts without a dot become null and drop out.
            has_dot = pc.fill_null(pc.match_substring(candidate, "."), False)
            if not pc.any(has_dot).as_py():
                break
            candidate = pc.if_else(
                has_dot, pc.replace_substring_regex(candidate, r"^[^.]*\.", "", max_replacements=1), None
            )
        if not matched.any():
            return []
        pos = positions_of(matched)
        detector = "exclude-domain" if self.info.kind == "exclude-domain" else "domain"
        domains = pa.array(list(entry[pos]), type=pa.string())
        lines = entry_lines(domains, self.domains, self.lines)
        return [Hits(pos, [f"domain:{d}{entry_line(n)}" for d, n in zip(entry[pos], lines, strict=True)], detector)]
