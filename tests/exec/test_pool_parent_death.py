"""Pool workers of `scan --processes 2` exit when the main process is killed, instead of living on (~470 MB each)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.exec import local
from tests.conftest import laion_table, write_list

REPO = Path(__file__).resolve().parents[2]
SHARDS = 40
ROWS_PER_SHARD = 25_000

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")


def _children(parent: int) -> list[int]:
    """Pids of the processes whose parent is `parent` (read from /proc; psutil is not a dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie waiting for a reaper counts as gone (it holds no memory)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _wait_for(condition, timeout: float, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def test_workers_exit_when_the_scan_process_is_killed(tmp_path: Path) -> None:
    data = tmp_path / "laion"
    data.mkdir()
    pq.write_table(laion_table(ROWS_PER_SHARD), data / "part-00000.parquet", row_group_size=5000)
    for i in range(1, SHARDS):
        shutil.copyfile(data / "part-00000.parquet", data / f"part-{i:05d}.parquet")
    banks = tmp_path / "banks"
    BankStore(banks).add("u", "url", write_list(tmp_path / "u.txt", ["https://img1.example.org/p/1.jpg"]))
    run_dir = tmp_path / "run"
    script = (
        "from pathlib import Path\n"
        "from tests.helpers import scan\n"
        f"scan(Path({str(data)!r}), Path({str(banks)!r}), Path({str(run_dir)!r}), processes=2)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:

        def pool_started() -> bool:
            workers[:] = [p for p in _children(parent.pid) if "spawn_main" in _cmdline(p)]
            return len(workers) == 2 and any((run_dir / "shards").glob("*.json"))

        assert _wait_for(pool_started, timeout=120), "the scan did not start its two workers"
        done = len(list((run_dir / "shards").glob("*.json")))
        assert parent.poll() is None and done < SHARDS, "the scan finished before it could be killed"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: not any(_alive(p) for p in workers), timeout=15), (
            f"pool workers {[p for p in workers if _alive(p)]} outlived their parent"
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:  # the processes this test started, should the assertion above have failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_parent_watch_thread_exits_an_orphan(tmp_path: Path) -> None:
    """The portable fallback alone (no prctl): an orphaned process exits within a poll or two."""
    script = (
        "import os, sys, time\n"
        "from safeset.exec.local import _watch_parent\n"
        "import threading\n"
        "if os.fork() == 0:\n"  # the orphan-to-be: watches its parent, then would sleep long
        "    parent = os.getppid()\n"
        "    threading.Thread(target=_watch_parent, args=(parent, 0.05), daemon=True).start()\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
    )
    parent = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    orphan = int(parent.stdout.split()[0])
    try:
        assert _wait_for(lambda: not _alive(orphan), timeout=10)
    finally:
        if _alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def test_exit_with_parent_keeps_a_live_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a process whose parent lives, nothing happens: the watcher just keeps watching."""
    started: list[threading.Thread] = []
    monkeypatch.setattr(local, "_ask_kernel_for_parent_death_signal", lambda: True)
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self))
    local.exit_with_parent(os.getppid())
    assert [t.name for t in started] == ["parent-watch"] and started[0].daemon
