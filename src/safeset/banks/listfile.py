"""Reading list files (one value per line, or one column of a CSV) with the line number of every value."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from safeset.errors import InputError


@dataclass
class ListValues:
    values: pa.Array  # string, trimmed; blank lines and '#' comments removed
    lines: np.ndarray  # 1-based line number of each value in the source file


def read_list(path: Path, column: str | None = None) -> ListValues:
    """Read a plain list (one value per line) or, with `column`, that column of a CSV with a header."""
    if not path.is_file():
        raise InputError("list file not found", path)
    try:
        if column is None:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(column_names=["value"], block_size=1 << 24),
                # A plain list has no delimiter or quoting: every line is one value.
                parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={"value": pa.string()}),
            )
            first_line = 1
        else:
            with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
                header = next(csv.reader(handle), [])
            if column not in header:
                raise InputError(f"column {column!r} not in CSV header ({', '.join(header)})", path, 1)
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 24),
                parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()}),
            )
            first_line = 2
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if (column is not None and "include_columns" in message) or "not found" in message.lower():
            header = path.open("r", encoding="utf-8", errors="replace").readline().strip()
            raise InputError(f"column {column!r} not in CSV header ({header})", path, 1) from exc
        raise InputError(f"cannot parse list: {message}", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read list: {exc}", path) from exc
    raw = table.column(0).combine_chunks() if table.num_rows else pa.array([], type=pa.string())
    values = pc.utf8_trim_whitespace(pc.fill_null(raw, ""))
    keep = pc.and_(pc.not_equal(values, ""), pc.invert(pc.starts_with(values, "#")))
    keep_np = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
    lines = np.flatnonzero(keep_np).astype(np.int64) + first_line
    return ListValues(values=values.filter(keep), lines=lines)


def invalid_report(path: Path, lines: np.ndarray, values: pa.Array, reason: str, limit: int = 5) -> str:
    shown = ", ".join(f"line {int(ln)}: {v!r}" for ln, v in zip(lines[:limit], values[:limit].to_pylist(), strict=True))
    more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
    return f"{path}: {len(lines)} invalid entries ({reason}): {shown}{more}; fix them or pass --skip-invalid"
