"""One machine: shards scanned in this process, or in a pool of spawned processes (`--processes N`)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

from safeset.exec.base import Executor
from safeset.io.base import ShardRef

if TYPE_CHECKING:
    from safeset.scan import ScanConfig, ShardResult, ShardScanner

_WORKER: ShardScanner | None = None


def _worker_init(config: ScanConfig) -> None:
    # Each worker opens the dataset and loads the banks once (memory-mapped, so pages are shared).
    from safeset.scan import ShardScanner

    global _WORKER
    _WORKER = ShardScanner(config)


def _worker_scan(shard: ShardRef, read_images: bool, run_dir: str) -> ShardResult:
    assert _WORKER is not None
    return _WORKER.scan_shard(shard, read_images, Path(run_dir))


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, processes: int = 1) -> None:
        self.processes = max(1, processes)

    def run(
        self,
        scanner: ShardScanner,
        config: ScanConfig,
        shards: list[ShardRef],
        read_images: bool,
        run_dir: Path,
        on_shard: Callable[[ShardResult], None] | None = None,
    ) -> None:
        if self.processes == 1 or len(shards) <= 1:
            for shard in shards:
                result = scanner.scan_shard(shard, read_images, run_dir)
                if on_shard:
                    on_shard(result)
            return
        # spawn, not fork: Arrow and BLAS thread pools do not survive a fork safely.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=self.processes, mp_context=context, initializer=_worker_init, initargs=(config,)
        ) as pool:
            futures = [pool.submit(_worker_scan, shard, read_images, str(run_dir)) for shard in shards]
            for future in as_completed(futures):
                result = future.result()
                if on_shard:
                    on_shard(result)
