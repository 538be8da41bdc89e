"""Datasets where users keep them: globs, several paths, fsspec's memory filesystem and a real S3-compatible server
(moto, on 127.0.0.1 only) give the same findings, byte for byte, as the same files on local disk; bad locations are
one-line errors; a remote shard that fails while being read fails alone."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.demo import demo_rows, write_webdataset
from safeset.io.detect import open_dataset
from safeset.io.location import resolve_location
from safeset.rundir import RunDir, pin_shard
from tests.conftest import image_rows, laion_table, write_list
from tests.embed.layout import at_cosine, random_unit, write_laion_layout

RUN_FILES = ("findings.parquet", "errors.parquet")


@pytest.fixture
def local(tmp_path: Path) -> dict[str, Path]:
    """A webdataset, a parquet folder and a LAION embedding layout on local disk, with benign stand-in banks."""
    shards = demo_rows(shards=3, rows_per_shard=12)
    write_webdataset(tmp_path / "wds", shards)
    parquet = tmp_path / "pq"
    parquet.mkdir()
    for part in range(3):
        pq.write_table(laion_table(40, offset=part * 40), parquet / f"part-{part:05d}.parquet", row_group_size=16)
    rng = np.random.default_rng(3)
    vectors = random_unit(200, 16, rng)
    for spot, cosine in ((30, 0.97), (150, 0.9)):
        vectors[spot] = at_cosine(vectors[10], cosine, rng)
    write_laion_layout(tmp_path / "laion", [vectors[:100], vectors[100:]])

    wds_banks = tmp_path / "wds-banks"
    known = [hashlib.md5(r.image or b"").hexdigest() for r in image_rows(shards)[::7][:3]]
    BankStore(wds_banks).add("known", "md5", write_list(tmp_path / "md5.txt", known))
    meta_banks = tmp_path / "meta-banks"
    md5s = [hashlib.md5(f"image-{row}".encode()).hexdigest() for row in (10, 55, 101)]
    BankStore(meta_banks).add("known", "md5", write_list(tmp_path / "meta-md5.txt", md5s))
    BankStore(meta_banks).add("urls", "url", write_list(tmp_path / "urls.txt", ["https://img3.example.org/p/83.jpg"]))
    return {
        "wds": tmp_path / "wds",
        "pq": tmp_path / "pq",
        "laion": tmp_path / "laion",
        "wds-banks": wds_banks,
        "meta-banks": meta_banks,
    }


def upload(fs: Any, local_root: Path, remote_root: str) -> None:
    """Copy a local folder's files to `remote_root` (a path on `fs`, no protocol)."""
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            fs.pipe(f"{remote_root}/{path.relative_to(local_root).as_posix()}", path.read_bytes())


def scan_cli(datasets: list[str], banks: Path, out: Path, *flags: str) -> Any:
    return CliRunner().invoke(app, ["scan", *datasets, "--banks", str(banks), "--out", str(out), *flags])


def assert_same_run(a: Path, b: Path) -> None:
    """The same findings and errors, byte for byte, and the same shards with the same pinned files."""
    for name in RUN_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    shards_a = json.loads((a / "summary.json").read_text())["shards"]
    shards_b = json.loads((b / "summary.json").read_text())["shards"]
    keep = ("shard", "rows_in", "rows_flagged", "rows_errored", "error", "pins")
    assert [{k: s[k] for k in keep} for s in shards_a] == [{k: s[k] for k in keep} for s in shards_b]


