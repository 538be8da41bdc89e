"""img2dataset's per-shard `_stats.json`: read as a count to check a shard against, and recomputed for a cleaned shard.

The stats are advisory (the tar and the sidecar parquet are the data), so an unreadable stats file is treated as
absent rather than failing its shard; where they are readable, their counts let a reader notice samples or rows
that went missing from the data files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from safeset.fsutil import write_json


def stats_path_for(shard_file: Path) -> Path:
    return shard_file.with_name(shard_file.stem + "_stats.json")


def read_stats(path: Path) -> dict[str, Any] | None:
    """The stats as a JSON object; None when the file is absent, unreadable, or not an object."""
    try:
        stats = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return stats if isinstance(stats, dict) else None


def stats_count(stats: dict[str, Any] | None, field: str) -> int | None:
    """A non-negative integer count (`count`, `successes`, ...) from the stats, or None where absent or not one."""
    value = stats.get(field) if stats else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def write_cleaned_stats(
    source: Path,
    target: Path,
    kept_metadata: pa.Table | None,
    rows_kept: int,
    successes_kept: int | None = None,
) -> bool:
    """Copy img2dataset stats with counts recomputed for the rows kept; returns whether a file was written.

    `successes_kept`, where given, is the count of kept rows whose sample the cleaned shard still holds (a
    webdataset writer knows it; without a sidecar it is every sample), so readers that check a tar against
    `successes` find no sample missing.
    """
    if not source.exists():
        return False
    stats = read_stats(source) or {}
    stats["count"] = rows_kept
    if kept_metadata is not None and "status" in kept_metadata.column_names:
        counts = Counter(pc.fill_null(kept_metadata["status"], "").to_pylist())
        stats["successes"] = counts.get("success", 0)
        stats["failed_to_download"] = counts.get("failed_to_download", 0)
        stats["failed_to_resize"] = counts.get("failed_to_resize", 0)
        # Recount as img2dataset does ("success", else the error message), so no removed row leaves a trace.
        if "error_message" in kept_metadata.column_names:
            statuses = kept_metadata["status"].to_pylist()
            messages = kept_metadata["error_message"].to_pylist()
            stats["status_dict"] = dict(
                Counter(
                    "success" if s == "success" else (m or s or "") for s, m in zip(statuses, messages, strict=True)
                )
            )
        else:
            stats.pop("status_dict", None)
    if successes_kept is not None:
        stats["successes"] = successes_kept
    stats["safeset_cleaned"] = True
    write_json(target, stats)
    return True
