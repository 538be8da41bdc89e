"""Confirmed cases fed back to the next scan as seeds of its expansion pass (duplicates, embedding neighbours).

The audit loop this serves: a few confirmed items seed nearest-neighbour and copy searches that find many more
candidates, which are verified in turn. Only cases held as known material (confirmed, reported, withheld) seed.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from safeset.cases.model import CONFIRMED_STATES
from safeset.cases.store import CaseStore
from safeset.findings import FINDINGS_SCHEMA


def case_seed_findings(store_url: str, run_keys: Iterable[str] | None = None) -> pa.Table:
    """Confirmed cases' occurrences as findings rows (FINDINGS_SCHEMA), for a scan's expansion pass.

    One row per occurrence (dataset key, shard, row): `detector="case"`, `bank="cases"`,
    `evidence="case <id> confirmed (<service reference>)"`, `action="remove"`, and the registrable domain the
    scan recorded. `run_keys`, when given, keeps only occurrences whose key is in it (the rows of the dataset
    being scanned now; shard and row numbers of another dataset would point at the wrong rows). The store must
    exist; a bad URL raises SafesetError.
    """
    wanted = set(run_keys) if run_keys is not None else None
    store = CaseStore.open(store_url, create=False)
    try:
        cases = store.get_cases(store.case_ids(CONFIRMED_STATES))
        domains = store.domains([c.id for c in cases])
    finally:
        store.close()
    columns: dict[str, list[object]] = {name: [] for name in FINDINGS_SCHEMA.names}
    for case in cases:
        evidence = f"case {case.id} confirmed ({case.reference or 'no reference'})"
        for occurrence in case.occurrences:
            if wanted is not None and occurrence.key not in wanted:
                continue
            columns["key"].append(occurrence.key)
            columns["shard"].append(occurrence.shard)
            columns["row"].append(occurrence.row)
            columns["detector"].append("case")
            columns["bank"].append("cases")
            columns["evidence"].append(evidence)
            columns["action"].append("remove")
            columns["domain"].append(domains.get((case.id, occurrence.shard, occurrence.row)))
    return pa.table(columns, schema=FINDINGS_SCHEMA)


def seed_identities(store_url: str) -> dict[str, list[str]]:
    """What identifies confirmed items wherever they appear: image MD5s and PDQ hashes (hex, sorted, distinct) and
    the dataset keys they were found under, for matching in a dataset whose shard layout differs."""
    store = CaseStore.open(store_url, create=False)
    try:
        cases = store.get_cases(store.case_ids(CONFIRMED_STATES))
    finally:
        store.close()
    return {
        "md5": sorted({c.md5 for c in cases if c.md5}),
        "pdq": sorted({c.pdq for c in cases if c.pdq}),
        "keys": sorted({o.key for c in cases for o in c.occurrences}),
    }
