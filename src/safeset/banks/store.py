"""The bank directory: `BANK_DIR/<name>/bank.json` (provenance) beside the kind's compact entry files.

bank.json also records every stored file's size and SHA-256, so that a bank damaged after import (a deleted or
truncated `.npy`, a half-copied folder) is refused by name when a scan opens it, instead of failing deep in a
matcher; `BankStore.verify` re-reads the digests for a full check."""

from __future__ import annotations

import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.banks.listfile import InvalidLines, ListFormat, ListValues, read_list
from safeset.banks.options import options_from
from safeset.errors import InputError, SafesetError
from safeset.fsutil import PRIVATE_FILE_MODE, make_private_dir, sha256_file, write_json
from safeset.policy.actions import Action

BANK_FORMAT_VERSION = 1
#: Column of a bank's parquet entries holding each entry's source line (absent in banks imported before).
LINE_COLUMN = "line"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    """One kind of list: how its file is read and checked, how it is stored, and which files hold it.

    Every kind reads its file with `listfile.read_list` (one reader, one header rule for all kinds) and marks
    the rows its checks refuse in an `InvalidLines`; `check` is also what decides whether a first line that
    names a column is a header (it is, only if it is not a valid entry)."""

    name: str
    default_action: ClassVar[Action] = Action.REMOVE
    description: str = ""
    #: The dataclass of this kind's import options (`bank add` offers its fields as flags); None: it has none.
    import_options: ClassVar[type | None] = None
    list_format: ListFormat = ListFormat()

    def read(self, source: Path, column: str | None) -> ListValues:
        return read_list(source, self.list_format, column, lambda listing: self.check(listing).good)

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: Any
    ) -> dict[str, Any]:
        """Read the list file and import it; kinds with options (an `import_options` instance) or several files
        override this."""
        listing = self.read(source, column)
        counts = self.import_values(listing, folder, source, skip_invalid)
        counts.setdefault("details", {}).update(listing.details())
        return counts

    @abstractmethod
    def check(self, listing: ListValues) -> InvalidLines:
        """Mark the rows that are not valid entries of this kind, with the reason."""

    @abstractmethod
    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        """Validate and store entries; return counts (`entries`, `skipped_invalid`, `duplicates`, ...)."""

    @abstractmethod
    def stored_files(self, details: dict[str, Any]) -> list[str]:
        """Files a bank of this kind keeps beside bank.json (a KeyError if `details` lack what names them)."""


KINDS: dict[str, BankKind] = {}  # filled by the kinds' packages as they are imported (`load_plugins`)


def register_kind(kind: BankKind) -> None:
    """Later capabilities (perceptual hashes, terms) add their kinds here."""
    KINDS[kind.name] = kind


def _stored_file_problem(path: Path, recorded: dict[str, Any] | None) -> str | None:
    """Why a bank's stored file cannot be used, or None. Cheap: sizes and headers, not contents."""
    if not path.is_file():
        return "stored file missing"
    size = path.stat().st_size
    if recorded is not None and size != recorded.get("bytes"):
        return f"stored file has {size} bytes, {recorded.get('bytes')} were written"
    try:
        if path.suffix == ".npy":
            np.load(path, mmap_mode="r")  # parses the header and maps the data: checks shape against size
        elif path.suffix == ".parquet":
            pq.read_metadata(path)
    except (OSError, ValueError, EOFError, pa.ArrowException) as exc:
        return f"stored file is damaged ({exc})"
    return None


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
        options: Any = None,
    ) -> BankInfo:
        """Import `source` as bank `name`. `options` is the kind's `import_options` instance, or the same as a
        dict of field values (None values meaning "not given"), or None for the kind's defaults."""
        if not _NAME.match(name):
            raise SafesetError(f"bank name {name!r} must be letters, digits, '_', '.', '-' (max 64)")
        if kind not in KINDS:
            raise SafesetError(f"unknown bank kind {kind!r}; choose from {', '.join(KINDS)}")
        handler = KINDS[kind]
        if options is None or isinstance(options, dict):
            options = options_from(handler.import_options, options or {}, kind)  # type: ignore[arg-type]
        elif handler.import_options is None or not isinstance(options, handler.import_options):
            raise SafesetError(f"{type(options).__name__} are not import options of banks of kind {kind!r}")
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
            info.details["stored_files"] = {
                path.name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
                for path in sorted(staging.iterdir())
            }
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
        """Provenance of every bank (their stored files are checked when a bank is opened with `info`)."""
        if not self.root.is_dir():
            return []
        infos = []
        for meta in sorted(self.root.glob("*/bank.json")):
            infos.append(self.info(meta.parent.name, check_files=False))
        return infos

    def info(self, name: str, *, check_files: bool = True) -> BankInfo:
        """A bank's provenance; with `check_files`, also refuse a bank whose stored files are missing or damaged
        (sizes and headers: cheap enough for every scan), naming the bank and the file."""
        import json

        path = self.folder(name) / "bank.json"
        if not path.is_file():
            raise SafesetError(f"no bank named {name!r} in {self.root}")
        try:
            data = json.loads(path.read_text())
            info = BankInfo(**data)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"bank {name!r}: corrupt bank metadata: {exc}", path) from exc
        if not isinstance(info.details, dict):
            raise InputError(f"bank {name!r}: corrupt bank metadata: details is not an object", path)
        if check_files:
            self._check_stored_files(info)
        return info

    def _stored_files(self, info: BankInfo) -> dict[str, dict[str, Any] | None]:
        """Files the bank must hold: those its kind names and those recorded at import (with size, digest)."""
        recorded = info.details.get("stored_files")
        files: dict[str, dict[str, Any] | None] = dict(recorded) if isinstance(recorded, dict) else {}
        kind = KINDS.get(info.kind)
        if kind is not None:  # an unknown kind is refused by the scan, which names the kinds it has
            try:
                expected = kind.stored_files(info.details)
            except (KeyError, TypeError, ValueError) as exc:
                path = self.folder(info.name) / "bank.json"
                raise InputError(f"bank {info.name!r}: bank metadata lacks {exc}; re-import the bank", path) from exc
            files.update({name: files.get(name) for name in expected})
        return files

    def _check_stored_files(self, info: BankInfo) -> None:
        folder = self.folder(info.name)
        for name, recorded in sorted(self._stored_files(info).items()):
            problem = _stored_file_problem(folder / name, recorded if isinstance(recorded, dict) else None)
            if problem:
                raise InputError(
                    f"bank {info.name!r} is damaged: {problem}; re-import it with `safeset bank add --replace`",
                    folder / name,
                )

    def verify(self, name: str) -> BankInfo:
        """Full check of a bank: every stored file present and with the SHA-256 recorded at import."""
        info = self.info(name)
        folder = self.folder(name)
        for file_name, recorded in sorted(self._stored_files(info).items()):
            if isinstance(recorded, dict) and sha256_file(folder / file_name) != recorded.get("sha256"):
                raise InputError(
                    f"bank {name!r} is damaged: stored file changed since import; re-import it", folder / file_name
                )
        return info

    def remove(self, name: str) -> None:
        self.info(name, check_files=False)
        shutil.rmtree(self.folder(name))
