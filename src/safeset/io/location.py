"""Where a dataset is: a local path, a local glob, a URL of any fsspec filesystem (`s3://`, `gs://`, `hf://`,
`memory://`), or several of those — resolved once to one filesystem, a root and (for globs and several paths) the
files chosen.

Why one place: every reader, the shard pins and the run directory's checks need the same answers (is it local,
what is a file's id, how is it opened), and local data must keep today's code path and speed exactly. Local paths
therefore stay `pathlib.Path` and are opened by the operating system and pyarrow's native reader; remote ones are
`upath.UPath` objects, which carry their fsspec filesystem (so they pickle to executor workers) and expose the same
`open`, `exists`, `is_file`, `with_suffix` and `name` that the readers use. Credentials come from the environment,
as each fsspec backend reads them (for S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, ...).

Shard ids are paths relative to the location's root: a folder given alone is its own root, as before; for globs
and several paths the root is the deepest folder holding every match, so ids stay stable across runs and distinct
files never share one.
"""

from __future__ import annotations

import glob as local_glob
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias

from safeset.errors import InputError, SafesetError

if TYPE_CHECKING:
    from upath import UPath

#: A file or folder of a dataset: local (`Path`) or on an fsspec filesystem (`UPath`).
DataPath: TypeAlias = "Path | UPath"
#: What a configuration or the command line gives: one location or several.
LocationSpec: TypeAlias = "str | Path | Sequence[str | Path]"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GLOB_CHARACTERS = frozenset("*?[")


def scheme_of(spec: str) -> str:
    """The URL scheme of a location (`s3`, `memory`, ...), or '' for a local path (`file://` counts as local)."""
    match = _SCHEME.match(spec)
    if match is None or match.group(1).lower() == "file":
        return ""
    return match.group(1).lower()


def is_local(path: Any) -> bool:
    return isinstance(path, Path)


def has_glob(spec: str) -> bool:
    return any(c in _GLOB_CHARACTERS for c in spec)


def _local_spec(spec: str) -> str:
    return spec[len("file://") :] if spec.lower().startswith("file://") else spec


@dataclass(frozen=True)
class DatasetLocation:
    """A resolved dataset location. `files` is None when the root is the whole dataset (one folder or file given
    without a glob), else the files matched, sorted; `bases` are the folders (or files) each entry covers, which
    an output folder must stay out of."""

    spec: tuple[str, ...]
    protocol: str  # '' for local
    root: Any  # DataPath: the folder ids are relative to, or the one file given
    files: tuple[Any, ...] | None = None
    bases: tuple[Any, ...] = ()

    @property
    def local(self) -> bool:
        return self.protocol == ""

    def describe(self) -> str:
        return self.spec[0] if len(self.spec) == 1 else f"{self.spec[0]} (+{len(self.spec) - 1} more)"


def spec_list(spec: LocationSpec) -> list[str]:
    if isinstance(spec, str | Path):
        return [str(spec)]
    return [str(s) for s in spec]


def normalised_spec(spec: LocationSpec) -> str | list[str]:
    """How a run records and compares a location: local paths made absolute (a lone local path exactly as runs
    always recorded it: `str(Path(p).resolve())`), URLs as given without a trailing slash; one entry stays a
    string, several a list."""
    entries = spec_list(spec)
    normal = [
        str(Path(_local_spec(s)).resolve()) if not scheme_of(s) else s.rstrip("/") or s for s in entries
    ]
    return normal[0] if len(normal) == 1 else normal


def config_dataset(spec: LocationSpec) -> str | tuple[str, ...]:
    """The `ScanConfig.dataset` value for what the command line gave: one string, or a tuple of several."""
    entries = [_plain(s) for s in spec_list(spec)]
    return entries[0] if len(entries) == 1 else tuple(entries)


def _plain(entry: str) -> str:
    return str(Path(entry)) if not scheme_of(entry) and not entry.lower().startswith("file://") else entry


def _remote_path(spec: str) -> UPath:
    try:
        from upath import UPath
    except ImportError as exc:  # pragma: no cover - a runtime dependency
        raise SafesetError(f"{spec}: reading remote datasets needs universal-pathlib ({exc})") from None
    try:
        import fsspec

        fsspec.get_filesystem_class(scheme_of(spec))  # an unknown protocol would otherwise pass as a local name
        return UPath(spec)
    except (ImportError, ValueError) as exc:
        # fsspec names the package a protocol needs (s3fs, gcsfs, huggingface_hub).
        extra = " (pip install 'safeset[remote]')" if scheme_of(spec) in ("s3", "s3a") else ""
        raise SafesetError(f"{spec}: no filesystem for this URL: {exc}{extra}") from None