def one_line_error(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh folder on fsspec's in-process memory filesystem, removed afterwards."""
    root = f"/safeset-{uuid.uuid4().hex}"
    yield root
    fs = MemoryFileSystem()
    if fs.exists(root):
        fs.rm(root, recursive=True)


# -- fsspec's memory filesystem -------------------------------------------------------------------------------


def test_memory_filesystem_scans_equal_local(local: dict[str, Path], memory_root: str, tmp_path: Path) -> None:
    fs = MemoryFileSystem()
    for name in ("wds", "pq"):
        upload(fs, local[name], f"{memory_root}/{name}")
    for name, banks, flags in (("wds", "wds-banks", ["--expand", "duplicate"]), ("pq", "meta-banks", [])):
        on_disk = scan_cli([str(local[name])], local[banks], tmp_path / f"{name}-local", *flags)
        remote = scan_cli([f"memory://{memory_root}/{name}"], local[banks], tmp_path / f"{name}-mem", *flags)
        assert on_disk.exit_code == 0 and remote.exit_code == 0, (on_disk.output, remote.output)
        assert pq.read_table(tmp_path / f"{name}-local" / "findings.parquet").num_rows > 0
        assert_same_run(tmp_path / f"{name}-local", tmp_path / f"{name}-mem")


def release_files(out: Path) -> dict[str, bytes]:
    files = {f.relative_to(out).as_posix(): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
    files.pop("_safeset/release.json")  # names the release id and time
    return files


def test_remote_and_globbed_datasets_clean_to_the_same_bytes_as_local(
    local: dict[str, Path], memory_root: str, tmp_path: Path
) -> None:
    """`clean` takes the dataset as `scan` did (a URL, a glob, several paths) and writes the same release."""
    fs = MemoryFileSystem()
    for name in ("wds", "pq"):
        upload(fs, local[name], f"{memory_root}/{name}")
    parts = sorted(str(p) for p in local["pq"].glob("*.parquet"))
    cases = (
        ("wds", "wds-banks", [str(local["wds"])], [f"memory://{memory_root}/wds"]),
        ("pq", "meta-banks", [str(local["pq"])], [f"memory://{memory_root}/pq/part-*.parquet"]),
        ("pq-several", "meta-banks", [str(local["pq"])], parts),
    )
    for name, banks, on_disk, elsewhere in cases:
        for label, spec in (("local", on_disk), ("other", elsewhere)):
            run, out = tmp_path / f"{name}-{label}", tmp_path / f"{name}-{label}-release"
            assert scan_cli(spec, local[banks], run).exit_code == 0
            result = CliRunner().invoke(app, ["clean", *spec, str(run), "--out", str(out), "--roadmap-bound", "0"])
            assert result.exit_code == 0, result.output
        released = release_files(tmp_path / f"{name}-local-release")
        assert released and released == release_files(tmp_path / f"{name}-other-release"), name
    wrong = CliRunner().invoke(
        app, ["clean", str(local["wds"]), str(tmp_path / "pq-other"), "--out", str(tmp_path / "x")]
    )
    assert wrong.exit_code == 2 and "is a scan of" in wrong.output


def test_memory_laion_embeddings_neighbours_equal_local(
    local: dict[str, Path], memory_root: str, tmp_path: Path
) -> None:
    """Embedding parts on a remote filesystem are read by byte range (no memory map), with the same results."""
    upload(MemoryFileSystem(), local["laion"], f"{memory_root}/laion")
    flags = ["--expand", "neighbor", "--neighbor-threshold", "0.85"]
    on_disk = scan_cli([str(local["laion"])], local["meta-banks"], tmp_path / "local", *flags)
    remote = scan_cli([f"memory://{memory_root}/laion"], local["meta-banks"], tmp_path / "mem", *flags)
    assert on_disk.exit_code == 0 and remote.exit_code == 0, (on_disk.output, remote.output)
    detectors = set(pq.read_table(tmp_path / "local" / "findings.parquet")["detector"].to_pylist())
    assert "neighbor" in detectors
    assert_same_run(tmp_path / "local", tmp_path / "mem")


# -- globs and several paths ----------------------------------------------------------------------------------


def test_globs_and_several_paths_equal_the_folder(local: dict[str, Path], memory_root: str, tmp_path: Path) -> None:
    wds, parquet = local["wds"], local["pq"]
    assert scan_cli([str(wds)], local["wds-banks"], tmp_path / "wds-dir").exit_code == 0
    assert scan_cli([f"{wds}/*.tar"], local["wds-banks"], tmp_path / "wds-glob").exit_code == 0
    assert_same_run(tmp_path / "wds-dir", tmp_path / "wds-glob")

    parts = sorted(str(p) for p in parquet.glob("*.parquet"))
    assert scan_cli([str(parquet)], local["meta-banks"], tmp_path / "pq-dir").exit_code == 0
    assert scan_cli(parts, local["meta-banks"], tmp_path / "pq-list").exit_code == 0
    assert_same_run(tmp_path / "pq-dir", tmp_path / "pq-list")

    # A subset: only the files chosen are read, and their ids stay relative to the folder holding them.
    subset = scan_cli(parts[1:], local["meta-banks"], tmp_path / "pq-subset")
    assert subset.exit_code == 0, subset.output
    summary = json.loads((tmp_path / "pq-subset" / "summary.json").read_text())
    assert [s["shard"] for s in summary["shards"]] == ["part-00001.parquet", "part-00002.parquet"]

    upload(MemoryFileSystem(), parquet, f"{memory_root}/pq")
    remote = scan_cli([f"memory://{memory_root}/pq/part-*.parquet"], local["meta-banks"], tmp_path / "pq-mem")
    assert remote.exit_code == 0, remote.output
    assert_same_run(tmp_path / "pq-dir", tmp_path / "pq-mem")


def test_several_folders_get_ids_from_their_common_folder(local: dict[str, Path], tmp_path: Path) -> None:
    where = resolve_location([str(local["pq"]), str(local["wds"])])
    assert where.root == local["pq"].parent.absolute()
    dataset = open_dataset(where)
    ids = [s.id for s in dataset.shards()]
    assert ids == ["wds/00000.tar", "wds/00001.tar", "wds/00002.tar"]  # the parquet parts are not tar shards
    assert len(set(ids)) == len(ids)


def test_out_inside_a_globbed_folder_is_refused(local: dict[str, Path]) -> None:
    result = scan_cli([f"{local['wds']}/*.tar"], local["wds-banks"], local["wds"] / "run")
    assert "inside the dataset" in one_line_error(result)


# -- hostile locations ----------------------------------------------------------------------------------------


def test_bad_locations_are_one_line_errors(local: dict[str, Path], memory_root: str, tmp_path: Path) -> None:
    banks = local["meta-banks"]
    assert "matches no file" in one_line_error(scan_cli([f"{local['pq']}/*.nothing"], banks, tmp_path / "a"))
    assert "matches no file" in one_line_error(scan_cli([f"memory://{memory_root}/*.tar"], banks, tmp_path / "b"))
    assert "does not exist" in one_line_error(scan_cli([f"memory://{memory_root}/none"], banks, tmp_path / "c"))
    mixed = scan_cli([str(local["pq"]), f"memory://{memory_root}/x"], banks, tmp_path / "d")
    assert "different filesystems" in one_line_error(mixed)
    assert "no filesystem" in one_line_error(scan_cli(["nosuchprotocol-xyz://a/b"], banks, tmp_path / "e"))
    MemoryFileSystem().pipe(f"{memory_root}/junk.parquet", b"PAR1 this is not parquet")
    unreadable = scan_cli([f"memory://{memory_root}/junk.parquet"], banks, tmp_path / "f")
    assert "junk.parquet" in one_line_error(unreadable)


class FailingReads(MemoryFileSystem):
    """fsspec's memory filesystem, except that a read from the middle third of a file named `*bad*` fails, as a
    connection that drops partway through an object does."""

    protocol = "failing"
    # A store of its own (MemoryFileSystem keeps one per class, shared by its instances).
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.removeprefix("failing://"))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = super()._open(path, mode, **kwargs)
        if "bad" not in path or "r" not in mode:
            return handle
        total = self.size(path)
        read = handle.read

        def failing_read(size: int = -1) -> bytes:
            # A read starting in the middle third fails: the footer (read from the end) and a whole-file read from
            # the start still succeed, so the shard's row count is known and it fails while its rows are read.
            if total // 3 <= handle.tell() < 2 * total // 3:
                raise ConnectionResetError(104, "connection reset by peer")
            return read(size)

        handle.read = failing_read
        return handle


@pytest.mark.filterwarnings("ignore:UPath 'failing' filesystem not explicitly implemented")
def test_a_remote_shard_failing_mid_read_fails_alone(local: dict[str, Path], tmp_path: Path) -> None:
    fsspec.register_implementation("failing", FailingReads, clobber=True)
    fs = FailingReads()
    root = f"/run-{uuid.uuid4().hex}"
    try:
        upload(fs, local["pq"], root)
        fs.mv(f"{root}/part-00001.parquet", f"{root}/part-00001-bad.parquet")
        result = scan_cli([f"failing://{root}"], local["meta-banks"], tmp_path / "run")
        assert result.exit_code == 1, result.output
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        failed = [s for s in summary["shards"] if s["error"]]
        assert [s["shard"] for s in failed] == ["part-00001-bad.parquet"]
        assert "connection reset" in failed[0]["error"] and failed[0]["rows_errored"] == failed[0]["rows_in"]
        assert summary["rows_in"] == 120  # the failed shard's rows are still counted (errored)
        good = [s for s in summary["shards"] if not s["error"]]
        assert [s["rows_in"] for s in good] == [40, 40]
    finally:
        fs.rm(root, recursive=True)


# -- a real S3-compatible server on 127.0.0.1 -----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port); s3fs reaches it through the standard AWS variables."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask a metadata service for credentials
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
        }.items():
            env.setenv(name, value)
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3(s3_server: str) -> Iterator[Any]:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # each test's client sees the environment set above
    fs = s3fs.S3FileSystem()
    bucket = f"safeset-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.bucket = bucket  # type: ignore[attr-defined]
    yield fs
    fs.rm(bucket, recursive=True)


