"""One machine: items run in this process, or in a pool of spawned processes (`--processes N`).

A pool worker must not outlive the scan that started it. If the main process is killed (SIGKILL, the OOM
killer, a closed terminal), Python gets no chance to shut the pool down, and its workers, each holding its own
banks and batches (~470 MB), would wait forever on a task queue nobody writes to any more. Each worker therefore
asks the kernel to kill it when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), and also runs a daemon
thread that watches its parent's pid, for systems without prctl.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from safeset.exec.base import Executor, Task, run_here

#: How often the fallback watcher looks at the parent's pid.
PARENT_POLL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _ask_kernel_for_parent_death_signal() -> bool:
    """Linux: have the kernel SIGKILL this process when its parent exits. False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, poll_seconds: float) -> None:
    """Exit at once when the parent is gone (re-parented processes see another parent pid)."""
    while os.getppid() == parent_pid:
        time.sleep(poll_seconds)
    os._exit(1)  # no cleanup to run: every result file is written atomically, an unfinished shard is redone


def exit_with_parent(parent_pid: int, poll_seconds: float = PARENT_POLL_SECONDS) -> None:
    """Make this process exit when `parent_pid` (its parent) dies: the kernel's signal where the platform has
    one, and a daemon thread watching the parent's pid everywhere (it also covers a parent that died before
    the signal was asked for, since the kernel does not send it retroactively)."""
    _ask_kernel_for_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, poll_seconds), name="parent-watch", daemon=True).start()


_WORKER: Callable[[Any], Any] | None = None


def _worker_init(parent_pid: int | None, task: Task) -> None:
    # Bound to the parent first: opening a task (loading banks) can take a while, and an orphan must go too.
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    # The task travels once per worker, not once per item (seed matrices and bank paths can be large), and is
    # opened once: dataset opened, banks loaded (memory-mapped, so pages are shared between workers).
    global _WORKER
    _WORKER = task.open()


def _worker_apply(item: Any) -> Any:
    assert _WORKER is not None
    return _WORKER(item)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, processes: int = 1) -> None:
        self.processes = max(1, processes)

    def map(self, task: Task, items: Sequence[Any], local: Callable[[Any], Any] | None = None) -> Iterator[Any]:
        if self.processes == 1 or len(items) <= 1:
            yield from run_here(task, items, local)
            return
        # spawn, not fork: Arrow and BLAS thread pools do not survive a fork safely.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(self.processes, len(items)),
            mp_context=context,
            initializer=_worker_init,
            initargs=(os.getpid(), task),
        ) as pool:
            futures = [pool.submit(_worker_apply, item) for item in items]
            for future in as_completed(futures):
                yield future.result()
