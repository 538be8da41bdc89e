"""What the HTML report shows, gathered from a run directory's documented files (never scan internals).

`summary.json` (totals, per-shard rows and errors), `findings.parquet` (detector, bank, evidence, domain),
a release's accounting (`RUN_DIR/releases/<id>/accounting.json`, or the public `RELEASE/_safeset/release.json`)
and, when asked, the case store. Counts only: captions and URLs are never read, and evidence strings are
reduced to numbers (PDQ distances, scores) with vectorised regular expressions over the whole column.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.errors import SafesetError
from safeset.rundir import RunDir

# Evidence shapes written by the matchers (match/pdq.py, match/duplicates.py, match/neighbors.py, triage/):
#   pdq:<64 hex> L3 distance 12 (original, quality 90)   copy of <key> (pdq distance 7)
#   cosine 0.912345 to <key> (hop 1)   <label> score 0.9876 > 0.95   punsafe=0.97
PDQ_DISTANCE = r"(?:^pdq:[0-9a-f]{64}(?: L\d+)? distance |\(pdq distance )(?P<d>\d+)"
SCORE_PATTERNS: dict[str, str] = {
    "neighbor": r"^cosine (?P<v>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?) to ",
    "model": r"^.* score (?P<v>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?) [<>]=? ",
    "score": r"^[^=\s]+=(?P<v>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)$",
}
FINDINGS_COLUMNS = ("shard", "row", "detector", "bank", "evidence", "action")
UNKNOWN_DOMAIN = "(no domain recorded)"


@dataclass(frozen=True)
class ReportOptions:
    top_domains: int = 15
    histogram_bins: int = 20
    strip_above: int = 40  # more shards than this: the compact strip instead of one labelled bar per shard
    worst_shards: int = 10  # shards listed by name under the strip (most errored first)


@dataclass(frozen=True)
class ShardLine:
    shard: str
    rows_in: int
    rows_flagged: int
    rows_errored: int
    failed: bool
    error: str | None


@dataclass
class ReportData:
    run_dir: Path
    summary: dict[str, Any]
    shards: list[ShardLine]
    by_detector: list[tuple[str, int]]
    by_bank: list[tuple[str, int]]
    by_action: list[tuple[str, int]]
    pdq_distances: np.ndarray
    scores: dict[str, np.ndarray]
    domains: list[tuple[str, int]]  # flagged rows per domain, most first (all domains)
    flagged_rows: int
    release: dict[str, Any] | None = None
    release_source: str | None = None
    case_states: list[tuple[str, int]] | None = None
    cases_note: str | None = None
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SafesetError(f"{path}: no {what} here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafesetError(f"{path}: the {what} is unreadable or damaged ({exc})") from None
    if not isinstance(value, dict):
        raise SafesetError(f"{path}: the {what} is damaged (not a JSON object)")
    return value


def _read_findings(path: Path) -> pa.Table:
    try:
        parquet = pq.ParquetFile(path)
        present = set(parquet.schema_arrow.names)
        missing = [c for c in FINDINGS_COLUMNS if c not in present]
        if missing:
            raise SafesetError(f"{path}: findings lack column(s) {', '.join(missing)}")
        columns = [*FINDINGS_COLUMNS, *(["domain"] if "domain" in present else [])]
        table = parquet.read(columns=columns)
        casts = {"row": pa.int64(), "domain": pa.string()}
        return pa.table(
            {n: table[n].cast(casts.get(n, pa.string())) for n in table.column_names},
        )
    except FileNotFoundError:
        raise SafesetError(f"{path}: no findings here; is this a finished scan's run directory?") from None
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SafesetError(f"{path}: unreadable or damaged findings ({exc})") from None


def _counts(column: pa.ChunkedArray) -> list[tuple[str, int]]:
    counted = pc.value_counts(pc.fill_null(column, "(none)")).to_pylist()
    return sorted(((str(c["values"]), int(c["counts"])) for c in counted), key=lambda kv: (-kv[1], kv[0]))


def _extract(evidence: pa.ChunkedArray, pattern: str, group: str) -> np.ndarray:
    matched = pc.extract_regex(evidence, pattern)
    values = pc.struct_field(matched, group) if len(matched) else pa.array([], pa.string())
    numbers = pc.cast(pc.drop_null(values), pa.float64())
    return np.asarray(numbers.to_numpy(), dtype=np.float64)


def _shards(summary: dict[str, Any], path: Path) -> list[ShardLine]:
    lines = []
    for i, record in enumerate(summary.get("shards") or []):
        if not isinstance(record, dict):
            raise SafesetError(f"{path}: shard entry {i} is not an object")
        try:
            lines.append(
                ShardLine(
                    shard=str(record.get("shard", f"#{i}")),
                    rows_in=int(record.get("rows_in") or 0),
                    rows_flagged=int(record.get("rows_flagged") or 0),
                    rows_errored=int(record.get("rows_errored") or 0),
                    failed=bool(record.get("error")),
                    error=str(record["error"]) if record.get("error") else None,
                )
            )
        except (TypeError, ValueError) as exc:
            raise SafesetError(f"{path}: shard entry {i} has a non-numeric count ({exc})") from None
    return lines


def _release(run_dir: Path, release_dir: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The release's full private accounting where the run holds it, else the public manifest's counts."""
    records = sorted((run_dir / "releases").glob("*/accounting.json")) if (run_dir / "releases").is_dir() else []
    if release_dir is None:
        if not records:
            return None, None
        return _read_json(records[-1], "release accounting"), str(records[-1].relative_to(run_dir))
    public_path = release_dir / "_safeset" / "release.json"
    public = _read_json(public_path, "release manifest")
    for record in reversed(records):
        accounting = _read_json(record, "release accounting")
        if accounting.get("created") == public.get("created") and accounting.get("rows_in") == public.get("rows_in"):
            return accounting, str(record.relative_to(run_dir))
    return public, "release manifest (public counts)"


