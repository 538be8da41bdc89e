"""The scan's per-shard task: one shard streamed through signals, matchers and detectors, its results written.

Pure with respect to the run: a shard's result depends only on the shard's bytes and the configuration, and is
written to the shard's own files in the run directory (the completion marker last), so executors may run shards
anywhere, in any order, more than once. The driver (`safeset.scan.driver`) plans and merges.
"""


from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from safeset.banks.store import BankInfo, BankStore
from safeset.errors import InputError, SafesetError
from safeset.exec.base import Task
from safeset.expansion.base import EXPANDERS, ROW_SIGNALS, Expander
from safeset.findings import ERRORS_SCHEMA, FindingsBuilder, TableBuilder
from safeset.fsutil import disk_full, write_json, write_parquet
from safeset.io.base import DatasetFormat, ShardRef
from safeset.io.batch import MEMBERS_SCHEMA
from safeset.io.columns import ColumnMap
from safeset.io.detect import open_dataset
from safeset.io.embeddings import EmbeddingSource, open_embeddings
from safeset.kinds.base import MATCHERS, DatasetOffer, Hits, Matcher
from safeset.policy.actions import IGNORE, strongest_per_row
from safeset.registry import load_plugins
from safeset.rundir import RunDir, pin_shard
from safeset.scan.config import ScanConfig
from safeset.signals.compute import Signals
from safeset.triage import TRIAGE_DETECTORS, build_detectors, check_rule_detectors


@dataclass
class ShardResult:
    shard: str
    rows_in: int = 0
    rows_flagged: int = 0
    rows_errored: int = 0
    rows_by_action: dict[str, int] = field(default_factory=dict)
    findings: int = 0
    error: str | None = None
    seconds: float = 0.0
    # The shard's files as read: path relative to the dataset, size and xxh3-128 (see fsutil.file_pin).
    pins: list[dict[str, Any]] = field(default_factory=list)