def remote_call(spec: Any, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a remote filesystem operation; whatever a backend raises (OSError, botocore's own errors) becomes an
    InputError naming the location, so a missing bucket or refused credential is one line, not a traceback."""
    try:
        return call(*args, **kwargs)
    except InputError:
        raise
    except Exception as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InputError(f"{what}: {reason}", spec) from exc


def resolve_location(spec: LocationSpec) -> DatasetLocation:
    """Resolve the location once: which filesystem, which root, which files (for globs and several entries)."""
    entries = spec_list(spec)
    if not entries:
        raise SafesetError("no dataset path given")
    protocols = {scheme_of(e) for e in entries}
    if len(protocols) > 1:
        raise SafesetError(
            f"dataset paths on different filesystems ({', '.join(sorted(p or 'local' for p in protocols))}); "
            "scan them separately"
        )
    protocol = protocols.pop()
    if len(entries) == 1 and not has_glob(entries[0]):
        root = Path(_local_spec(entries[0])) if not protocol else _remote_path(entries[0])
        return DatasetLocation(tuple(entries), protocol, root, None, (root,))
    files: dict[str, Any] = {}
    bases: list[Any] = []
    for entry in entries:
        found, base = _local_entry(entry) if not protocol else _remote_entry(entry)
        bases.append(base)
        for path in found:
            files.setdefault(_path_key(path), path)
    if not files:
        raise InputError("no file matches", " ".join(entries))
    root = _common_folder([_folder_of(b) for b in bases], protocol)
    ordered = tuple(files[k] for k in sorted(files))
    return DatasetLocation(tuple(entries), protocol, root, ordered, tuple(bases))


def _path_key(path: Any) -> str:
    return path.as_posix() if is_local(path) else path.path


def _folder_of(base: Any) -> Any:
    return base if _is_dir(base) else base.parent


def _is_dir(path: Any) -> bool:
    return path.is_dir() if is_local(path) else bool(remote_call(path, "cannot be read", path.is_dir))


def _local_entry(entry: str) -> tuple[list[Path], Path]:
    """Files of one local entry (a glob's matches, a folder's files, or the file) and the folder it covers, as
    absolute paths (ids are relative to their common folder)."""
    entry = _local_spec(entry)
    if has_glob(entry):
        matches = sorted(Path(p).absolute() for p in local_glob.glob(entry, recursive=True))
        found = [p for p in matches if p.is_file()]
        if not found:
            raise InputError("the glob matches no file", entry)
        return found, Path(_fixed_prefix(entry) or ".").absolute()
    path = Path(entry).absolute()
    if path.is_dir():
        return local_files(path, "*"), path
    if path.is_file():
        return [path], path
    raise InputError("dataset path does not exist", entry)


def _remote_entry(entry: str) -> tuple[list[Any], Any]:
    path = _remote_path(entry)
    fs = path.fs
    if has_glob(entry):
        matches = remote_call(entry, "cannot be listed", fs.glob, path.path, detail=True)
        found = [_with_path(path, name) for name, info in sorted(matches.items()) if info.get("type") == "file"]
        if not found:
            raise InputError("the glob matches no file", entry)
        prefix = _fixed_prefix(entry)
        if _SCHEME.match(prefix + "/") is None or len(prefix) <= len(scheme_of(entry)) + 3:
            raise InputError("a glob must not reach into the bucket or host name", entry)
        return found, _remote_path(prefix)
    if remote_call(entry, "cannot be read", path.is_dir):
        return list_files(path, None), path
    if remote_call(entry, "cannot be read", path.is_file):
        return [path], path
    raise InputError("dataset path does not exist", entry)


def _with_path(template: UPath, path: str) -> UPath:
    """A UPath on the same filesystem (and storage options) as `template`, at `path` (as the filesystem lists it)."""
    return template.with_segments(f"{template.protocol}://{path.lstrip('/')}" if template.protocol else path)


def _fixed_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard (`data/a*/x.tar` -> `data`)."""
    cut = min(i for i, c in enumerate(pattern) if c in _GLOB_CHARACTERS)
    return pattern[:cut].rpartition("/")[0]


def _common_folder(folders: list[Any], protocol: str) -> Any:
    if len(folders) == 1:
        return folders[0]
    if not protocol:
        return Path(os.path.commonpath([str(f) for f in folders]))
    common = posixpath.commonpath(["/" + f.path.lstrip("/") for f in folders]).lstrip("/")
    return _with_path(folders[0], common)


def list_files(root: Any, suffix: str | None) -> list[Any]:
    """Files under a folder (recursively), with a suffix if given, sorted by path: locally exactly as the readers
    always listed them; remotely with one recursive listing (one request per 1000 keys on S3)."""
    if is_local(root):
        return local_files(root, f"*{suffix}" if suffix else "*")
    listing = remote_call(root, "cannot be listed", root.fs.find, root.path, detail=True)
    names = sorted(n for n, info in listing.items() if info.get("type") == "file" and n.endswith(suffix or ""))
    return [_with_path(root, n) for n in names]


@contextmanager
def listing(root: Path) -> Iterator[None]:
    """Around a walk of a local folder: a sub-folder that cannot be listed is one error naming it (never
    skipped, never a traceback)."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot be listed ({exc.strerror or exc})", exc.filename or root) from None


def local_files(root: Path, pattern: str) -> list[Path]:
    """Files under a local folder matching `pattern`, recursively, sorted."""
    with listing(root):
        return sorted(p for p in root.rglob(pattern) if p.is_file())


def relative_id(path: Any, root: Any) -> str:
    """A file's path relative to the dataset root, '/'-separated: the shard id and the pinned file's name."""
    if is_local(path):
        return path.relative_to(root).as_posix()
    inner, outer = path.path.strip("/"), root.path.strip("/")
    if inner == outer:
        return path.name
    if outer and not inner.startswith(outer + "/"):
        raise ValueError(f"{path} is not under {root}")
    return inner[len(outer) + 1 :] if outer else inner


def open_binary(path: Any) -> IO[bytes]:
    """A seekable binary file: the operating system's for local files, the fsspec backend's (ranged reads,
    read-ahead buffer) for remote ones."""
    if is_local(path):
        return open(path, "rb")
    return remote_call(path, "cannot be opened", path.open, "rb")


def parquet_source(path: Any) -> Any:
    """What `pyarrow.parquet.ParquetFile` reads: the local path (pyarrow's native reader, as always) or a remote
    file object (pyarrow would take an `s3://` string for its own S3 client, bypassing fsspec's settings)."""
    return path if is_local(path) else open_binary(path)
