"""One item, one case, however it was first seen: flagged by URL in a metadata scan and by image MD5 in an image
scan (in either order) is one case that gains the MD5; a URL now serving other bytes is a case of its own."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from safeset.banks.store import BankStore
from safeset.cases import CaseStore
from safeset.demo import demo_rows, write_webdataset
from tests.conftest import write_list
from tests.helpers import scan


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str, str]:
    """A webdataset whose row `shared` is in a URL bank and (by its image) in an MD5 bank, and whose row `other`
    has the same URL but other bytes. Returns dataset, banks, the two keys and the image MD5."""
    root = tmp_path_factory.mktemp("identities")
    shards = demo_rows(shards=1, rows_per_shard=5)
    shared, other = shards[0][1], shards[0][3]
    other.url = shared.url
    assert other.image != shared.image
    write_webdataset(root / "ds", shards)
    write_webdataset(root / "meta", shards, md5_column=False)  # its metadata holds no image digest
    image_md5 = hashlib.md5(shared.image or b"").hexdigest()
    banks = root / "banks"
    store = BankStore(banks)
    store.add("urls", "url", write_list(root / "u.txt", [shared.url]))
    store.add("known", "md5", write_list(root / "m.txt", [image_md5]))
    return root / "ds", banks, shared.key, other.key, image_md5


def _scan(dataset: tuple[Path, Path, str, str, str], run: Path, kind: str) -> Path:
    data, banks = dataset[0], dataset[1]
    if kind == "url":  # metadata only, no md5 column: the URL is all that is known of the rows
        scan(data.parent / "meta", banks, run, bank_names=("urls",), metadata_only=True)
    else:  # image scan keeping every row's MD5 (duplicate expansion keeps the signals)
        scan(data, banks, run, bank_names=("known",), expanders=("duplicate",), policy={"duplicate": {"pdq": False}})
    return run


@pytest.mark.parametrize("order", [("url", "md5"), ("md5", "url")])
def test_an_item_seen_by_url_and_by_md5_is_one_case(
    dataset: tuple[Path, Path, str, str, str], store_url: str, tmp_path: Path, order: tuple[str, str]
) -> None:
    _, _, shared, other, image_md5 = dataset
    store = CaseStore.open(store_url)
    try:
        first = store.import_run(_scan(dataset, tmp_path / "first", order[0]), "alice")
        second = store.import_run(_scan(dataset, tmp_path / "second", order[1]), "alice")
        [case] = store.list_cases()  # the URL scan flags both rows (same URL, bytes unknown): the same case
        assert case.md5 == image_md5  # gained (or kept) the image digest
        assert {e.detector for e in case.evidence} == {"url", "md5"}
        assert sorted(o.key for o in case.occurrences) == sorted([shared, other])
        assert (first.new_cases, second.new_cases, second.updated_cases) == (1, 0, 1)
        assert len(store.audit_trail()) == 1  # one case created, once
    finally:
        store.close()


def test_a_url_serving_other_bytes_is_another_case(
    dataset: tuple[Path, Path, str, str, str], store_url: str, tmp_path: Path
) -> None:
    data, banks, shared, other, image_md5 = dataset
    store = CaseStore.open(store_url)
    try:
        store.import_run(_scan(dataset, tmp_path / "md5", "md5"), "alice")
        # Both banks and the kept signals: the other row is flagged by URL and its own MD5 is known and differs.
        run = tmp_path / "both"
        scan(data, banks, run, expanders=("duplicate",), policy={"duplicate": {"pdq": False}})
        result = store.import_run(run, "alice")
        by_key = {o.key: c for c in store.list_cases() for o in c.occurrences}
        assert by_key[shared].md5 == image_md5
        assert by_key[other].id != by_key[shared].id and by_key[other].md5 not in (None, image_md5)
        assert result.new_cases == 1
    finally:
        store.close()


def test_a_store_made_before_identities_keeps_its_cases_findable(
    dataset: tuple[Path, Path, str, str, str], store_url: str, tmp_path: Path
) -> None:
    """A store at the first schema holding a case opened by URL is migrated: the MD5 scan then joins that case."""
    import sqlalchemy as sa

    with CaseStore.open(store_url) as store:
        store.import_run(_scan(dataset, tmp_path / "url-run", "url"), "alice")
        with store.engine.begin() as conn:  # back to the first schema: no identities table
            conn.execute(sa.text("DROP TABLE identities"))
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    with CaseStore.open(store_url) as store:  # migrates again: back-fills the URL case's identity
        result = store.import_run(_scan(dataset, tmp_path / "md5-run", "md5"), "alice")
        assert (result.new_cases, result.updated_cases) == (0, 1)
        [case] = store.list_cases()
        assert case.identity.startswith("url:") and case.md5 == dataset[4]
