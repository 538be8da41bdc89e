"""The case store on SQLite and PostgreSQL: import and dedup, states, bulk marking, filters, the audit chain."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from safeset.cases import CaseState, CaseStore
from safeset.errors import SafesetError
from tests.cases.conftest import MD5_A, MD5_B, PDQ_D, finding, standard_run, write_run


def test_import_dedups_by_content_and_reimport_adds_nothing(store: CaseStore, tmp_path: Path) -> None:
    run = standard_run(tmp_path / "run")
    first = store.import_run(run, "alice")
    assert (first.new_cases, first.updated_cases, first.findings_read) == (3, 0, 4)
    assert first.note and "run.json" in first.note  # no dataset to read URLs from: said, not hidden
    by_identity = {c.identity: c for c in store.list_cases()}
    assert set(by_identity) == {f"md5:{MD5_A}", f"pdq:{PDQ_D}", "key:c"}
    same_image = by_identity[f"md5:{MD5_A}"]
    assert sorted(o.key for o in same_image.occurrences) == ["a", "b"]
    assert {e.detector for e in same_image.evidence} == {"md5", "url"}
    assert same_image.md5 == MD5_A and same_image.state is CaseState.CANDIDATE
    assert by_identity[f"pdq:{PDQ_D}"].pdq == PDQ_D
    assert by_identity["key:c"].evidence[0].score == pytest.approx(0.912345)
    assert by_identity[f"pdq:{PDQ_D}"].evidence[0].score == 12.0

    again = store.import_run(run, "alice")
    assert (again.new_cases, again.updated_cases) == (0, 0)
    assert len(store.list_cases()) == 3
    assert sum(len(c.occurrences) for c in store.list_cases()) == 4
    assert [e.to_state for e in store.audit_trail()] == [CaseState.CANDIDATE] * 3  # creation logged once each


def test_a_second_run_extends_known_cases(store: CaseStore, tmp_path: Path) -> None:
    store.import_run(standard_run(tmp_path / "run1"), "alice")
    second = write_run(
        tmp_path / "run2",
        [
            finding("e", "s2.tar", 7, "md5", "known", f"md5:{MD5_A} L1 (image bytes)"),  # a third copy of A
            finding("f", "s2.tar", 8, "md5", "known", f"md5:{MD5_B} L2 (image bytes)"),  # a new item
        ],
    )
    result = store.import_run(second, "bob")
    assert (result.new_cases, result.updated_cases, result.findings_read) == (1, 1, 2)
    [known] = store.list_cases(state=CaseState.CANDIDATE, bank="known", detector="md5")[:1]
    assert sorted(o.key for o in known.occurrences) == ["a", "b", "e"]
    assert store.cases_for_keys(["e", "a", "nope"]) == [known.id]


def test_legal_and_illegal_transitions(store: CaseStore, tmp_path: Path) -> None:
    store.import_run(standard_run(tmp_path / "run"), "alice")
    ids = [c.id for c in store.list_cases()]
    store.transition(ids[:2], CaseState.SUBMITTED, "alice", "sent", "batch:1")
    store.transition([ids[0]], CaseState.CONFIRMED, "alice", "known to the service", "ref-9")
    assert store.get_case(ids[0]).reference == "ref-9"
    with pytest.raises(SafesetError, match=rf"case {ids[0]} is confirmed"):
        store.transition([ids[0]], CaseState.DISMISSED, "alice", "changed my mind")
    # One illegal move refuses the whole list: case 2 (submitted) could be confirmed, case 3 (candidate) cannot
    # be reported, so neither moves.
    with pytest.raises(SafesetError, match="nothing was changed"):
        store.transition([ids[1], ids[2]], CaseState.REPORTED, "alice", "x")
    assert store.get_case(ids[1]).state is CaseState.SUBMITTED
    with pytest.raises(SafesetError, match="needs a reason"):
        store.transition([ids[2]], CaseState.DISMISSED, "alice", "  ")
    with pytest.raises(SafesetError, match="no case 999"):
        store.transition([999], CaseState.DISMISSED, "alice", "gone")
    store.transition([ids[0]], CaseState.REPORTED, "alice", "exported")
    store.transition([ids[0]], CaseState.WITHHELD, "alice", "release r1")
    trail = store.audit_trail(ids[0])
    assert [(e.from_state, e.to_state) for e in trail] == [
        (None, CaseState.CANDIDATE),
        (CaseState.CANDIDATE, CaseState.SUBMITTED),
        (CaseState.SUBMITTED, CaseState.CONFIRMED),
        (CaseState.CONFIRMED, CaseState.REPORTED),
        (CaseState.REPORTED, CaseState.WITHHELD),
    ]
    assert trail[2].reference == "ref-9" and trail[2].who == "alice"
    assert store.verify_log() == []


def test_list_filters(store: CaseStore, tmp_path: Path) -> None:
    store.import_run(standard_run(tmp_path / "run"), "alice")
    assert [c.identity for c in store.list_cases(detector="neighbor")] == ["key:c"]
    assert [c.identity for c in store.list_cases(min_score=10)] == [f"pdq:{PDQ_D}"]
    assert len(store.list_cases(bank="known")) == 2
    assert len(store.list_cases(limit=2)) == 2 and len(store.list_cases(offset=2)) == 1
    assert store.list_cases(state=CaseState.CONFIRMED) == []


def _tamper(url: str, statement: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for part in statement.split(";"):
            conn.execute(sa.text(part))
    engine.dispose()


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3", r"^entry 3: contents"),
        ("DELETE FROM audit_log WHERE seq = 2", r"^entry 3: expected entry 2"),
        # Swap two entries' places in the order: each now sits where the chain expects the other.
        (
            "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 4; "
            "UPDATE audit_log SET seq = 4 WHERE seq = -1",
            r"^entry 2: does not follow",
        ),
        ("DELETE FROM audit_log WHERE seq = 5", r"^entry 5: the log ends at entry 4"),
    ],
)
def test_verify_log_names_the_first_tampered_entry(store_url: str, tmp_path: Path, statement: str, named: str) -> None:
    with CaseStore.open(store_url) as store:
        store.import_run(standard_run(tmp_path / "run"), "alice")
        ids = [c.id for c in store.list_cases()]
        store.transition(ids[:2], CaseState.DISMISSED, "alice", "benign look-alike")
        assert len(store.audit_trail()) == 5 and store.verify_log() == []
    _tamper(store_url, statement)
    with CaseStore.open(store_url) as store:
        problems = store.verify_log()
    assert problems and re.match(named, problems[0]), problems


def test_sqlite_file_is_private_and_urls_are_checked(tmp_path: Path) -> None:
    with CaseStore.open(str(tmp_path / "plain-path.db")):
        pass
    assert os.stat(tmp_path / "plain-path.db").st_mode & 0o777 == 0o600
    with pytest.raises(SafesetError, match="does not exist"):
        CaseStore.open(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    with pytest.raises(SafesetError, match="only sqlite"):
        CaseStore.open("mysql://u@h/db")
    with pytest.raises(SafesetError, match="folder"):
        CaseStore.open(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")


def test_damaged_findings_are_one_clear_error(store: CaseStore, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "findings.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SafesetError, match=r"findings\.parquet: unreadable"):
        store.import_run(tmp_path / "run", "alice")
    with pytest.raises(SafesetError, match=r"no findings\.parquet"):
        store.import_run(tmp_path / "elsewhere", "alice")