class ShardScanner:
    """Everything one process needs to scan shards: the dataset reader and loaded matchers."""

    def __init__(self, config: ScanConfig) -> None:
        load_plugins()
        self.config = config
        self.detectors, self.rules = build_detectors(config.triage)
        # Score columns the detectors and rules compare are read with the batch (refused up front if absent).
        wanted = {c for d in (*self.detectors, *self.rules) for c in d.columns}
        columns = replace(config.columns, extra_cols=tuple(sorted(set(config.columns.extra_cols) | wanted)))
        self.dataset: DatasetFormat = open_dataset(config.dataset, config.input_format, columns)
        self.dataset.max_member_bytes = config.max_member_bytes
        store = BankStore(Path(config.banks_dir))
        self.banks = [store.info(name) for name in config.bank_names]
        # Banks a rule names but the scan does not report on: their hits feed rules only.
        existing = {info.name for info in store.list()}
        rule_only = sorted({b for r in self.rules for b in r.banks} - set(config.bank_names))
        absent = [name for name in rule_only if name not in existing]
        if absent:
            raise SafesetError(f"a rule names bank {', '.join(absent)}, which is not in {config.banks_dir}")
        self.rule_banks = [store.info(name) for name in rule_only]
        self.matchers: list[Matcher] = [self._matcher(info, store, config) for info in self.banks]
        self.rule_matchers: list[Matcher] = [self._matcher(info, store, config) for info in self.rule_banks]
        check_rule_detectors(self.rules, set(MATCHERS) | set(TRIAGE_DETECTORS))
        unknown = [name for name in config.expanders if name not in EXPANDERS]
        if unknown:
            raise SafesetError(f"unknown expander {', '.join(unknown)}; available: {', '.join(EXPANDERS) or 'none'}")
        self.expanders: list[Expander] = [EXPANDERS[name](config) for name in config.expanders]
        self.row_signals = sorted({name for e in self.expanders for name in e.row_signals})
        self.image_digests = sorted({a for m in (*self.matchers, *self.rule_matchers) for a in m.image_digests})
        self.batch_embeddings = any(d.needs_embeddings for d in self.detectors)
        self.needs_embeddings = self.batch_embeddings or any(e.needs_embeddings for e in self.expanders)
        self._embeddings: EmbeddingSource | None = None
        self.dataset.read_captions = any(m.uses_captions for m in (*self.matchers, *self.rule_matchers))

    @staticmethod
    def _matcher(info: BankInfo, store: BankStore, config: ScanConfig) -> Matcher:
        if info.kind not in MATCHERS:
            raise SafesetError(f"bank {info.name!r} has kind {info.kind!r}, which no matcher handles")
        matcher = MATCHERS[info.kind](info, store.folder(info.name))
        matcher.configure(config)
        return matcher

    @property
    def all_banks(self) -> list[BankInfo]:
        """Every bank whose content decides findings: reported ones and those feeding rules."""
        return self.banks + self.rule_banks

    def embedding_source(self) -> EmbeddingSource:
        if self._embeddings is None:
            where = self.config.embeddings
            self._embeddings = open_embeddings(self.dataset, where.path, where.column, where.member)
        return self._embeddings

    def check(self) -> dict[str, Any]:
        """Refuse up front when a bank cannot be matched against this dataset."""
        offer_raw = self.dataset.check()
        offer = DatasetOffer(
            has_urls=bool(offer_raw.get("has_urls")),
            has_images=bool(offer_raw.get("has_images")),
            metadata_hashes=list(offer_raw.get("metadata_hashes", [])),  # type: ignore[arg-type]
            has_captions=bool(offer_raw.get("has_captions")),
        )
        matchers = (*self.matchers, *self.rule_matchers)
        problems = [r for m in matchers if (r := m.unusable_reason(offer, self.read_images(offer)))]
        problems += [
            f"expander {e.name!r} needs image bytes, which this scan does not read"
            for e in self.expanders
            if e.needs_images() and not self.read_images(offer)
        ]
        if problems:
            raise SafesetError("; ".join(problems))
        checked: dict[str, Any] = {
            "format": self.dataset.name,
            "offer": asdict(offer),
            "read_images": self.read_images(offer),
        }
        columns = offer_raw.get("columns")
        if isinstance(columns, ColumnMap):
            # Which column keys the rows (the removal list is only useful outside this file if it is a real key).
            checked.update(row_key=columns.key_description(), hash_columns=dict(columns.hashes))
        else:  # no metadata table (a tar without sidecar, an image folder): the member or file name keys the row
            checked["row_key"] = "sample key"
        if self.needs_embeddings:
            # Headers only: every shard's vectors must line up with its metadata before any work starts.
            source = self.embedding_source()
            dim = source.check(self.dataset.shards())
            for detector in self.detectors:
                detector.prepare(dim)
            checked["embeddings"] = {"source": source.description, "dim": dim or None}
        return checked

    def read_images(self, offer: DatasetOffer | None = None) -> bool:
        if self.config.metadata_only:
            return False
        if offer is None:
            offer = DatasetOffer(has_urls=True, has_images=bool(self.dataset.check().get("has_images")))
        return offer.has_images

    def scan_shard(self, shard: ShardRef, read_images: bool, run_dir: Path) -> ShardResult:
        """Scan one shard and write its result files, the completion marker last.

        Nothing a shard holds can stop the run: bad rows are errored rows; anything else that goes wrong
        while reading the shard (an InputError, or an unexpected exception from a library fed hostile bytes)
        fails this shard alone, all its rows counted as errored. Only a full disk stops the run.
        """
        started = time.perf_counter()
        result = ShardResult(shard=shard.id)
        findings = FindingsBuilder()
        errors = TableBuilder(ERRORS_SCHEMA)
        kept_signals: list[pa.RecordBatch] = []
        members: list[pa.Table] = []
        seen = _RowSet()
        try:
            result.pins = pin_shard(self.dataset, shard)
            self._scan_batches(shard, read_images, findings, errors, kept_signals, members, seen)
        except Exception as exc:
            if disk_full(exc):
                raise
            reason = str(exc) if isinstance(exc, InputError) else _internal_failure(shard, exc)
            result.rows_in = max(self.dataset.known_row_count(shard) or 0, seen.count)
            result.error = reason
            findings = FindingsBuilder()
            errors = TableBuilder(ERRORS_SCHEMA)
            errors.extend(key=[""], shard=[shard.id], row=[-1], reason=[f"shard unreadable: {reason}"])
            kept_signals, members = [], []
        else:
            result.rows_in = seen.count
        finding_table, error_table = findings.table(unique=True), errors.table(unique=True)
        count_rows(result, finding_table, error_table)
        result.seconds = round(time.perf_counter() - started, 3)
        files = RunDir(run_dir)
        if self.row_signals:
            signal_table = (
                pa.Table.from_batches(kept_signals) if kept_signals else self._row_signal_schema().empty_table()
            )
            write_parquet(files.shard_file(shard.id, ".signals.parquet"), signal_table, private=True)
        if members:
            write_parquet(files.shard_file(shard.id, ".members.parquet"), pa.concat_tables(members), private=True)
        write_parquet(files.shard_file(shard.id, ".findings.parquet"), finding_table, private=True)
        write_parquet(files.shard_file(shard.id, ".errors.parquet"), error_table, private=True)
        write_json(files.shard_file(shard.id, ".json"), asdict(result), private=True)  # the completion marker, last
        return result

    def _scan_batches(
        self,
        shard: ShardRef,
        read_images: bool,
        findings: FindingsBuilder,
        errors: TableBuilder,
        kept_signals: list[pa.RecordBatch],
        members: list[pa.Table],
        seen: _RowSet,
    ) -> None:
        vectors = self.embedding_source().for_shard(shard) if self.batch_embeddings else None
        for batch in self.dataset.iter_batches(shard, self.config.batch_rows, read_images):
            seen.add(batch.rows)
            if batch.members is not None:
                members.append(batch.members.cast(MEMBERS_SCHEMA))
            if vectors is not None:
                batch.embeddings, batch.embedding_valid = vectors.take(batch.rows)
            signals = Signals(batch, self.image_digests, self.config.max_pixels, self.config.pdq.mode)
            masks: dict[str, np.ndarray] = {}  # what each bank and detector hit, for rules
            for matcher in (*self.matchers, *self.rule_matchers):
                reported = matcher in self.matchers
                for hits in matcher.match(signals):
                    _mark(masks, len(batch), hits, f"bank:{matcher.info.name}")
                    if reported:
                        self._record(findings, batch, hits, matcher.info.name, matcher.info.action)
            for detector in self.detectors:
                for hits in detector.detect(signals):
                    _mark(masks, len(batch), hits)
                    self._record(findings, batch, hits, detector.label, detector.action.value)
            for rule in self.rules:
                for hits in rule.evaluate(signals, masks):
                    _mark(masks, len(batch), hits, f"rule:{rule.label}")
                    self._record(findings, batch, hits, rule.label, rule.action.value)
            if read_images or batch.read_errors is not None:
                problems = signals.image_errors()
                bad = np.flatnonzero(np.array([p is not None for p in problems], dtype=bool))
                errors.extend(
                    key=batch.keys_at(bad),
                    shard=[shard.id] * len(bad),
                    row=batch.rows[bad].tolist(),
                    reason=[problems[i] for i in bad],
                )
            if self.row_signals:
                kept_signals.append(self._row_signal_batch(signals))

    def _record(self, findings: FindingsBuilder, batch: Any, hits: Hits, bank: str, default_action: str) -> None:
        """Report hits with the action the policy gives their signal; an ignored signal is not reported (rules
        may still use it)."""
        action = self.config.actions.action_for(bank, hits.detector, default_action)
        if action != IGNORE:
            _record(findings, batch, hits, bank, action)

    def _row_signal_schema(self) -> pa.Schema:
        fields = [("row", pa.int64()), ("key", pa.string())]
        fields += [(name, ROW_SIGNALS[name][0]) for name in self.row_signals]
        return pa.schema(fields)

    def _row_signal_batch(self, signals: Signals) -> pa.RecordBatch:
        batch = signals.batch
        columns = [pa.array(batch.rows, type=pa.int64()), pa.array(batch.keys_at(np.arange(len(batch))))]
        columns += [ROW_SIGNALS[name][1](signals) for name in self.row_signals]
        return pa.RecordBatch.from_arrays(columns, schema=self._row_signal_schema())


