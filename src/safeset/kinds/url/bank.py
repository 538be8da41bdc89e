"""Banks of URLs (matched in several normal forms), of URL digests (hotline URL-MD5 lists) and of domains,
including rights holders' opt-out lists."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.banks.listfile import InvalidLines, ListFormat, ListValues
from safeset.banks.store import LINE_COLUMN, BankKind, register_kind
from safeset.errors import SafesetError
from safeset.kinds.digest.bank import DigestKind
from safeset.kinds.url.options import UrlDigestImportOptions
from safeset.policy.actions import Action
from safeset.signals.urls import NORMALIZERS, normalize_domain, registrable_domain

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


class UrlDigestKind(DigestKind):
    """Hashes of URLs. Lists are hashed under different normal forms, so a bank is matched against each form
    in `url_forms` (default: all of them, i.e. the ThreatExchange form and the canonical form)."""

    import_options = UrlDigestImportOptions

    def __init__(self, name: str, algorithm: str, description: str) -> None:
        super().__init__(name, algorithm, description)
        names = (f"url_{algorithm}", "url_hash", algorithm, "hash", "signal_value", "indicator", "value")
        self.list_format = ListFormat(entry_columns=names)

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: UrlDigestImportOptions
    ) -> dict[str, Any]:
        forms = list(options.url_forms)
        unknown = [f for f in forms if f not in NORMALIZERS]
        if unknown or not forms:
            raise SafesetError(f"unknown URL form(s) {', '.join(unknown)}; choose from {', '.join(NORMALIZERS)}")
        counts = super().import_file(source, column, folder, skip_invalid, options)
        forms = list(dict.fromkeys(forms))
        counts["details"]["url_forms"] = forms
        counts["details"]["settings_sha256"] = hashlib.sha256(",".join(forms).encode()).hexdigest()
        return counts


def _mask(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def public_suffix_hosts(hosts: pa.Array, rows: np.ndarray) -> np.ndarray:
    """Which of the selected rows' hosts are public suffixes (`co.kr`, `com`, `github.io`, a single label):
    an entry there would cover every site registered under it. Checked once per distinct host."""
    public = np.zeros(len(hosts), dtype=bool)
    chosen = np.flatnonzero(rows)
    if not len(chosen):
        return public
    selected = hosts.take(pa.array(chosen))
    distinct = pc.unique(selected)
    verdict = pa.array([registrable_domain(h or "") is None for h in distinct.to_pylist()], type=pa.bool_())
    public[chosen] = _mask(pc.take(verdict, pc.index_in(selected, value_set=distinct)))
    return public


class UrlKind(BankKind):
    name = "url"
    description = "plain URLs, matched under every URL normal form"
    list_format = ListFormat(entry_columns=("url", "urls", "link", "uri", "indicator", "value"))

    def check(self, listing: ListValues) -> InvalidLines:
        from safeset.signals.urls import hosts_array

        invalid = InvalidLines(listing)
        hosts = hosts_array(listing.values)
        # A host of the web has a dot (or is an IPv6 literal); a lone word such as a header's `url` is no URL.
        web_host = _mask(pc.or_(pc.match_substring(hosts, "."), pc.match_substring(hosts, ":")))
        spaced = _mask(pc.match_substring_regex(listing.values, r"\s"))
        invalid.add(~web_host | spaced, "not a URL with a host")
        return invalid

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        invalid = self.check(values)
        skipped = invalid.settle(skip_invalid)
        good = values.values.filter(pa.array(invalid.good))
        columns = {name: normalizer.normalize_array(good) for name, normalizer in NORMALIZERS.items()}
        # The source line of each URL, so that a finding names the entry that matched (`url L7`).
        lines = pa.array(values.lines[invalid.good].astype(np.int32), type=pa.int32())
        pq.write_table(pa.table({**columns, LINE_COLUMN: lines}), folder / "urls.parquet")
        unique = len(pc.unique(columns["canonical"]))
        return {
            "entries": len(good),
            "skipped_invalid": skipped,
            "duplicates": len(good) - unique,
            "details": {"normalizers": list(columns)},
        }

    def stored_files(self, details: dict[str, Any]) -> list[str]:
        return ["urls.parquet"]


class ExcludeUrlKind(UrlKind):
    name = "exclude-url"
    default_action = Action.EXCLUDE
    description = "rights holders' opt-out URLs"


class DomainKind(BankKind):
    name = "domain"
    description = "domains; a row matches when its URL's host is the domain or a subdomain of it"
    list_format = ListFormat(entry_columns=("domain", "domains", "host", "hostname", "indicator", "value"))

    def check(self, listing: ListValues) -> InvalidLines:
        invalid = InvalidLines(listing)
        normalised: list[str] = []
        for entry in listing.values.to_pylist():
            try:
                normalised.append(normalize_domain(entry))
            except (UnicodeError, ValueError):
                normalised.append("")
        malformed = np.array([not _DOMAIN.match(d) or "." not in d for d in normalised], dtype=bool)
        invalid.add(malformed, "not a domain name")
        domains = pa.array(normalised, type=pa.string())
        invalid.add(
            public_suffix_hosts(domains, ~malformed),
            "a public suffix, which covers every site registered under it; list the sites themselves",
        )
        invalid.derived["domains"] = normalised
        return invalid

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        invalid = self.check(values)
        skipped = invalid.settle(skip_invalid)
        normalised = [d for d, ok in zip(invalid.derived["domains"], invalid.good, strict=True) if ok]
        lines = values.lines[invalid.good].astype(np.int32)
        table = pa.table({"domain": pa.array(normalised, type=pa.string()), LINE_COLUMN: lines})
        # One row per domain with the first line that listed it, so that a finding names its entry.
        grouped = table.group_by("domain").aggregate([(LINE_COLUMN, "min")])
        unique = pa.table({"domain": grouped["domain"], LINE_COLUMN: grouped[f"{LINE_COLUMN}_min"]}).sort_by("domain")
        pq.write_table(unique, folder / "domains.parquet")
        return {"entries": unique.num_rows, "skipped_invalid": skipped, "duplicates": len(normalised) - unique.num_rows}

    def stored_files(self, details: dict[str, Any]) -> list[str]:
        return ["domains.parquet"]


class ExcludeDomainKind(DomainKind):
    name = "exclude-domain"
    default_action = Action.EXCLUDE
    description = "rights holders' opt-out domains"


for _kind in (
    UrlKind(),
    UrlDigestKind("url-md5", "md5", "MD5 of URLs (ThreatExchange HASH_URL_MD5 form and canonical form)"),
    UrlDigestKind("url-sha1", "sha1", "SHA-1 of URLs in the ThreatExchange and canonical forms"),
    UrlDigestKind("url-sha256", "sha256", "SHA-256 of URLs in the ThreatExchange and canonical forms"),
    DomainKind(),
    ExcludeDomainKind(),
    ExcludeUrlKind(),
):
    register_kind(_kind)
