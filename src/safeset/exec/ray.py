"""A Ray cluster: one task per item, for when one machine is not enough (`--executor ray`).

Every node must see the dataset, the bank directory and the run directory at the same paths (a shared
filesystem), as with img2dataset's Ray distributor. Each Ray worker process keeps one opened worker per task
key, so banks are loaded once per worker process, not once per shard. Failed items are retried by Ray; every
pass writes its files atomically, so a retried or duplicated item cannot double a finding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from safeset.errors import SafesetError
from safeset.exec.base import Executor, Task

_WORKERS: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()
KEEP_OPENED = 4  # opened tasks a worker process keeps (a run's scan, its expansion rounds, its release)


def _apply_on_worker(task: Task, item: Any) -> Any:
    key = task.cache_key()
    worker = _WORKERS.get(key)
    if worker is None:
        worker = _WORKERS[key] = task.open()
        while len(_WORKERS) > KEEP_OPENED:
            _WORKERS.popitem(last=False)
    _WORKERS.move_to_end(key)
    return worker(item)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 2) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries

    def map(self, task: Task, items: Sequence[Any], local: Callable[[Any], Any] | None = None) -> Iterator[Any]:
        try:
            import ray
        except ImportError as exc:
            raise SafesetError("--executor ray needs Ray: pip install 'safeset[ray]'") from exc
        if not ray.is_initialized():
            options: dict[str, Any] = {"address": self.address, "include_dashboard": False, "log_to_driver": False}
            if self.address is None and self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
            ray.init(**options)
        remote = ray.remote(max_retries=self.max_retries)(_apply_on_worker)
        shared = ray.put(task)  # one copy of the task in the object store, not one per item
        pending = [remote.remote(shared, item) for item in items]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
