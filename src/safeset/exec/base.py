"""The executor interface: apply one pass's task to a list of items, yielding each result as it completes.

Executors know nothing of scanning: every pass (the scan of shards, the neighbour search over embedding parts,
the release of shards) is a `Task`, a picklable description of its work. A process opens the task once
(`Task.open`: the dataset opened, the banks loaded) and applies the opened worker to many items. Where items run
in the driver's own process, the driver may hand in the worker it has already opened.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class Task(ABC):
    """One pass's work, sent to workers (so it must pickle: plain configuration, no open files)."""

    @abstractmethod
    def cache_key(self) -> str:
        """Equal for tasks whose opened workers are interchangeable: a worker process keeps one per key."""

    @abstractmethod
    def open(self) -> Callable[[Any], Any]:
        """Build what this process needs and return the function applied to each item."""

    def open_with(self, dataset: Any) -> Callable[[Any], Any] | None:
        """The worker built on the dataset the driver already has open (as `open` would open it), for items
        run in the driver's process: no second listing or pinning of the dataset. None: the task does not
        read the dataset, or cannot reuse it; `open` is used."""
        return None


class Executor(ABC):
    name: str

    @abstractmethod
    def map(self, task: Task, items: Sequence[Any], local: Callable[[Any], Any] | None = None) -> Iterator[Any]:
        """Apply `task` to every item; results come in completion order. `local` is an already opened worker
        for items run in this process."""


def run_here(task: Task, items: Sequence[Any], local: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """Every item in this process, in order."""
    worker = local or task.open()
    for item in items:
        yield worker(item)


class _Numbered(Task):
    """A task applied to (position, item) pairs, answering (position, result): results can be put back in order."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def cache_key(self) -> str:
        return self.task.cache_key()

    def open(self) -> Callable[[Any], Any]:
        worker = self.task.open()
        return lambda pair: (pair[0], worker(pair[1]))


class _OnFirstItem:
    """A worker for items run in the driver, built on the driver's open dataset when the first item comes (an
    executor that sends every item elsewhere never builds it)."""

    def __init__(self, task: Task, dataset: Any) -> None:
        self.task, self.dataset = task, dataset
        self.worker: Callable[[Any], Any] | None = None

    def __call__(self, pair: tuple[int, Any]) -> tuple[int, Any]:
        if self.worker is None:
            self.worker = self.task.open_with(self.dataset) or self.task.open()
        return pair[0], self.worker(pair[1])


def map_in_order(
    executor: Executor,
    task: Task,
    items: Sequence[Any],
    on_result: Callable[[], None] | None = None,
    dataset: Any = None,
) -> list[Any]:
    """Every item's result, in the items' order, however the executor spread them: passes whose results are
    combined (expansion) stay deterministic. `on_result` is called as each item completes (progress); items run
    in this process reuse `dataset` (the driver's open dataset) where the task can."""
    results: list[Any] = [None] * len(items)
    local = _OnFirstItem(task, dataset) if dataset is not None else None
    for position, result in executor.map(_Numbered(task), list(enumerate(items)), local):
        results[position] = result
        if on_result:
            on_result()
    return results
