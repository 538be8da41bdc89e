"""End to end on shards written by the real img2dataset: serve benign photos over HTTP on 127.0.0.1, let
img2dataset download them (webdataset and parquet output), then run `safeset scan` and `safeset clean`
through the CLI and check the release against the served bytes.

Two facts about img2dataset that the checks rely on:
- its `md5` column hashes the bytes it downloaded, while the shard holds the bytes after its resizer; with
  `resize_mode="no"` and `skip_reencode=True` a JPEG is stored as served, so both signals agree; with
  resizing, only the metadata column still carries the served image's hash (`test_reencoded_*`);
- failed downloads are rows of the sidecar parquet (status `failed_to_download`) with nothing in the tar.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import random
import re
import signal
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.demo import PHOTOS, photo_names, variant

pytestmark = pytest.mark.slow

ROWS_PER_SHARD = 10


@dataclass(frozen=True)
class UrlRow:
    source_id: int
    url: str
    caption: str
    body: bytes | None  # None: the server answers 404

    @property
    def md5(self) -> str:
        assert self.body is not None
        return hashlib.md5(self.body).hexdigest()


@dataclass(frozen=True)
class Served:
    base: str
    rows: list[UrlRow]
    url_list: Path  # parquet: url, caption, source_id
    md5_bank_ids: frozenset[int]  # source ids whose bytes are in the md5 bank (the duplicate included)
    url_bank_te_id: int  # matched by the url bank only in ThreatExchange form (case differs in the path)
    url_bank_canonical_id: int  # matched only in canonical form (scheme and dot segment differ); a 404 row

    @property
    def bank_md5s(self) -> set[str]:
        return {r.md5 for r in self.rows if r.source_id in self.md5_bank_ids}

    @property
    def flagged_ids(self) -> set[int]:
        return set(self.md5_bank_ids) | {self.url_bank_te_id, self.url_bank_canonical_id}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def img2dataset() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        # albumentations (imported by img2dataset) checks PyPI for updates on import; spawned workers inherit.
        mp.setenv("NO_ALBUMENTATIONS_UPDATE", "1")
        # Downloads from 127.0.0.1 must not go through a proxy the environment may configure.
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        yield pytest.importorskip("img2dataset")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """~25 distinct benign JPEGs (bundled photos and re-encoded variants), a duplicate and two 404 URLs."""
    root = tmp_path_factory.mktemp("www")
    (root / "img").mkdir()
    (root / "copy").mkdir()
    files: list[tuple[str, bytes | None]] = []
    names = photo_names()
    for name in names:
        files.append((f"img/{name}.jpg", (PHOTOS / f"{name}.jpg").read_bytes()))
    for name in names[:7]:
        for index in (1, 2):
            files.append((f"img/{name}-v{index}.jpg", variant(name, index)))
    files += [("img/missing-1.jpg", None), ("img/gone/missing-2.jpg", None)]
    random.Random(11).shuffle(files)
    bodies = [b for _, b in files if b is not None]
    assert len({hashlib.md5(b).hexdigest() for b in bodies}) == len(bodies) >= 20

    for path, body in files:
        if body is not None:
            (root / path).write_bytes(body)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="img2dataset-e2e-http", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        rows = [
            UrlRow(i, f"{base}/{path}", f"a benign photo, file {Path(path).stem}", body)
            for i, (path, body) in enumerate(files)
        ]
        # One bank image per shard, and the same bytes as the first one served again under another URL.
        shards = [rows[lo : lo + ROWS_PER_SHARD] for lo in range(0, len(rows), ROWS_PER_SHARD)]
        bank_rows = [next(r for r in shard if r.body is not None) for shard in shards]
        first = bank_rows[0]
        (root / "copy" / "again.jpg").write_bytes(first.body or b"")
        dup = UrlRow(len(rows), f"{base}/copy/again.jpg", "the same photo at another address", first.body)
        rows.append(dup)
        md5_ids = frozenset([r.source_id for r in bank_rows] + [dup.source_id])
        te_row = next(r for r in rows if r.body is not None and r.source_id not in md5_ids)
        missing_row = next(r for r in rows if r.body is None)

        url_list = root.parent / f"{root.name}-urls.parquet"
        pq.write_table(
            pa.table(
                {
                    "url": [r.url for r in rows],
                    "caption": [r.caption for r in rows],
                    "source_id": pa.array([r.source_id for r in rows], type=pa.int64()),
                }
            ),
            url_list,
        )
        yield Served(base, rows, url_list, md5_ids, te_row.source_id, missing_row.source_id)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _download(img2dataset: Any, served: Served, out: Path, output_format: str, reencode: bool) -> Path:
    resize = {"resize_mode": "border"} if reencode else {"resize_mode": "no", "skip_reencode": True}
    previous_sigint = signal.getsignal(signal.SIGINT)
    try:
        img2dataset.download(
            url_list=str(served.url_list),
            input_format="parquet",
            url_col="url",
            caption_col="caption",
            output_format=output_format,
            output_folder=str(out),
            processes_count=1,
            thread_count=4,
            image_size=64,
            number_sample_per_shard=ROWS_PER_SHARD,
            save_additional_columns=["source_id"],
            compute_hash="md5",
            disallowed_header_directives=[],
            distributor="multiprocessing",
            enable_wandb=False,
            timeout=5,
            retries=0,
            **resize,
        )
    finally:
        signal.signal(signal.SIGINT, previous_sigint)  # img2dataset installs its own SIGINT handler
    return out


@pytest.fixture(scope="module")
def wds_dataset(img2dataset: Any, served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _download(img2dataset, served, tmp_path_factory.mktemp("i2d") / "wds", "webdataset", reencode=False)


@pytest.fixture(scope="module")
def wds_reencoded(img2dataset: Any, served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _download(img2dataset, served, tmp_path_factory.mktemp("i2d") / "wds-64px", "webdataset", reencode=True)


@pytest.fixture(scope="module")
def parquet_dataset(img2dataset: Any, served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _download(img2dataset, served, tmp_path_factory.mktemp("i2d") / "pq", "parquet", reencode=False)


@pytest.fixture
def banks(tmp_path: Path, served: Served) -> Path:
    """An md5 bank (three served images; a fourth row serves the same bytes) and a url bank whose entries are
    written differently from the dataset's URLs."""
    root = tmp_path / "banks"
    md5_list = tmp_path / "md5.txt"
    md5_list.write_text("".join(f"{h}\n" for h in sorted(served.bank_md5s)))
    BankStore(root).add("known-md5", "md5", md5_list)
    by_id = {r.source_id: r for r in served.rows}
    # Upper case throughout (the path too): equal in ThreatExchange form (all lower-cased) only.
    te_entry = by_id[served.url_bank_te_id].url.replace("http://", "https://").upper()
    missing = by_id[served.url_bank_canonical_id].url
    # Another scheme and a dot segment: equal in canonical form (scheme dropped, dot segments removed) only.
    canonical_entry = missing.replace("http://", "https://").replace("/img/", "/img/./", 1)
    assert canonical_entry != missing
    url_list = tmp_path / "urls.txt"
    url_list.write_text(f"# written unlike the dataset's URLs\n{te_entry}\n{canonical_entry}\n")
    BankStore(root).add("known-urls", "url", url_list)
    return root


runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"safeset {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result.output


def _scan(dataset: Path, banks: Path, run: Path, *extra: str) -> dict[str, Any]:
    _cli("scan", str(dataset), "--banks", str(banks), "--out", str(run), *extra)
    return json.loads((run / "summary.json").read_text())


def _shard_tables(root: Path) -> dict[str, pa.Table]:
    return {p.name: pq.read_table(p) for p in sorted(root.glob("*.parquet"))}


def _all_rows(root: Path) -> list[dict[str, Any]]:
    rows = []
    for table in _shard_tables(root).values():
        rows.extend(table.drop_columns([c for c in ("jpg", "exif") if c in table.column_names]).to_pylist())
    return rows


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]


def _layout(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "_safeset" not in p.parts}


def _findings(run: Path) -> list[dict[str, Any]]:
    return pq.read_table(run / "findings.parquet").to_pylist()


def _key_of(dataset: Path) -> dict[int, str]:
    return {r["source_id"]: r["key"] for r in _all_rows(dataset)}


def _check_findings(
    findings: list[dict[str, Any]], served: Served, keys: dict[int, str], md5_sources: set[str]
) -> None:
    """Flagged keys are exactly the bank rows; each md5 row carries evidence from `md5_sources`."""
    flagged = {keys[i] for i in served.flagged_ids}
    assert {f["key"] for f in findings} == flagged
    assert {f["action"] for f in findings} == {"remove"}
    md5_evidence: dict[str, set[str]] = {}
    for f in findings:
        if f["detector"] == "md5":
            assert f["bank"] == "known-md5"
            digest = f["evidence"].split(" ", 1)[0]
            assert digest.removeprefix("md5:") in served.bank_md5s
            assert re.fullmatch(r"md5:[0-9a-f]{32} L\d+ \(.+\)", f["evidence"]), f["evidence"]
            md5_evidence.setdefault(f["key"], set()).add(f["evidence"].partition("(")[2].rstrip(")"))
    assert md5_evidence == {keys[i]: md5_sources for i in served.md5_bank_ids}
    url_evidence = {f["key"]: f["evidence"] for f in findings if f["detector"] == "url"}
    assert set(url_evidence) == {keys[served.url_bank_te_id], keys[served.url_bank_canonical_id]}
    assert re.fullmatch(r"url L\d+ \(te form\)", url_evidence[keys[served.url_bank_te_id]])
    assert re.fullmatch(r"url L\d+ \(canonical form\)", url_evidence[keys[served.url_bank_canonical_id]])


