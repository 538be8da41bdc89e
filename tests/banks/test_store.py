from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import numpy as np
import pytest

from safeset.banks.store import BankStore
from safeset.errors import InputError, SafesetError
from safeset.kinds.digest.digestset import DigestSet


def md5s(n: int, salt: str = "") -> list[str]:
    return [hashlib.md5(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def test_import_records_provenance_and_is_private(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    source.write_text("# a comment\n\n" + "\n".join(md5s(10) + md5s(2)) + "\n")
    info = BankStore(tmp_path / "banks").add("hotline", "md5", source)
    assert (info.entries, info.duplicates, info.skipped_invalid) == (10, 2, 0)
    assert info.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert info.action == "remove" and info.imported_at
    folder = tmp_path / "banks" / "hotline"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [b.name for b in BankStore(tmp_path / "banks").list()] == ["hotline"]


def test_invalid_line_is_named_with_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    good = md5s(3)
    source.write_text(f"{good[0]}\n\n{good[1]}\nnot-a-hash\n{good[2]}\n")
    with pytest.raises(InputError) as err:
        BankStore(tmp_path / "banks").add("b", "md5", source)
    assert f"{source}:4" in str(err.value) and "not-a-hash" in str(err.value)
    assert not (tmp_path / "banks" / "b").exists()
    info = BankStore(tmp_path / "banks").add("b", "md5", source, skip_invalid=True)
    assert (info.entries, info.skipped_invalid) == (3, 1)


def test_csv_column_and_missing_column(tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    rows = md5s(4)
    source.write_text("id,md5,note\n" + "".join(f"{i},{h},x\n" for i, h in enumerate(rows)))
    info = BankStore(tmp_path / "banks").add("csv", "md5", source, column="md5")
    assert info.entries == 4
    with pytest.raises(InputError, match="column 'sha1' not in CSV header"):
        BankStore(tmp_path / "banks").add("csv2", "md5", source, column="sha1")


def test_existing_bank_needs_replace(tmp_path: Path) -> None:
    source = tmp_path / "l.txt"
    source.write_text(md5s(1)[0] + "\n")
    store = BankStore(tmp_path / "banks")
    store.add("b", "md5", source)
    with pytest.raises(SafesetError, match="already exists"):
        store.add("b", "md5", source)
    store.add("b", "md5", source, replace=True)
    with pytest.raises(SafesetError, match="unknown bank kind"):
        store.add("c", "nope", source)


def test_url_and_domain_banks_validate(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("https://example.org/a.jpg\nnot a url\n")
    with pytest.raises(InputError, match=r"urls.txt:2"):
        BankStore(tmp_path / "banks").add("u", "url", urls)
    domains = tmp_path / "domains.txt"
    domains.write_text("Example.COM\n*.optout.example.net\nbad domain!\n")
    with pytest.raises(InputError, match=r"domains.txt:3"):
        BankStore(tmp_path / "banks").add("d", "exclude-domain", domains)
    info = BankStore(tmp_path / "banks").add("d", "exclude-domain", domains, skip_invalid=True)
    assert (info.entries, info.action) == (2, "exclude")


def test_digest_set_membership_matches_python_sets() -> None:
    rng = np.random.default_rng(3)
    bank = rng.integers(0, 256, size=(5000, 16), dtype=np.uint8)
    # Entries that share their 8-byte prefix with a bank entry but differ later must not match.
    near = bank[:50].copy()
    near[:, 15] ^= 1
    queries = np.concatenate([bank[::3], rng.integers(0, 256, size=(3000, 16), dtype=np.uint8), near])
    dset = DigestSet.build(np.concatenate([bank, bank[:10]]))
    assert len(dset) == 5000
    expected = {bytes(r) for r in bank}
    got = dset.contains(queries)
    assert got.tolist() == [bytes(q) in expected for q in queries]
    valid = np.ones(len(queries), dtype=bool)
    valid[0] = False
    assert not dset.contains(queries, valid)[0]


def test_digest_set_with_shared_prefixes(tmp_path: Path) -> None:
    base = np.zeros((4, 16), dtype=np.uint8)
    base[:, 15] = [1, 2, 3, 4]  # same 8-byte prefix for all four
    dset = DigestSet.build(base)
    dset.save(tmp_path)
    loaded = DigestSet.load(tmp_path, dset.bits)
    queries = np.zeros((5, 16), dtype=np.uint8)
    queries[:, 15] = [4, 5, 1, 3, 0]
    assert loaded.contains(queries).tolist() == [True, False, True, True, False]
