"""The bank directory: `BANK_DIR/<name>/bank.json` (provenance) beside the kind's compact entry files."""

from __future__ import annotations

import hashlib
import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.banks.digestset import DigestSet
from safeset.banks.listfile import ListValues, invalid_report, read_list
from safeset.errors import InputError, SafesetError
from safeset.fsutil import PRIVATE_FILE_MODE, make_private_dir, sha256_file, write_json
from safeset.policy.actions import Action
from safeset.signals.digests import DIGEST_SIZES, hex_to_digests
from safeset.signals.urls import NORMALIZERS, normalize_domain

BANK_FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


@dataclass
class BankInfo:
    name: str
    kind: str
    action: str
    entries: int
    source_file: str
    source_sha256: str
    imported_at: str
    skipped_invalid: int = 0
    duplicates: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    format_version: int = BANK_FORMAT_VERSION

    def digest(self) -> str:
        """Identity of the bank's content, recorded in runs so that a resume can refuse a changed bank."""
        identity = f"{self.kind}:{self.source_sha256}:{self.entries}:{self.action}"
        # Import options that change what matches (normalisation, match mode, rule lists) are part of it.
        settings = self.details.get("settings_sha256")
        return f"{identity}:{settings}" if settings else identity


@dataclass
class ImportResult:
    info: BankInfo
    invalid_lines: list[int]


