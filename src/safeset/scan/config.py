"""What a scan is asked to do — one typed configuration whatever it came from (flags, a policy file, Python) —
and the fingerprint a resumed run must match."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import tomli_w

from safeset.banks.store import BankInfo
from safeset.errors import SafesetError
from safeset.expansion.options import DuplicateOptions, NeighborOptions
from safeset.fsutil import sha256_file
from safeset.io.base import DEFAULT_MAX_MEMBER_BYTES
from safeset.io.columns import ColumnOptions, parse_hash_col
from safeset.io.embeddings import EmbeddingOptions
from safeset.io.location import normalised_spec
from safeset.kinds.pdq.options import PdqOptions
from safeset.policy.actions import ActionPolicy, ReleasePolicy
from safeset.signals.images import DEFAULT_MAX_PIXELS
from safeset.triage.options import TriageOptions


@dataclass(frozen=True)
class ScanConfig:
    # One location (a local path, a glob, or a URL such as s3://bucket/prefix), or several (io/location.py).
    dataset: str | tuple[str, ...]
    input_format: str = "auto"
    banks_dir: str = ""
    bank_names: tuple[str, ...] = ()
    columns: ColumnOptions = field(default_factory=ColumnOptions)
    metadata_only: bool = False
    batch_rows: int = 4096
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    expanders: tuple[str, ...] = ()
    # One section per kind, detector family and expander; each owns its defaults.
    pdq: PdqOptions = field(default_factory=PdqOptions)
    triage: TriageOptions = field(default_factory=TriageOptions)
    neighbor: NeighborOptions = field(default_factory=NeighborOptions)
    duplicate: DuplicateOptions = field(default_factory=DuplicateOptions)
    embeddings: EmbeddingOptions = field(default_factory=EmbeddingOptions)
    actions: ActionPolicy = field(default_factory=ActionPolicy)
    # How `clean` treats this run's rows unless its own flags say otherwise (recorded with the run).
    release: ReleasePolicy = field(default_factory=ReleasePolicy)

    def __post_init__(self) -> None:
        if self.batch_rows < 1 or self.max_pixels < 1 or self.max_member_bytes < 1:
            raise SafesetError("batch_rows, max_pixels and max_member_bytes must be positive")

    def fingerprint(self, banks: list[BankInfo]) -> dict[str, Any]:
        """What must be equal for a resumed run to produce the same findings: every typed field, the banks'
        digests, and the content digest of every file or folder a field names (an edited seed file or a
        replaced embeddings part changes results, so it changes the fingerprint too)."""
        settings = to_plain(self)
        settings.pop("release")  # decides what `clean` keeps, not what the scan finds
        settings["dataset"] = normalised_spec(self.dataset)  # a local path: str(Path(p).resolve()), as always
        fingerprint = {
            "settings": settings,
            "banks": sorted(b.name + "=" + b.digest() for b in banks),
            "files": {name: content_digest(path) for name, path in sorted(named_paths(self).items())},
        }
        return json.loads(json.dumps(fingerprint))  # as run.json stores it: tuples become lists


def to_plain(value: Any) -> Any:
    """A dataclass as JSON-ready dicts and lists (paths as strings, enums as their values)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def named_paths(value: Any, prefix: str = "") -> dict[str, Path]:
    """Every `Path` field of a (nested) dataclass, by dotted field name."""
    found: dict[str, Path] = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        name = f"{prefix}{f.name}"
        if isinstance(item, Path):
            found[name] = item
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            found.update(named_paths(item, name + "."))
    return found


def content_digest(path: Path) -> str | None:
    """sha256 of a file, or of a folder's sorted (relative name, file digest) list; None when absent."""
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        listing = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            listing.update(f"{item.relative_to(path).as_posix()}\0{sha256_file(item)}\n".encode())
        return listing.hexdigest()
    return None


# -- the policy file: the same schema as the dataclasses, one TOML table per section ---------------------------


def load_policy(path: Path, **fixed: Any) -> ScanConfig:
    """A policy file (TOML) as a ScanConfig; `fixed` fields (the dataset, the bank directory) come from the
    command line. Unknown sections or keys, wrong types and bad values are one-line errors naming the file."""
    return config_from_dict(read_policy_file(path), where=str(path), **fixed)


def read_policy_file(path: Path) -> dict[str, Any]:
    """A policy file's tables, not yet checked against the schema (flags may still be laid over them)."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise SafesetError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SafesetError(f"{path}: not a valid TOML policy file: {exc}") from None


def config_from_dict(data: dict[str, Any], where: str = "policy", **fixed: Any) -> ScanConfig:
    """The Python form of a policy file: {"pdq": {"radius": 24}, "bank_names": [...], ...} -> ScanConfig."""
    merged = {**data, **{k: v for k, v in fixed.items() if v is not None}}
    try:
        return _build(ScanConfig, merged, where)
    except SafesetError:
        raise
    except (TypeError, ValueError) as exc:
        raise SafesetError(f"{where}: {exc}") from None


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SafesetError(f"{where}: expected a table, found {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SafesetError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
    values = {name: _convert(hints[name], value, f"{where}: {name}") for name, value in data.items()}
    try:
        return cls(**values)
    except SafesetError as exc:  # a section's own check (a radius out of range): say where it was set
        raise SafesetError(f"{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    """A TOML value as the field's declared type (exact types: a string is not a number, nor a number a bool)."""
    if hint is ActionPolicy:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise SafesetError(f"{where}: expected a table of signal = action")
        try:
            return ActionPolicy(tuple(sorted(value.items())))
        except SafesetError as exc:
            raise SafesetError(f"{where}: {exc}") from None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) > 1:  # `dataset`: one location (a string) or several (a list)
            listed = isinstance(value, list | tuple)
            arms = [a for a in arms if (typing.get_origin(a) is tuple) == listed][:1] or arms[:1]
        return _convert(arms[0], value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SafesetError(f"{where}: expected a list")
        if hint == tuple[tuple[str, str], ...]:  # hash columns, written NAME:KIND as on the command line
            return tuple(v if isinstance(v, tuple) else parse_hash_col(_expect(str, v, where)) for v in value)
        return tuple(_convert(args[0], v, where) for v in value)
    if hint is Path:
        return Path(_expect(str, value, where)) if not isinstance(value, Path) else value
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise SafesetError(f"{where}: {value!r} is not one of {', '.join(e.value for e in hint)}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return _expect(hint, value, where)


def _expect(kind: type, value: Any, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SafesetError(f"{where}: expected {kind.__name__}, found {type(value).__name__} {value!r}")
    return value


def policy_toml(config: ScanConfig) -> str:
    """The resolved policy as a policy file: what `safeset policy show` prints (loads back to the same config)."""
    return tomli_w.dumps(_policy_form(to_plain(config)))


def config_from_record(recorded: dict[str, Any], where: str) -> ScanConfig:
    """The configuration a run recorded in run.json (`to_plain` of it) as a ScanConfig again."""
    return config_from_dict(_policy_form(recorded), where=where)


def _policy_form(plain: dict[str, Any]) -> dict[str, Any]:
    """`to_plain` output in the policy file's spelling: actions as a table, hash columns as NAME:KIND, no nulls."""
    form = dict(plain)
    form["actions"] = dict((form.get("actions") or {}).get("overrides", []))
    columns = form["columns"] = dict(form.get("columns") or {})
    columns["hash_cols"] = [f"{column}:{kind}" for column, kind in columns.get("hash_cols", [])]
    return _drop_none(form)


def _drop_none(value: Any) -> Any:
    """TOML has no null: an absent key means the default, which for these fields is None."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value
