"""Which columns of a metadata table carry the URL, caption, key and image hashes.

LAION ships three families of metadata with different casing (`URL`/`TEXT`, `url`/`caption`, ...);
we map them instead of assuming one. An explicitly requested column that is missing is refused
before any work, naming the columns that do exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from safeset.errors import ColumnError
from safeset.io.batch import HASH_ALGORITHMS

URL_CANDIDATES = ("url", "URL", "Url", "image_url")
CAPTION_CANDIDATES = ("caption", "TEXT", "text", "txt", "Caption")
KEY_CANDIDATES = ("key",)
IMAGE_COLUMN_CANDIDATES = ("jpg", "jpeg", "png", "webp", "image")


@dataclass(frozen=True)
class ColumnOptions:
    """Column names the user chose on the command line; None means detect."""

    url_col: str | None = None
    caption_col: str | None = None
    key_col: str | None = None
    # Further columns detectors read (score columns such as `punsafe`); each must exist.
    extra_cols: tuple[str, ...] = ()


@dataclass(frozen=True)
class ColumnMap:
    url: str | None
    caption: str | None
    key: str | None
    hashes: dict[str, str]  # algorithm -> column name
    image: str | None
    extra: tuple[str, ...] = ()

    def needed(self) -> list[str]:
        cols = [c for c in (self.url, self.caption, self.key, self.image) if c]
        cols.extend(self.hashes.values())
        cols.extend(self.extra)
        return list(dict.fromkeys(cols))


def _pick(names: list[str], requested: str | None, candidates: tuple[str, ...], path: str) -> str | None:
    if requested is not None:
        if requested not in names:
            raise ColumnError(path, requested, names)
        return requested
    for candidate in candidates:
        if candidate in names:
            return candidate
    return None


def resolve_columns(names: list[str], options: ColumnOptions, path: str, binary_columns: set[str]) -> ColumnMap:
    """Map a table's column names to roles, refusing explicitly requested columns that are absent."""
    lower = {n.lower(): n for n in names}
    hashes = {algo: lower[algo] for algo in HASH_ALGORITHMS if algo in lower}
    image = next((c for c in IMAGE_COLUMN_CANDIDATES if c in names and c in binary_columns), None)
    for column in options.extra_cols:
        if column not in names:
            raise ColumnError(path, column, names)
    return ColumnMap(
        url=_pick(names, options.url_col, URL_CANDIDATES, path),
        caption=_pick(names, options.caption_col, CAPTION_CANDIDATES, path),
        key=_pick(names, options.key_col, KEY_CANDIDATES, path),
        hashes=hashes,
        image=image,
        extra=tuple(options.extra_cols),
    )