class BankKind(ABC):
    """One kind of list: how to import it from a file and how to store it."""

    name: str
    default_action: ClassVar[Action] = Action.REMOVE
    description: str = ""
    #: Kind-specific `bank add` options this kind accepts (e.g. `match` for terms); others are refused.
    accepted_options: ClassVar[frozenset[str]] = frozenset()

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Read the list file and import it; kinds with their own file format or options override this."""
        return self.import_values(read_list(source, column), folder, source, skip_invalid)

    @abstractmethod
    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        """Validate and store entries; return counts (`entries`, `skipped_invalid`, `duplicates`, ...)."""

    @staticmethod
    def reject_or_skip(values: ListValues, bad: np.ndarray, source: Path, reason: str, skip_invalid: bool) -> int:
        """Refuse a list with invalid lines (naming them), or count them when the user chose to skip."""
        n_bad = int(bad.sum())
        if n_bad and not skip_invalid:
            lines, shown = values.lines[bad], values.values.filter(pa.array(bad))
            raise InputError(invalid_report(source, lines, shown, reason), source, int(lines[0]))
        return n_bad


class DigestKind(BankKind):
    """Cryptographic hashes of image bytes (or of normalised URLs), as hex; one instance per kind."""

    def __init__(self, name: str, algorithm: str, description: str) -> None:
        self.name = name
        self.algorithm = algorithm
        self.description = description

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        digests, valid = hex_to_digests(values.values, DIGEST_SIZES[self.algorithm])
        skipped = self.reject_or_skip(values, ~valid, source, f"not a {self.algorithm} hex digest", skip_invalid)
        dset = DigestSet.build(digests[valid])
        dset.save(folder)
        return {
            "entries": len(dset),
            "skipped_invalid": skipped,
            "duplicates": int(valid.sum()) - len(dset),
            "details": {"bitmap_bits": dset.bits, "algorithm": self.algorithm},
        }


class UrlDigestKind(DigestKind):
    """Hashes of URLs. Lists are hashed under different normal forms, so a bank is matched against each form
    in `url_forms` (default: all of them, i.e. the ThreatExchange form and the canonical form)."""

    accepted_options: ClassVar[frozenset[str]] = frozenset({"url_forms"})

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: dict[str, Any]
    ) -> dict[str, Any]:
        forms = list(options.get("url_forms") or NORMALIZERS)
        unknown = [f for f in forms if f not in NORMALIZERS]
        if unknown or not forms:
            raise SafesetError(f"unknown URL form(s) {', '.join(unknown)}; choose from {', '.join(NORMALIZERS)}")
        counts = super().import_file(source, column, folder, skip_invalid, options)
        forms = list(dict.fromkeys(forms))
        counts["details"]["url_forms"] = forms
        counts["details"]["settings_sha256"] = hashlib.sha256(",".join(forms).encode()).hexdigest()
        return counts


class UrlKind(BankKind):
    name = "url"
    description = "plain URLs, matched under every URL normal form"

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        from safeset.signals.urls import hosts_array

        hosts = hosts_array(values.values)
        bad = ~np.asarray(pc.fill_null(pc.not_equal(hosts, ""), False).to_numpy(zero_copy_only=False), dtype=bool)
        bad |= np.asarray(pc.match_substring_regex(values.values, r"\s").to_numpy(zero_copy_only=False))
        skipped = self.reject_or_skip(values, bad, source, "not a URL with a host", skip_invalid)
        good = values.values.filter(pa.array(~bad))
        columns = {name: normalizer.normalize_array(good) for name, normalizer in NORMALIZERS.items()}
        pq.write_table(pa.table(columns), folder / "urls.parquet")
        unique = len(pc.unique(columns["canonical"]))
        return {
            "entries": len(good),
            "skipped_invalid": skipped,
            "duplicates": len(good) - unique,
            "details": {"normalizers": list(columns)},
        }


class ExcludeUrlKind(UrlKind):
    name = "exclude-url"
    default_action = Action.EXCLUDE
    description = "rights holders' opt-out URLs"


class DomainKind(BankKind):
    name = "domain"
    description = "domains; a row matches when its URL's host is the domain or a subdomain of it"

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        normalised: list[str] = []
        bad = np.zeros(len(values.values), dtype=bool)
        for i, entry in enumerate(values.values.to_pylist()):
            try:
                domain = normalize_domain(entry)
            except (UnicodeError, ValueError):
                domain = ""
            if not _DOMAIN.match(domain) or "." not in domain:
                bad[i] = True
            else:
                normalised.append(domain)
        skipped = self.reject_or_skip(values, bad, source, "not a domain name", skip_invalid)
        unique = sorted(set(normalised))
        pq.write_table(pa.table({"domain": pa.array(unique, type=pa.string())}), folder / "domains.parquet")
        return {"entries": len(unique), "skipped_invalid": skipped, "duplicates": len(normalised) - len(unique)}


class ExcludeDomainKind(DomainKind):
    name = "exclude-domain"
    default_action = Action.EXCLUDE
    description = "rights holders' opt-out domains"


KINDS: dict[str, BankKind] = {
    k.name: k
    for k in (
        DigestKind("md5", "md5", "MD5 of image bytes (hex per line, or a CSV column)"),
        DigestKind("sha1", "sha1", "SHA-1 of image bytes"),
        DigestKind("sha256", "sha256", "SHA-256 of image bytes"),
        UrlKind(),
        UrlDigestKind("url-md5", "md5", "MD5 of URLs (ThreatExchange HASH_URL_MD5 form and canonical form)"),
        UrlDigestKind("url-sha1", "sha1", "SHA-1 of URLs in the ThreatExchange and canonical forms"),
        UrlDigestKind("url-sha256", "sha256", "SHA-256 of URLs in the ThreatExchange and canonical forms"),
        DomainKind(),
        ExcludeDomainKind(),
        ExcludeUrlKind(),
    )
}


def register_kind(kind: BankKind) -> None:
    """Later capabilities (perceptual hashes, terms) add their kinds here."""
    KINDS[kind.name] = kind


class BankStore:
    def __init__(self, root: Path) -> None:
        from safeset.registry import load_plugins

        load_plugins()  # kinds added by later capabilities register on import
        self.root = root

    def folder(self, name: str) -> Path:
        return self.root / name

    def add(
        self,
        name: str,
        kind: str,
        source: Path,
        *,
        column: str | None = None,
        action: str | None = None,
        skip_invalid: bool = False,
        replace: bool = False,
        options: dict[str, Any] | None = None,
    ) -> BankInfo:
        if not _NAME.match(name):
            raise SafesetError(f"bank name {name!r} must be letters, digits, '_', '.', '-' (max 64)")
        if kind not in KINDS:
            raise SafesetError(f"unknown bank kind {kind!r}; choose from {', '.join(KINDS)}")
        handler = KINDS[kind]
        options = {k: v for k, v in (options or {}).items() if v is not None}
        refused = sorted(set(options) - handler.accepted_options)
        if refused:
            flags = ", ".join("--" + o.replace("_", "-") for o in refused)
            raise SafesetError(f"{flags} do(es) not apply to banks of kind {kind!r}")
        chosen = Action(action) if action else handler.default_action
        make_private_dir(self.root)
        final = self.folder(name)
        if final.exists() and not replace:
            raise SafesetError(f"bank {name!r} already exists in {self.root}; pass --replace to re-import it")
        if not source.is_file():
            raise InputError("list file not found", source)
        staging = self.root / f".{name}.importing"
        if staging.exists():
            shutil.rmtree(staging)
        make_private_dir(staging)
        try:
            counts = handler.import_file(source, column, staging, skip_invalid, options)
            info = BankInfo(
                name=name,
                kind=kind,
                action=chosen.value,
                entries=int(counts["entries"]),
                skipped_invalid=int(counts.get("skipped_invalid", 0)),
                duplicates=int(counts.get("duplicates", 0)),
                details=dict(counts.get("details", {})),
                source_file=str(source.resolve()),
                source_sha256=sha256_file(source),
                imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            if column:
                info.details["column"] = column
            write_json(staging / "bank.json", asdict(info), private=True)
            for path in staging.iterdir():
                path.chmod(PRIVATE_FILE_MODE)
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return info

    def list(self) -> list[BankInfo]:
        if not self.root.is_dir():
            return []
        infos = []
        for meta in sorted(self.root.glob("*/bank.json")):
            infos.append(self.info(meta.parent.name))
        return infos

    def info(self, name: str) -> BankInfo:
        import json

        path = self.folder(name) / "bank.json"
        if not path.is_file():
            raise SafesetError(f"no bank named {name!r} in {self.root}")
        try:
            data = json.loads(path.read_text())
            return BankInfo(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"corrupt bank metadata: {exc}", path) from exc

    def remove(self, name: str) -> None:
        self.info(name)
        shutil.rmtree(self.folder(name))
