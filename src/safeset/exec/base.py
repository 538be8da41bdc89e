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


def map_in_order(
    executor: Executor, task: Task, items: Sequence[Any], on_result: Callable[[], None] | None = None
) -> list[Any]:
    """Every item's result, in the items' order, however the executor spread them: passes whose results are
    combined (expansion) stay deterministic. `on_result` is called as each item completes (progress)."""
    results: list[Any] = [None] * len(items)
    for position, result in executor.map(_Numbered(task), list(enumerate(items))):
        results[position] = result
        if on_result:
            on_result()
    return results
