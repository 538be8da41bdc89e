"""Run-dir file hygiene: atomic private writes that a planted file or symlink cannot redirect."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from safeset.errors import InputError
from safeset.fsutil import atomic_path, disk_full, file_pin, write_json


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    target = tmp_path / "run" / "summary.json"
    target.parent.mkdir()
    target.symlink_to(outside)
    write_json(target, {"rows_in": 1}, private=True)
    assert outside.read_text() == "precious"
    assert not target.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_symlink_planted_at_a_predictable_temporary_name_receives_nothing(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / f".summary.json.tmp-{os.getpid()}").symlink_to(outside)  # the name earlier versions used
    write_json(run / "summary.json", {"rows_in": 1}, private=True)
    assert outside.read_text() == "precious"
    assert (run / "summary.json").read_text().strip().startswith("{")


def test_temporary_files_are_new_private_and_cleaned_up(tmp_path: Path) -> None:
    target = tmp_path / "findings.parquet"
    with atomic_path(target, private=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".findings.parquet.tmp-")
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600 and tmp.stat().st_size == 0
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "never.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed midway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["findings.parquet"]


def test_a_temporary_swapped_for_a_symlink_is_not_published(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    target = tmp_path / "out.json"
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.unlink()
        tmp.symlink_to(outside)
    assert not target.exists() and outside.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.txt"]


def test_disk_full_is_found_however_wrapped() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/x")
    try:
        try:
            raise full
        except OSError as exc:
            raise InputError("truncated or unreadable tar", "/data/00000.tar") from exc
    except InputError as wrapped:
        assert disk_full(wrapped) is full
    assert disk_full(InputError("bad", "/x")) is None
    assert disk_full(OSError(errno.EACCES, "denied")) is None


def test_file_pin_changes_with_any_byte(tmp_path: Path) -> None:
    path = tmp_path / "shard.bin"
    data = bytearray(os.urandom(3 * (1 << 20) + 17))
    path.write_bytes(data)
    before = file_pin(path, chunk=1 << 20)
    assert before["size"] == len(data)
    data[2 * (1 << 20) + 5] ^= 1
    path.write_bytes(data)
    after = file_pin(path, chunk=1 << 20)
    assert after["size"] == before["size"] and after["xxh3_128"] != before["xxh3_128"]
