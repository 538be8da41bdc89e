"""The case store: one row per distinct flagged item, every dataset row it appears under, its evidence, its state,
and an append-only, hash-chained audit log of every change of state.

SQLite (a file, 0600) for one person, PostgreSQL for a team, one schema through SQLAlchemy Core; Alembic migrations
shipped in the package bring any store to the current schema when it is opened. A case holds hashes, URLs, keys
and evidence strings only: never captions, never image bytes.

Identity: a case is opened under the strongest thing known of its item: the image MD5, else SHA-256 or SHA-1, else
the PDQ hash, else the canonical URL, else the dataset key. It is then known by every one of these it is seen with
(the `identities` table): an item flagged by its URL in a metadata scan and later by its MD5 in an image scan is
one case, which gains the MD5. An identity joins a case only when their digests agree (a URL now serving other
bytes opens a case of its own). Importing a run twice, or another run, adds occurrences and evidence to existing
cases and never makes a second case for the same item.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from safeset.cases import schema
from safeset.cases.audit import ChainFields, StoredEntry, as_utc, entry_hash, verify_chain
from safeset.cases.model import (
    AuditEntry,
    CaseState,
    CaseView,
    Evidence,
    ImportResult,
    Occurrence,
    can_move,
)
from safeset.cases.runread import RowFacts, parse_score, read_run
from safeset.errors import SafesetError

MIGRATIONS = Path(__file__).parent / "migrations"
_CHUNK = 500  # ids per IN (...) clause; keeps statements well under every driver's parameter limit
_VERDICT_STATES = frozenset({CaseState.CONFIRMED, CaseState.NOT_CONFIRMED, CaseState.UNVERIFIABLE})


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def database_url(url: str) -> sa.URL:
    """`sqlite:///path`, a bare path (a SQLite file), or `postgresql://…` (psycopg 3), as a SQLAlchemy URL."""
    text = url.strip()
    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser()}"
    try:
        parsed = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise SafesetError(
            f"case store URL {url!r} is not a URL; use sqlite:///path/cases.db or postgresql://…"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise SafesetError(f"case store URL {url!r} names no file; use sqlite:///path/cases.db")
        return parsed
    raise SafesetError(f"case store URL {url!r}: only sqlite:///path or postgresql://… (psycopg 3) are supported")


def _shown(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _check_text(name: str, value: str) -> str:
    if "\x00" in value:
        raise SafesetError(f"{name} must not contain a NUL character")
    return value


class CaseStore:
    """Open with `CaseStore.open(url)`; every method runs in its own transaction."""

    def __init__(self, engine: Engine, url: sa.URL) -> None:
        self.engine = engine
        self.url = url

    # -- opening ---------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, create: bool = True) -> CaseStore:
        """Open (and with `create`, make) the store and migrate it to the current schema.

        A SQLite file is created 0600 before SQLite touches it (its journal files take the same mode); without
        `create`, a missing file is refused rather than silently started empty.
        """
        parsed = database_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = Path(parsed.database or "")
            if not path.exists():
                if not create:
                    raise SafesetError(f"case store {path} does not exist; `safeset cases import` creates one")
                if not path.parent.is_dir():
                    raise SafesetError(f"case store {path}: folder {path.parent} does not exist")
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            elif not path.is_file():
                raise SafesetError(f"case store {path} is not a file")
            engine = sa.create_engine(parsed, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
        store = cls(engine, parsed)
        try:
            store._migrate()
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
            raise SafesetError(f"case store {_shown(parsed)}: {first[0] if first else type(exc).__name__}") from None
        return store

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            first = str(exc.orig or exc).strip().splitlines()
            raise SafesetError(f"case store {_shown(self.url)}: {first[0] if first else exc}") from None

    # -- import ------------------------------------------------------------------------------------------------

    def import_run(self, run_dir: Path, who: str, dataset_pass: bool = True) -> ImportResult:
        """Add a finished scan's findings: new items become candidate cases, known ones gain occurrences and
        evidence. `dataset_pass` reads the flagged rows' URLs and hash columns from the scanned dataset."""
        if not _check_text("who", who).strip():
            raise SafesetError("an import needs a name for who made it")
        run = read_run(Path(run_dir), dataset_pass=dataset_pass)
        groups: dict[str, _Group] = {}
        for record in run.findings:
            facts = run.facts.get((record["shard"], record["row"]), RowFacts())
            identity = _identity(record["key"], facts)
            group = groups.setdefault(identity, _Group(identity))
            group.add(record, facts)
        now = _now()
        # Groups known by a digest go first, so that a URL-only group of the same import finds their case.
        ordered = sorted(groups.values(), key=lambda g: not any(g.hashes().values()))
        # Each group's identities with their digests, strongest first (URLs are canonicalised once, here).
        aliases = {g.digest: [(a, _digest(a)) for a in g.aliases()] for g in ordered}
        fresh: list[int] = []
        touched: set[int] = set()
        with self._begin() as conn:
            owners = self._cases_by_alias(conn, [d for pairs in aliases.values() for _, d in pairs])
            known = self._case_hashes(conn, sorted(set(owners.values())))
            for group in ordered:
                mine = aliases[group.digest]
                case_id = next(
                    (owners[d] for _, d in mine if d in owners and _agree(known[owners[d]], group.hashes())), None
                )
                if case_id is None:
                    case_id = int(
                        conn.execute(
                            sa.insert(schema.cases).values(
                                identity=group.identity,
                                identity_digest=group.digest,
                                state=CaseState.CANDIDATE.value,
                                first_seen=now,
                                updated_at=now,
                                **group.hashes(),
                            )
                        ).inserted_primary_key[0]
                    )
                    fresh.append(case_id)
                    known[case_id] = group.hashes_none()
                new_aliases = [(a, d) for a, d in mine if d not in owners]
                if new_aliases:
                    conn.execute(
                        sa.insert(schema.identities),
                        [{"case_id": case_id, "identity": a, "digest": d} for a, d in new_aliases],
                    )
                    owners.update((d, case_id) for _, d in new_aliases)
                added = self._add_rows(conn, case_id, group)
                missing = {k: v for k, v in group.hashes().items() if v and not known[case_id].get(k)}
                if missing:
                    conn.execute(sa.update(schema.cases).where(schema.cases.c.id == case_id).values(**missing))
                    known[case_id].update(missing)
                if (added or missing) and case_id not in fresh:
                    touched.add(case_id)
            if fresh:
                self._append_log(
                    conn,
                    [(case_id, None, CaseState.CANDIDATE) for case_id in fresh],
                    who,
                    f"found by the scan in {Path(run_dir).name}",
                    None,
                    now,
                )
            if touched:
                conn.execute(
                    sa.update(schema.cases).where(schema.cases.c.id.in_(sorted(touched))).values(updated_at=now)
                )
        new_cases, updated = len(fresh), len(touched)
        return ImportResult(new_cases, updated, len(run.findings), run.urls_filled, run.note)

    def _cases_by_alias(self, conn: Connection, digests: list[str]) -> dict[str, int]:
        """The case known by each of these identity digests (those no case is known by are absent)."""
        found: dict[str, int] = {}
        c = schema.identities.c
        for part in _chunks(sorted(set(digests))):
            found.update(
                (row.digest, row.case_id)
                for row in conn.execute(sa.select(c.digest, c.case_id).where(c.digest.in_(part)))
            )
        return found

    def _case_hashes(self, conn: Connection, case_ids: list[int]) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        c = schema.cases.c
        for part in _chunks(case_ids):
            for row in conn.execute(sa.select(c.id, c.md5, c.sha1, c.sha256, c.pdq).where(c.id.in_(part))):
                found[row.id] = {"md5": row.md5, "sha1": row.sha1, "sha256": row.sha256, "pdq": row.pdq}
        return found

    def _add_rows(self, conn: Connection, case_id: int, group: _Group) -> bool:
        """Insert the group's occurrences and evidence the case lacks; whether anything was new."""
        occurrence_rows = [
            {**o, "case_id": case_id, "digest": _digest(case_id, o["shard"], o["row"], o["key"])}
            for o in group.occurrences.values()
        ]
        evidence_rows = [
            {**e, "case_id": case_id, "digest": _digest(case_id, e["detector"], e["bank"], e["evidence"], e["action"])}
            for e in group.evidence.values()
        ]
        added = False
        for table, rows in ((schema.occurrences, occurrence_rows), (schema.evidence, evidence_rows)):
            known: set[str] = set()
            for part in _chunks([r["digest"] for r in rows]):
                known.update(conn.scalars(sa.select(table.c.digest).where(table.c.digest.in_(part))))
            new_rows = [r for r in rows if r["digest"] not in known]
            if new_rows:
                conn.execute(sa.insert(table), new_rows)
                added = True
            if table is schema.occurrences:
                for r in rows:  # URLs learnt later (a dataset pass that failed the first time)
                    if r["digest"] in known and r["url"]:
                        conn.execute(
                            sa.update(table)
                            .where(table.c.digest == r["digest"], table.c.url.is_(None))
                            .values(url=r["url"])
                        )
        return added

    # -- reading -----------------------------------------------------------------------------------------------

    def list_cases(
        self,
        state: CaseState | None = None,
        detector: str | None = None,
        bank: str | None = None,
        min_score: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[CaseView]:
        """Cases in id order. `detector`, `bank` and `min_score` keep cases with at least one piece of evidence
        that matches (a score is whatever number the evidence carries: cosine, classifier score or distance)."""
        c, e = schema.cases.c, schema.evidence.c
        query = sa.select(schema.cases).order_by(c.id)
        if state is not None:
            query = query.where(c.state == CaseState(state).value)
        conditions = []
        if detector is not None:
            conditions.append(e.detector == detector)
        if bank is not None:
            conditions.append(e.bank == bank)
        if min_score is not None:
            conditions.append(e.score >= min_score)
        if conditions:
            query = query.where(sa.exists().where(e.case_id == c.id, *conditions))
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self._begin() as conn:
            rows = conn.execute(query).all()
            return self._views(conn, rows)

    def get_case(self, case_id: int) -> CaseView:
        with self._begin() as conn:
            rows = conn.execute(sa.select(schema.cases).where(schema.cases.c.id == case_id)).all()
            if not rows:
                raise SafesetError(f"no case {case_id} in the case store")
            return self._views(conn, rows)[0]

    def get_cases(self, case_ids: Sequence[int]) -> list[CaseView]:
        """Several cases at once, in the order asked; an unknown id is refused."""
        ids = [int(i) for i in case_ids]
        found: dict[int, CaseView] = {}
        with self._begin() as conn:
            for part in _chunks(ids):
                rows = conn.execute(sa.select(schema.cases).where(schema.cases.c.id.in_(part))).all()
                found.update((v.id, v) for v in self._views(conn, rows))
        missing = [i for i in ids if i not in found]
        if missing:
            raise SafesetError(f"no case {', '.join(map(str, missing[:10]))} in the case store")
        return [found[i] for i in ids]

    def cases_for_keys(self, keys: Iterable[str]) -> list[int]:
        """Ids of the cases any of these dataset keys occur under, ascending."""
        digests = sorted({_digest(k) for k in keys})
        found: set[int] = set()
        o = schema.occurrences.c
        with self._begin() as conn:
            for part in _chunks(digests):
                found.update(conn.scalars(sa.select(o.case_id).where(o.key_digest.in_(part))))
        return sorted(found)

    def _views(self, conn: Connection, rows: Sequence[sa.Row[Any]]) -> list[CaseView]:
        ids = [r.id for r in rows]
        occurrences: dict[int, list[Occurrence]] = {i: [] for i in ids}
        evidence: dict[int, list[Evidence]] = {i: [] for i in ids}
        o, e = schema.occurrences.c, schema.evidence.c
        for part in _chunks(ids):
            for r in conn.execute(
                sa.select(o.case_id, o.key, o.shard, o.row, o.url).where(o.case_id.in_(part)).order_by(o.id)
            ):
                occurrences[r.case_id].append(Occurrence(r.key, r.shard, int(r.row), r.url))
            for r in conn.execute(
                sa.select(e.case_id, e.detector, e.bank, e.evidence, e.action, e.score)
                .where(e.case_id.in_(part))
                .order_by(e.id)
            ):
                evidence[r.case_id].append(Evidence(r.detector, r.bank, r.evidence, r.action, r.score))
        return [
            CaseView(
                id=r.id,
                identity=r.identity,
                state=CaseState(r.state),
                occurrences=occurrences[r.id],
                evidence=evidence[r.id],
                first_seen=as_utc(r.first_seen),
                updated_at=as_utc(r.updated_at),
                pdq=r.pdq,
                md5=r.md5,
                sha1=r.sha1,
                sha256=r.sha256,
                reference=r.reference,
            )
            for r in rows
        ]

    def case_ids(self, states: Iterable[CaseState]) -> list[int]:
        c = schema.cases.c
        with self._begin() as conn:
            return list(
                conn.scalars(sa.select(c.id).where(c.state.in_([CaseState(s).value for s in states])).order_by(c.id))
            )

    def domains(self, case_ids: Sequence[int]) -> dict[tuple[int, str, int], str | None]:
        """Registrable domain of each occurrence, as the scan recorded it (for findings fed back to a scan)."""
        o = schema.occurrences.c
        found: dict[tuple[int, str, int], str | None] = {}
        with self._begin() as conn:
            for part in _chunks(list(case_ids)):
                for r in conn.execute(sa.select(o.case_id, o.shard, o.row, o.domain).where(o.case_id.in_(part))):
                    found[(r.case_id, r.shard, int(r.row))] = r.domain
        return found

    # -- transitions -----------------------------------------------------------------------------------------

    def transition(
        self,
        case_ids: Sequence[int],
        to: CaseState,
        who: str,
        reason: str,
        reference: str | None = None,
    ) -> None:
        """Move every listed case to `to`, logging each move; all or none (one illegal move refuses the lot)."""
        with self._begin() as conn:
            self._transition(conn, case_ids, CaseState(to), who, reason, reference)

    def _transition(
        self,
        conn: Connection,
        case_ids: Sequence[int],
        to: CaseState,
        who: str,
        reason: str,
        reference: str | None,
        pending: tuple[str, str] | None = None,
    ) -> None:
        _check_text("who", who)
        _check_text("reason", reason)
        if reference is not None:
            _check_text("reference", reference)
        if not who.strip():
            raise SafesetError("a transition needs a name for who made it")
        if to is CaseState.DISMISSED and not reason.strip():
            raise SafesetError("dismissing a case needs a reason")
        ids = sorted(set(int(i) for i in case_ids))
        if not ids:
            return
        c = schema.cases.c
        current: dict[int, CaseState] = {}
        for part in _chunks(ids):
            rows = conn.execute(sa.select(c.id, c.state).where(c.id.in_(part)).with_for_update())
            current.update({r.id: CaseState(r.state) for r in rows})
        missing = [i for i in ids if i not in current]
        if missing:
            raise SafesetError(f"no case {', '.join(map(str, missing[:10]))} in the case store")
        illegal = [i for i in ids if not can_move(current[i], to)]
        if illegal:
            shown = ", ".join(f"case {i} is {current[i].value}" for i in illegal[:5])
            more = f" (and {len(illegal) - 5} more)" if len(illegal) > 5 else ""
            raise SafesetError(f"cannot move to {to.value}: {shown}{more}; nothing was changed")
        now = _now()
        values: dict[str, Any] = {"state": to.value, "updated_at": now}
        values["pending_service"], values["pending_batch"] = pending if pending else (None, None)
        if to in _VERDICT_STATES and reference is not None:
            values["reference"] = reference
        for part in _chunks(ids):
            conn.execute(sa.update(schema.cases).where(c.id.in_(part)).values(**values))
        self._append_log(conn, [(i, current[i], to) for i in ids], who, reason, reference, now)

    # -- verification bookkeeping (used by safeset.cases.verify) ---------------------------------------------

    def mark_submitted(self, case_ids: Sequence[int], service: str, who: str) -> str:
        """Move candidates to `submitted` before anything is sent, recording the service and a batch id."""
        batch = uuid.uuid4().hex
        with self._begin() as conn:
            self._transition(
                conn,
                case_ids,
                CaseState.SUBMITTED,
                who,
                f"sent to {service} in batch {batch}",
                f"batch:{batch}",
                pending=(service, batch),
            )
        return batch

    def pending_submissions(self, service: str) -> list[int]:
        """Cases submitted to `service` whose verdict was never recorded (a run that stopped mid-batch)."""
        c = schema.cases.c
        with self._begin() as conn:
            return list(
                conn.scalars(
                    sa.select(c.id)
                    .where(c.state == CaseState.SUBMITTED.value, c.pending_service == service)
                    .order_by(c.id)
                )
            )

    def record_verdicts(self, verdicts: Sequence[tuple[int, CaseState, str, str | None]], who: str) -> None:
        """Record a batch's answers at once: (case id, state, reason, service reference) each."""
        with self._begin() as conn:
            for case_id, state, reason, reference in verdicts:
                self._transition(conn, [case_id], state, who, reason, reference)

    # -- audit log -------------------------------------------------------------------------------------------

    def _append_log(
        self,
        conn: Connection,
        moves: list[tuple[int, CaseState | None, CaseState]],
        who: str,
        reason: str,
        reference: str | None,
        at: datetime,
    ) -> None:
        h = schema.audit_head.c
        head = conn.execute(sa.select(h.seq, h.entry_hash).where(h.id == 1).with_for_update()).one()
        seq, prev = int(head.seq), head.entry_hash
        rows = []
        for case_id, from_state, to_state in moves:
            seq += 1
            fields = ChainFields(
                seq, at, who, case_id, from_state.value if from_state else None, to_state.value, reason, reference
            )
            digest = entry_hash(fields, prev)
            rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "who": who,
                    "case_id": case_id,
                    "from_state": fields.from_state,
                    "to_state": fields.to_state,
                    "reason": reason,
                    "reference": reference,
                    "prev_hash": prev,
                    "entry_hash": digest,
                }
            )
            prev = digest
        for part in _chunks(rows):
            conn.execute(sa.insert(schema.audit_log), list(part))
        conn.execute(sa.update(schema.audit_head).where(h.id == 1).values(seq=seq, entry_hash=prev))

    def audit_trail(self, case_id: int | None = None) -> list[AuditEntry]:
        a = schema.audit_log.c
        query = sa.select(schema.audit_log).order_by(a.seq)
        if case_id is not None:
            query = query.where(a.case_id == case_id)
        with self._begin() as conn:
            return [
                AuditEntry(
                    seq=r.seq,
                    at=as_utc(r.at),
                    who=r.who,
                    case_id=r.case_id,
                    from_state=CaseState(r.from_state) if r.from_state else None,
                    to_state=CaseState(r.to_state),
                    reason=r.reason,
                    reference=r.reference,
                    entry_hash=r.entry_hash,
                )
                for r in conn.execute(query)
            ]

    def verify_log(self) -> list[str]:
        """Problems with the audit log's hash chain, the first altered, deleted or reordered entry named first;
        empty when the chain holds."""
        a, h = schema.audit_log.c, schema.audit_head.c
        with self._begin() as conn:
            head = conn.execute(sa.select(h.seq, h.entry_hash).where(h.id == 1)).one_or_none()
            rows = conn.execute(sa.select(schema.audit_log).order_by(a.seq)).all()
        if head is None:
            return ["the log's head record is missing; the log was altered"]
        entries = [
            StoredEntry(
                ChainFields(r.seq, r.at, r.who, r.case_id, r.from_state, r.to_state, r.reason, r.reference),
                r.prev_hash,
                r.entry_hash,
            )
            for r in rows
        ]
        return verify_chain(entries, int(head.seq), head.entry_hash)


