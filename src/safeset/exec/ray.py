"""A Ray cluster: one task per shard, for when one machine is not enough (`--executor ray`).

Every node must see the dataset, the bank directory and the run directory at the same paths (a shared
filesystem), as with img2dataset's Ray distributor. Each Ray worker process keeps one `ShardScanner` per
run configuration, so banks are loaded once per worker, not once per shard. Failed shards are retried
by Ray; a shard's files are written atomically, so a retried or duplicated task cannot double a finding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeset.errors import SafesetError
from safeset.exec.base import Executor
from safeset.io.base import ShardRef

if TYPE_CHECKING:
    from safeset.scan import ScanConfig, ShardResult, ShardScanner

_SCANNERS: dict[str, ShardScanner] = {}


def _scan_on_worker(config: ScanConfig, key: str, shard: ShardRef, read_images: bool, run_dir: str) -> ShardResult:
    from safeset.scan import ShardScanner

    scanner = _SCANNERS.get(key)
    if scanner is None:
        scanner = _SCANNERS[key] = ShardScanner(config)
    return scanner.scan_shard(shard, read_images, Path(run_dir))


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 2) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries

    def run(
        self,
        scanner: ShardScanner,
        config: ScanConfig,
        shards: list[ShardRef],
        read_images: bool,
        run_dir: Path,
        on_shard: Callable[[ShardResult], None] | None = None,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise SafesetError("--executor ray needs Ray: pip install 'safeset[ray]'") from exc
        if not ray.is_initialized():
            options: dict[str, Any] = {"address": self.address, "include_dashboard": False, "log_to_driver": False}
            if self.address is None and self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
            ray.init(**options)
        task = ray.remote(max_retries=self.max_retries)(_scan_on_worker)
        key = str(sorted(config.fingerprint(scanner.all_banks).items()))
        pending = [task.remote(config, key, shard, read_images, str(run_dir.resolve())) for shard in shards]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            result = ray.get(done[0])
            if on_shard:
                on_shard(result)
