"""Errors that name the file (and line or row) at fault, so that bad input never ends in a bare traceback."""

from __future__ import annotations

from pathlib import Path


class SafesetError(Exception):
    """A problem the user can act on; the CLI prints it without a traceback."""


class InputError(SafesetError):
    """Bad input: a file, and where known a line or row, that could not be used."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        super().__init__(where + message)


class ColumnError(SafesetError):
    """A requested column is missing; refused before any work is done."""

    def __init__(self, path: str | Path, missing: str, available: list[str]) -> None:
        super().__init__(f"{path}: column {missing!r} not found; columns present: {', '.join(available) or '(none)'}")