class _Group:
    """The findings of one import that share an identity: one case."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.digest = _digest(identity)
        self.facts = RowFacts()
        self.occurrences: dict[tuple[str, int, str], dict[str, Any]] = {}
        self.evidence: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    def add(self, record: dict[str, Any], facts: RowFacts) -> None:
        self.facts.fill(md5=facts.md5, sha1=facts.sha1, sha256=facts.sha256, pdq=facts.pdq)
        where = (record["shard"], int(record["row"]), record["key"])
        occurrence = self.occurrences.setdefault(
            where,
            {
                "key": record["key"],
                "key_digest": _digest(record["key"]),
                "shard": record["shard"],
                "row": int(record["row"]),
                "url": None,
                "domain": None,
            },
        )
        occurrence["url"] = occurrence["url"] or facts.url
        occurrence["domain"] = occurrence["domain"] or record.get("domain")
        what = (record["detector"], record["bank"], record["evidence"], record["action"])
        self.evidence.setdefault(
            what,
            {
                "detector": record["detector"],
                "bank": record["bank"],
                "evidence": record["evidence"],
                "action": record["action"],
                "score": parse_score(record["evidence"]),
            },
        )

    def hashes(self) -> dict[str, str | None]:
        return {"md5": self.facts.md5, "sha1": self.facts.sha1, "sha256": self.facts.sha256, "pdq": self.facts.pdq}

    def hashes_none(self) -> dict[str, Any]:
        return dict.fromkeys(("md5", "sha1", "sha256", "pdq"))

    def aliases(self) -> list[str]:
        """Every identity the group's item is known by, strongest first; the URLs of all its rows count."""
        names = _digest_identities(self.facts)
        names += [_url_identity(o["url"]) for o in self.occurrences.values() if o["url"]]
        return list(dict.fromkeys(names)) or [self.identity]