class _RowSet:
    """Distinct rows seen in a shard (entries of a multi-image sample share a row; batches need not be in row
    order), as a growing bitmap: vectorised, and one byte per row however the rows arrive."""

    def __init__(self) -> None:
        self._seen = np.zeros(0, dtype=bool)
        self.count = 0

    def add(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        top = int(rows.max()) + 1
        if top > len(self._seen):
            grown = np.zeros(max(top, 2 * len(self._seen)), dtype=bool)
            grown[: len(self._seen)] = self._seen
            self._seen = grown
        before = self._seen[rows]
        self._seen[rows] = True
        self.count += len(np.unique(rows[~before]))


def _internal_failure(shard: ShardRef, exc: Exception) -> str:
    """A reason for an exception no reader anticipated: the shard fails with it instead of the whole run."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"{shard.path}: unexpected {type(exc).__name__} while reading{at}: {exc}"


def _record(findings: FindingsBuilder, batch: Any, hits: Hits, bank: str, action: str) -> None:
    positions = hits.positions
    urls = batch.urls.take(pa.array(positions, type=pa.int64())).to_pylist() if batch.urls is not None else None
    findings.add(
        shard=batch.shard,
        rows=batch.rows[positions].tolist(),
        keys=batch.keys_at(positions),
        detector=hits.detector,
        bank=bank,
        evidence=hits.evidence,
        action=action,
        urls=urls,
    )


def _mark(masks: dict[str, np.ndarray], n: int, hits: Hits, *references: str) -> None:
    """Note which rows a bank or detector hit, under `detector:NAME` and any further references."""
    for reference in (f"detector:{hits.detector}", *references):
        mask = masks.setdefault(reference, np.zeros(n, dtype=bool))
        mask[hits.positions] = True


def count_rows(result: ShardResult, findings: pa.Table, errors: pa.Table) -> None:
    """Exclusive row states: flagged (strongest action wins), else errored, else clean."""
    if result.error:
        result.rows_flagged, result.rows_errored, result.rows_by_action = 0, result.rows_in, {}
        result.findings = 0
        return
    strongest = strongest_per_row(findings["row"].to_pylist(), findings["action"].to_pylist())
    result.rows_flagged = len(strongest)
    result.rows_errored = len(set(errors["row"].to_pylist()) - strongest.keys())
    result.rows_by_action = dict(sorted(Counter(a.value for a in strongest.values()).items()))
    result.findings = findings.num_rows


@dataclass(frozen=True)
class ScanTask(Task):
    """The first pass as an executor task: scan one shard (a `ShardRef`) into the run directory."""

    config: ScanConfig
    run_dir: str
    read_images: bool
    fingerprint_key: str  # the run's fingerprint: workers that loaded these banks can serve any shard of it

    def cache_key(self) -> str:
        return self.fingerprint_key

    def open(self) -> Any:
        scanner = ShardScanner(self.config)
        return lambda shard: scanner.scan_shard(shard, self.read_images, Path(self.run_dir))