def test_s3_parquet_and_webdataset_scans_equal_local(local: dict[str, Path], s3: Any, tmp_path: Path) -> None:
    for name, banks in (("pq", "meta-banks"), ("wds", "wds-banks")):
        upload(s3, local[name], f"{s3.bucket}/data/{name}")
        on_disk = scan_cli([str(local[name])], local[banks], tmp_path / f"{name}-local")
        remote = scan_cli([f"s3://{s3.bucket}/data/{name}"], local[banks], tmp_path / f"{name}-s3")
        assert on_disk.exit_code == 0 and remote.exit_code == 0, (on_disk.output, remote.output)
        assert pq.read_table(tmp_path / f"{name}-s3" / "findings.parquet").num_rows > 0
        assert_same_run(tmp_path / f"{name}-local", tmp_path / f"{name}-s3")
    globbed = scan_cli([f"s3://{s3.bucket}/data/wds/0000[01].tar"], local["wds-banks"], tmp_path / "glob")
    assert globbed.exit_code == 0, globbed.output
    summary = json.loads((tmp_path / "glob" / "summary.json").read_text())
    assert [s["shard"] for s in summary["shards"]] == ["00000.tar", "00001.tar"]


def test_s3_shards_clean_to_the_same_bytes_as_local(local: dict[str, Path], s3: Any, tmp_path: Path) -> None:
    """What `clean` calls of a remote dataset (pins, then `write_shard` into a local folder) gives the same files
    as for the local copy."""
    upload(s3, local["wds"], f"{s3.bucket}/wds")
    assert scan_cli([str(local["wds"])], local["wds-banks"], tmp_path / "run").exit_code == 0
    on_disk, remote = open_dataset(str(local["wds"])), open_dataset(f"s3://{s3.bucket}/wds")
    run = RunDir(tmp_path / "run")
    for shard_local, shard_remote in zip(on_disk.shards(), remote.shards(), strict=True):
        assert shard_local.id == shard_remote.id
        assert pin_shard(on_disk, shard_local) == pin_shard(remote, shard_remote)
        members = pq.read_table(run.shard_file(shard_local.id, ".members.parquet"))
        drop = np.array([1, 4], dtype=np.int64)
        written_local = on_disk.write_shard(shard_local, drop, tmp_path / "out-local", members)
        written_remote = remote.write_shard(shard_remote, drop, tmp_path / "out-s3", members)
        assert written_local == written_remote
        for name in written_local.files:
            assert (tmp_path / "out-local" / name).read_bytes() == (tmp_path / "out-s3" / name).read_bytes()


def test_s3_missing_bucket_and_unreadable_object_are_one_line_errors(
    local: dict[str, Path], s3: Any, tmp_path: Path
) -> None:
    banks = local["meta-banks"]
    missing = scan_cli([f"s3://{s3.bucket}-missing/data"], banks, tmp_path / "a")
    assert "does not exist" in one_line_error(missing)
    s3.pipe(f"{s3.bucket}/junk/part.parquet", b"not a parquet file at all")
    unreadable = scan_cli([f"s3://{s3.bucket}/junk"], banks, tmp_path / "b")
    assert "part.parquet" in one_line_error(unreadable)
    nothing = scan_cli([f"s3://{s3.bucket}/data/*.tar"], banks, tmp_path / "c")
    assert "matches no file" in one_line_error(nothing)