def _agree(case: dict[str, Any], group: dict[str, Any]) -> bool:
    """Whether the digests of a case and of a newly seen group can be the same item: no digest both hold differs
    (PDQ: within the match threshold, since re-encodings move it)."""
    for name in ("md5", "sha1", "sha256"):
        if case.get(name) and group.get(name) and case[name] != group[name]:
            return False
    if case.get("pdq") and group.get("pdq"):
        from safeset.kinds.pdq.index import DEFAULT_RADIUS  # the match threshold; loads numba, so only here

        differing = int(case["pdq"], 16) ^ int(group["pdq"], 16)
        return differing.bit_count() <= DEFAULT_RADIUS
    return True


def _url_identity(url: str) -> str:
    from safeset.signals.urls import CanonicalUrl

    try:
        return f"url:{CanonicalUrl().normalize(url)}"
    except (ValueError, UnicodeError):
        return f"url:{url.strip()}"


def _digest_identities(facts: RowFacts) -> list[str]:
    """The item's digests as identities, strongest first: image MD5, SHA-256, SHA-1, PDQ."""
    return [f"{name}:{value}" for name in ("md5", "sha256", "sha1", "pdq") if (value := getattr(facts, name))]


def _identity(key: str, facts: RowFacts) -> str:
    digests = _digest_identities(facts)
    if digests:
        return digests[0]
    if facts.url:
        return _url_identity(facts.url)
    return f"key:{key}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
