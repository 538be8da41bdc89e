"""URL screening beyond exact URLs: path prefixes, URL hashes under several normal forms, opt-outs apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.errors import InputError
from safeset.signals.urls import NORMALIZERS
from tests.helpers import findings, scan


def write_dataset(root: Path, urls: dict[str, str], captions: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    keys = list(urls)
    table = pa.table(
        {
            "key": keys,
            "URL": [urls[k] for k in keys],
            "TEXT": [(captions or {}).get(k, "a benign caption") for k in keys],
        }
    )
    pq.write_table(table, root / "part-00000.parquet")
    return root


def lines(path: Path, *entries: str) -> Path:
    path.write_text("".join(e + "\n" for e in entries), encoding="utf-8")
    return path


def by_key(run: Path, bank: str) -> dict[str, str]:
    return {f["key"]: f["evidence"] for f in findings(run) if f["bank"] == bank}


def test_url_prefix_matches_at_path_segment_boundaries(tmp_path: Path) -> None:
    urls = {
        "exact": "https://photos.example.org/gallery",
        "below": "http://PHOTOS.example.org/gallery/2019/a.jpg",
        "query": "https://photos.example.org/gallery?page=2",
        "sibling": "https://photos.example.org/gallery2/a.jpg",
        "other-path": "https://photos.example.org/other/a.jpg",
        "host-entry": "https://cdn.example.net/x/y.png",
        "subdomain": "https://img.cdn.example.net/y.png",
        "default-port": "https://photos.example.org:443/gallery/b.jpg",
    }
    dataset = write_dataset(tmp_path / "d", urls)
    source = lines(tmp_path / "p.txt", "photos.example.org/gallery/", "https://cdn.example.net")
    info = BankStore(tmp_path / "banks").add("prefixes", "url-prefix", source)
    assert (info.entries, info.action) == (2, "remove")
    scan(dataset, tmp_path / "banks", tmp_path / "run")
    hits = by_key(tmp_path / "run", "prefixes")
    assert set(hits) == {"exact", "below", "query", "host-entry", "default-port"}
    assert hits["below"] == "url-prefix:photos.example.org/gallery L1"
    assert hits["host-entry"] == "url-prefix:cdn.example.net L2"


def test_url_prefix_refuses_queries_and_non_urls_with_line(tmp_path: Path) -> None:
    source = lines(tmp_path / "p.txt", "example.org/a", "example.org/search?q=1", "not a url")
    with pytest.raises(InputError) as err:
        BankStore(tmp_path / "banks").add("p", "url-prefix", source)
    assert f"{source}:3" in str(err.value)
    source = lines(tmp_path / "p.txt", "example.org/a", "example.org/search?q=1")
    with pytest.raises(InputError) as err:
        BankStore(tmp_path / "banks").add("p", "url-prefix", source)
    assert f"{source}:2" in str(err.value) and "no query" in str(err.value)
    info = BankStore(tmp_path / "banks").add("p", "url-prefix", source, skip_invalid=True)
    assert (info.entries, info.skipped_invalid) == (1, 1)


def test_url_hash_bank_matches_every_normal_form_and_says_which(tmp_path: Path) -> None:
    urls = {
        "te-listed": "https://Files.Example.org/a/b.jpg",
        "canonical-listed": "https://files.example.org:443/x/./y.jpg#frag",
        "unlisted": "https://files.example.org/z.jpg",
    }
    dataset = write_dataset(tmp_path / "d", urls)

    def md5(form: str, url: str) -> str:
        return hashlib.md5(NORMALIZERS[form].normalize(url).encode()).hexdigest()

    source = lines(tmp_path / "h.txt", md5("te", urls["te-listed"]), md5("canonical", urls["canonical-listed"]))
    assert md5("te", urls["canonical-listed"]) != md5("canonical", urls["canonical-listed"])
    store = BankStore(tmp_path / "banks")
    info = store.add("all-forms", "url-md5", source)
    assert info.details["url_forms"] == ["te", "canonical"]
    store.add("te-only", "url-md5", source, options={"url_forms": ["te"]})
    scan(dataset, tmp_path / "banks", tmp_path / "run")
    all_forms = by_key(tmp_path / "run", "all-forms")
    assert set(all_forms) == {"te-listed", "canonical-listed"}
    assert all_forms["te-listed"] == f"url-md5:{md5('te', urls['te-listed'])} L1 (te form)"
    assert all_forms["canonical-listed"] == f"url-md5:{md5('canonical', urls['canonical-listed'])} L2 (canonical form)"
    assert set(by_key(tmp_path / "run", "te-only")) == {"te-listed"}


def test_summary_tells_opt_outs_from_abuse_matches_and_review(tmp_path: Path) -> None:
    urls = {
        "listed": "https://bad.example.com/1.jpg",
        "opted-out-domain": "https://shop.optout.example.net/2.jpg",
        "opted-out-path": "https://artist.example.org/portfolio/3.jpg",
        "listed-and-opted-out": "https://shop.optout.example.net/listed.jpg",
        "caption-hit": "https://fine.example.com/4.jpg",
        "clean": "https://fine.example.com/5.jpg",
    }
    dataset = write_dataset(tmp_path / "d", urls, captions={"caption-hit": "a zorblax poster"})
    store = BankStore(tmp_path / "banks")
    store.add("hotline-urls", "url", lines(tmp_path / "u.txt", urls["listed"], urls["listed-and-opted-out"]))
    store.add("optout-domains", "exclude-domain", lines(tmp_path / "d.txt", "optout.example.net"))
    store.add("optout-paths", "exclude-url-prefix", lines(tmp_path / "p.txt", "artist.example.org/portfolio"))
    store.add("terms", "term", lines(tmp_path / "t.txt", "zorblax"))
    summary = scan(dataset, tmp_path / "banks", tmp_path / "run")
    # The strongest action decides a row: a listed URL stays an abuse match even on an opted-out domain.
    assert summary["rows_by_action"] == {"exclude": 2, "remove": 2, "review": 1}
    assert summary["findings_by_detector"] == {"exclude-domain": 2, "exclude-url-prefix": 1, "term": 1, "url": 2}
    actions = {(f["key"], f["bank"]): f["action"] for f in findings(tmp_path / "run")}
    assert actions[("opted-out-path", "optout-paths")] == "exclude"
    assert actions[("listed-and-opted-out", "hotline-urls")] == "remove"
    assert actions[("caption-hit", "terms")] == "review"
    assert summary["rows_clean"] == 1
