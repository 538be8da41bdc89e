"""img2dataset's per-shard `_stats.json`, recomputed for a cleaned shard."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from safeset.fsutil import write_json


def stats_path_for(shard_file: Path) -> Path:
    return shard_file.with_name(shard_file.stem + "_stats.json")


def write_cleaned_stats(source: Path, target: Path, kept_metadata: pa.Table | None, rows_kept: int) -> bool:
    """Copy img2dataset stats with counts recomputed for the rows kept; returns whether a file was written."""
    if not source.exists():
        return False
    try:
        stats = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError):
        stats = {}
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
    stats["safeset_cleaned"] = True
    write_json(target, stats)
    return True