def _case_states(cases_url: str) -> tuple[list[tuple[str, int]] | None, str | None]:
    try:
        cases = importlib.import_module("safeset.cases")
    except ImportError:
        return None, "the case store (safeset.cases) is not part of this installation"
    store = cases.CaseStore.open(cases_url)
    try:
        counts: dict[str, int] = {str(state.value): 0 for state in cases.CaseState}
        page, offset = 5000, 0
        while True:
            batch = store.list_cases(limit=page, offset=offset)
            for case in batch:
                state = getattr(case.state, "value", case.state)
                counts[str(state)] = counts.get(str(state), 0) + 1
            if len(batch) < page:
                break
            offset += page
    finally:
        store.close()
    return [(state, n) for state, n in counts.items() if n], None


def gather(
    run_dir: Path, release_dir: Path | None = None, cases_url: str | None = None, options: ReportOptions | None = None
) -> ReportData:
    options = options or ReportOptions()
    summary_path = RunDir(run_dir).summary
    summary = _read_json(summary_path, "scan summary (is the scan finished?)")
    findings = _read_findings(RunDir(run_dir).findings)
    notes = []

    evidence = findings["evidence"]
    distances = _extract(evidence, PDQ_DISTANCE, "d")
    scores: dict[str, np.ndarray] = {}
    for detector, pattern in SCORE_PATTERNS.items():
        mask = pc.equal(findings["detector"], detector)
        subset = pc.filter(evidence, mask)
        if len(subset):
            scores[detector] = _extract(subset, pattern, "v")

    # A row flagged by several banks counts once per domain: distinct (shard, row).
    rows = findings.select(["shard", "row", *(["domain"] if "domain" in findings.column_names else [])])
    distinct = rows.group_by(["shard", "row"]).aggregate([("domain", "max")] if "domain" in rows.column_names else [])
    if "domain_max" in distinct.column_names:
        domains = _counts(pc.fill_null(distinct["domain_max"], UNKNOWN_DOMAIN))
    else:
        domains = [(UNKNOWN_DOMAIN, distinct.num_rows)] if distinct.num_rows else []
        notes.append("this run's findings carry no domain column")

    release, release_source = _release(run_dir, release_dir)
    case_states, cases_note = _case_states(cases_url) if cases_url else (None, None)
    return ReportData(
        run_dir=run_dir,
        summary=summary,
        shards=_shards(summary, summary_path),
        by_detector=_counts(findings["detector"]),
        by_bank=_counts(findings["bank"]),
        by_action=sorted(
            ((str(k), int(v)) for k, v in (summary.get("rows_by_action") or {}).items()), key=lambda kv: -kv[1]
        ),
        pdq_distances=distances,
        scores=scores,
        domains=domains,
        flagged_rows=distinct.num_rows,
        release=release,
        release_source=release_source,
        case_states=case_states,
        cases_note=cases_note,
        notes=notes,
    )