def _check_release_manifest(release: Path, dataset_rows: dict[str, int], removed: int) -> dict[str, Any]:
    manifest = json.loads((release / "_safeset" / "release.json").read_text())
    for shard in manifest["shards"]:
        assert shard["rows_in"] == shard["rows_kept"] + shard["rows_removed"] + shard["rows_errored"], shard
        assert shard["rows_errored"] == 0, shard
    assert {s["shard"]: s["rows_in"] for s in manifest["shards"]} == dataset_rows
    assert manifest["rows_in"] == sum(dataset_rows.values())
    assert (manifest["rows_removed"], manifest["rows_errored"]) == (removed, 0)
    assert manifest["rows_kept"] == manifest["rows_in"] - removed
    return manifest


def _check_stats(release: Path, kept: dict[str, pa.Table]) -> None:
    """Each shard's _stats.json counts the rows the release kept, by status."""
    for name, table in kept.items():
        stats = json.loads((release / name.replace(".parquet", "_stats.json")).read_text())
        statuses = table["status"].to_pylist()
        assert stats["count"] == table.num_rows
        assert stats["successes"] == statuses.count("success")
        assert stats["failed_to_download"] == statuses.count("failed_to_download")
        assert stats["failed_to_resize"] == statuses.count("failed_to_resize")


