"""Read a finished scan's run directory into what the case store needs: findings and, per flagged row, what is
known of the item (digests, PDQ, URL).

Only the run directory's documented files are read (`findings.parquet`, `shards/<id>.signals.parquet`,
`run.json`), so a change inside the scan does not reach here. Where the facts come from, strongest first:
- `shards/<id>.signals.parquet` (kept when the scan ran `--expand duplicate`): MD5 and PDQ of the image bytes;
- the dataset itself, read again for the flagged rows only (metadata, never image bytes): URLs and hash columns
  (LAION's `md5`, ...). This is best effort: when the dataset is gone or unreadable, URLs stay empty and the
  import says why;
- the evidence of digest matches (`md5:<hex> L4 (...)`, `copy of K (same md5 <hex>)`): an exact digest match
  names the image's own digest.
Captions are never read (the dataset is opened with captions off) and image bytes never are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from safeset.errors import InputError, SafesetError
from safeset.fsutil import read_parquet
from safeset.rundir import RunDir, load_json, shard_file

REQUIRED_COLUMNS = ("key", "shard", "row", "detector", "bank", "evidence", "action")
DIGEST_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}
_DIGEST_EVIDENCE = re.compile(r"^(md5|sha1|sha256):([0-9a-f]{32,64})\b")
_SAME_MD5 = re.compile(r"\(same md5 ([0-9a-f]{32})\)")
# The number a piece of evidence carries, by the wording detectors use (see match/, triage/).
_SCORES = (
    re.compile(r"\bdistance (\d+(?:\.\d+)?)"),
    re.compile(r"\bcosine (-?\d+(?:\.\d+)?)"),
    re.compile(r"\bscore (-?\d+(?:\.\d+)?(?:e-?\d+)?)"),
)


@dataclass
class RowFacts:
    """What is known of the item at one dataset row."""

    md5: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    pdq: str | None = None
    url: str | None = None

    def fill(self, **values: str | None) -> None:
        for name, value in values.items():
            if value and getattr(self, name) is None:
                setattr(self, name, value)


@dataclass
class RunFindings:
    findings: list[dict[str, Any]]
    facts: dict[tuple[str, int], RowFacts] = field(default_factory=dict)
    urls_filled: bool = False
    note: str | None = None


def parse_score(evidence: str) -> float | None:
    for pattern in _SCORES:
        found = pattern.search(evidence)
        if found:
            try:
                return float(found.group(1))
            except ValueError:
                return None
    return None


def evidence_digests(evidence: str) -> dict[str, str]:
    """The image digests an exact-match evidence string names (a digest bank entry equals the image's digest)."""
    found = _DIGEST_EVIDENCE.match(evidence)
    if found and len(found.group(2)) == DIGEST_LENGTHS[found.group(1)]:
        return {found.group(1): found.group(2)}
    same = _SAME_MD5.search(evidence)
    return {"md5": same.group(1)} if same else {}


def read_findings(run_dir: Path) -> list[dict[str, Any]]:
    path = RunDir(run_dir).findings
    if not path.is_file():
        raise SafesetError(f"{run_dir}: no findings.parquet here; give the folder of a finished scan")
    try:
        table = read_parquet(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"unreadable or damaged ({exc})", path) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"not a findings table: columns {', '.join(missing)} missing", path)
    names = [*REQUIRED_COLUMNS, *(["domain"] if "domain" in table.column_names else [])]
    try:
        table = table.select(names).cast(pa.schema([(n, pa.int64() if n == "row" else pa.string()) for n in names]))
    except (pa.ArrowException, ValueError) as exc:
        raise InputError(f"columns of the wrong type ({exc})", path) from None
    rows = table.to_pylist()
    for number, record in enumerate(rows):
        if any(record[c] is None for c in REQUIRED_COLUMNS):
            raise InputError("a required value is empty", path, line=number)
    return rows


def read_run(run_dir: Path, dataset_pass: bool = True) -> RunFindings:
    """Findings of a run and the facts known about each flagged row."""
    result = RunFindings(read_findings(run_dir))
    wanted: dict[str, set[int]] = {}
    for record in result.findings:
        if record["row"] >= 0:
            wanted.setdefault(record["shard"], set()).add(record["row"])
            facts = result.facts.setdefault((record["shard"], record["row"]), RowFacts())
            facts.fill(**evidence_digests(record["evidence"]))
    for shard, rows in wanted.items():
        _signals_facts(run_dir, shard, rows, result.facts)
    if dataset_pass and wanted:
        try:
            _dataset_facts(run_dir, wanted, result.facts)
            result.urls_filled = True
        except Exception as exc:  # best effort: the findings alone still make cases
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            result.note = f"URLs and hash columns not read from the dataset: {why}"
    return result


def _signals_facts(run_dir: Path, shard: str, rows: set[int], facts: dict[tuple[str, int], RowFacts]) -> None:
    path = shard_file(run_dir, shard, ".signals.parquet")
    if not path.is_file():
        return
    try:
        table = read_parquet(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"unreadable or damaged ({exc})", path) from None
    if "row" not in table.column_names:
        return
    positions = np.flatnonzero(np.isin(table["row"].to_numpy(zero_copy_only=False), np.fromiter(rows, np.int64)))
    picked = table.take(pa.array(positions, type=pa.int64()))
    row_values = picked["row"].to_pylist()
    for name, column in (("md5", "image_md5"), ("pdq", "image_pdq")):
        if column not in picked.column_names:
            continue
        for row, value in zip(row_values, picked[column].to_pylist(), strict=True):
            if isinstance(value, bytes | bytearray):
                facts[(shard, row)].fill(**{name: bytes(value).hex()})


def _dataset_facts(run_dir: Path, wanted: dict[str, set[int]], facts: dict[tuple[str, int], RowFacts]) -> None:
    """URLs and metadata hash columns of the flagged rows, read from the scanned dataset (no captions, no bytes)."""
    from safeset.io.columns import ColumnOptions
    from safeset.io.detect import open_dataset

    config = load_json(RunDir(run_dir).run_json, "run record").get("config") or {}
    columns = config.get("columns") or {}
    options = ColumnOptions(
        url_col=columns.get("url_col"),
        caption_col=columns.get("caption_col"),
        key_col=columns.get("key_col"),
        hash_cols=tuple(tuple(pair) for pair in columns.get("hash_cols") or ()),  # type: ignore[misc]
    )
    dataset = open_dataset(config["dataset"], config.get("input_format", "auto"), options)
    dataset.read_captions = False
    refs = {ref.id: ref for ref in dataset.shards()}
    for shard, rows in wanted.items():
        ref = refs.get(shard)
        if ref is None:
            raise SafesetError(f"shard {shard} is no longer in the dataset")
        wanted_rows = np.fromiter(rows, np.int64)
        for batch in dataset.iter_batches(ref, 4096, read_images=False):
            positions = np.flatnonzero(np.isin(batch.rows, wanted_rows))
            if not len(positions):
                continue
            take = pa.array(positions, type=pa.int64())
            batch_rows = batch.rows[positions].tolist()
            urls = batch.urls.take(take).to_pylist() if batch.urls is not None else [None] * len(positions)
            hashes = {
                name: column.take(take).to_pylist()
                for name, column in batch.metadata_hashes.items()
                if name in DIGEST_LENGTHS
            }
            for i, row in enumerate(batch_rows):
                values = {name: _hex(column[i], DIGEST_LENGTHS[name]) for name, column in hashes.items()}
                facts[(shard, row)].fill(url=urls[i], **values)


def _hex(value: object, length: int) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    return text if len(text) == length and all(c in "0123456789abcdef" for c in text) else None