def test_img2dataset_wrote_what_was_served(wds_dataset: Path, parquet_dataset: Path, served: Served) -> None:
    """Preconditions: every URL is a row, 404s are failed rows, and the shards hold the served bytes."""
    by_id = {r.source_id: r for r in served.rows}
    for root in (wds_dataset, parquet_dataset):
        rows = _all_rows(root)
        assert sorted(r["source_id"] for r in rows) == sorted(by_id)
        for row in rows:
            expected = by_id[row["source_id"]]
            assert row["url"] == expected.url and row["caption"] == expected.caption
            if expected.body is None:
                assert (row["status"], row["md5"]) == ("failed_to_download", None), row
            else:
                assert (row["status"], row["md5"]) == ("success", expected.md5), row
    keys = _key_of(wds_dataset)
    served_md5 = {keys[r.source_id]: r.md5 for r in served.rows if r.body is not None}
    in_tars: dict[str, str] = {}
    for tar in sorted(wds_dataset.glob("*.tar")):
        for name, data in _tar_members(tar).items():
            if name.endswith(".jpg"):
                in_tars[name.removesuffix(".jpg")] = hashlib.md5(data).hexdigest()
    assert in_tars == served_md5
    assert len(list(wds_dataset.glob("*.tar"))) == -(-len(served.rows) // ROWS_PER_SHARD) >= 3


def test_webdataset_scan_and_clean(wds_dataset: Path, served: Served, banks: Path, tmp_path: Path) -> None:
    keys = _key_of(wds_dataset)
    source_tables = _shard_tables(wds_dataset)
    run = tmp_path / "run"
    summary = _scan(wds_dataset, banks, run)

    # Every URL is a row, the two 404s included; nothing errored (a failed download is not a missing image).
    assert summary["rows_in"] == len(served.rows)
    assert {s["shard"]: s["rows_in"] for s in summary["shards"]} == {
        n.replace(".parquet", ".tar"): t.num_rows for n, t in source_tables.items()
    }
    assert summary["rows_errored"] == 0 and summary["shards_failed"] == 0
    assert summary["rows_by_action"] == {"remove": len(served.flagged_ids)}
    _check_findings(_findings(run), served, keys, {"image bytes", "metadata column md5"})

    release = tmp_path / "release"
    _cli("clean", str(wds_dataset), str(run), "--out", str(release), "--roadmap-bound", "0")  # exact counts: no decoys
    assert _layout(release) == _layout(wds_dataset)
    assert {p.name for p in release.iterdir()} - {p.name for p in wds_dataset.iterdir()} == {"_safeset"}
    _check_release_manifest(
        release,
        {n.replace(".parquet", ".tar"): t.num_rows for n, t in source_tables.items()},
        len(served.flagged_ids),
    )

    removed = {keys[i] for i in served.flagged_ids}
    kept_tables = _shard_tables(release)
    for name, source in source_tables.items():
        kept = kept_tables[name]
        assert kept.schema.equals(source.schema, check_metadata=True)
        assert "source_id" in kept.column_names
        expected = [r for r in source.to_pylist() if r["key"] not in removed]
        assert kept.to_pylist() == expected  # same rows, same order, passthrough column and all

        source_members = _tar_members(wds_dataset / name.replace(".parquet", ".tar"))
        kept_members = _tar_members(release / name.replace(".parquet", ".tar"))
        assert kept_members == {m: b for m, b in source_members.items() if m.split(".", 1)[0] not in removed}
        sample_keys = {m.split(".", 1)[0] for m in kept_members}
        assert sample_keys == {r["key"] for r in expected if r["status"] == "success"}
        for member, data in kept_members.items():
            assert hashlib.md5(data).hexdigest() not in served.bank_md5s, member
    _check_stats(release, kept_tables)

    # The release is still webdataset for its consumers, and scanning it again finds nothing.
    wds = pytest.importorskip("webdataset")
    for name, kept in kept_tables.items():
        samples = wds.WebDataset(str(release / name.replace(".parquet", ".tar")), shardshuffle=False)
        got = {s["__key__"]: hashlib.md5(s["jpg"]).hexdigest() for s in samples}
        assert set(got) == {r["key"] for r in kept.to_pylist() if r["status"] == "success"}
        assert not set(got.values()) & served.bank_md5s
    rescan = _scan(release, banks, tmp_path / "run-release")
    assert (rescan["rows_in"], rescan["rows_flagged"], rescan["rows_errored"]) == (
        len(served.rows) - len(served.flagged_ids),
        0,
        0,
    )

    # Metadata only: the sidecar's md5 column alone finds the same rows; the tars are not read.
    meta_run = tmp_path / "run-meta"
    meta_summary = _scan(wds_dataset, banks, meta_run, "--metadata-only")
    assert meta_summary["rows_in"] == len(served.rows)
    assert meta_summary["dataset"]["read_images"] is False
    _check_findings(_findings(meta_run), served, keys, {"metadata column md5"})


def test_parquet_output_scan_and_clean(parquet_dataset: Path, served: Served, banks: Path, tmp_path: Path) -> None:
    keys = _key_of(parquet_dataset)
    source_tables = _shard_tables(parquet_dataset)
    run = tmp_path / "run"
    summary = _scan(parquet_dataset, banks, run)
    assert summary["dataset"]["format"] == "parquet" and summary["dataset"]["read_images"] is True
    assert summary["rows_in"] == len(served.rows)
    assert summary["rows_errored"] == 0
    assert summary["rows_by_action"] == {"remove": len(served.flagged_ids)}
    _check_findings(_findings(run), served, keys, {"image bytes", "metadata column md5"})

    release = tmp_path / "release"
    _cli("clean", str(parquet_dataset), str(run), "--out", str(release), "--roadmap-bound", "0")
    assert _layout(release) == _layout(parquet_dataset)
    _check_release_manifest(release, {n: t.num_rows for n, t in source_tables.items()}, len(served.flagged_ids))

    removed = {keys[i] for i in served.flagged_ids}
    kept_tables = _shard_tables(release)
    for name, source in source_tables.items():
        kept = kept_tables[name]
        assert kept.schema.equals(source.schema, check_metadata=True)
        assert kept.to_pylist() == [r for r in source.to_pylist() if r["key"] not in removed]
        for blob in kept["jpg"].to_pylist():
            assert blob is None or hashlib.md5(blob).hexdigest() not in served.bank_md5s
    _check_stats(release, kept_tables)


def test_reencoded_webdataset_matches_only_by_metadata_column(
    wds_reencoded: Path, served: Served, banks: Path, tmp_path: Path
) -> None:
    """Resized shards hold other bytes than were served: only img2dataset's md5 column still matches."""
    keys = _key_of(wds_reencoded)
    for tar in wds_reencoded.glob("*.tar"):
        for name, data in _tar_members(tar).items():
            if name.endswith(".jpg"):
                with io.BytesIO(data) as handle:
                    assert handle.read(2) == b"\xff\xd8"
                assert hashlib.md5(data).hexdigest() not in {r.md5 for r in served.rows if r.body is not None}
    run = tmp_path / "run"
    summary = _scan(wds_reencoded, banks, run)
    assert summary["rows_in"] == len(served.rows)
    _check_findings(_findings(run), served, keys, {"metadata column md5"})

    release = tmp_path / "release"
    _cli("clean", str(wds_reencoded), str(run), "--out", str(release), "--roadmap-bound", "0")
    source_tables = _shard_tables(wds_reencoded)
    _check_release_manifest(
        release,
        {n.replace(".parquet", ".tar"): t.num_rows for n, t in source_tables.items()},
        len(served.flagged_ids),
    )
    removed = {keys[i] for i in served.flagged_ids}
    for tar in release.glob("*.tar"):
        assert not {m.split(".", 1)[0] for m in _tar_members(tar)} & removed
    _check_stats(release, _shard_tables(release))
