"""Expansion: a second pass, after every shard is scanned, that grows findings around the first ones.

The same abuse image repeats under many URLs, and related images cluster in embedding space, so a
confirmed match is a seed: expanders find its copies and neighbours across the whole dataset. During
the first pass an expander can ask for per-row signals to be kept (`row_signals`, written to
`RUN_DIR/shards/<id>.signals.parquet`); in the second pass it reads them, or the dataset's own files
(embeddings), and returns findings of its own detector (`duplicate`, `neighbor`, ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from safeset.exec.base import Task, run_here
from safeset.fsutil import read_parquet
from safeset.io.base import DatasetFormat, ShardRef
from safeset.io.detect import open_dataset
from safeset.policy.actions import Action
from safeset.rundir import RunDir
from safeset.signals.rows import ROW_SIGNALS, register_row_signal  # noqa: F401  (re-exported for expanders)


@dataclass
class ExpansionContext:
    run_dir: Path
    dataset: DatasetFormat
    shards: list[ShardRef]
    seeds: pa.Table  # findings of the first pass (FINDINGS_SCHEMA)
    config: Any  # the scan's typed configuration (ScanConfig): expanders read their own section
    # Runs a task over items on the scan's executor, results in the items' order (default: here, in turn).
    map: Callable[[Task, Sequence[Any]], list[Any]] = field(default=lambda task, items: list(run_here(task, items)))

    def row_signals(self, shard: ShardRef) -> pa.Table:
        return read_row_signals(self.run_dir, shard)


def read_row_signals(run_dir: Path, shard: ShardRef) -> pa.Table:
    return read_parquet(RunDir(run_dir).shard_file(shard.id, ".signals.parquet"))


def open_scanned_dataset(config: Any) -> DatasetFormat:
    """The dataset as the scan read it, opened again in a worker of the expansion pass."""
    return open_dataset(config.dataset, config.input_format, config.columns)


class Expander(ABC):
    name: ClassVar[str]
    row_signals: ClassVar[tuple[str, ...]] = ()
    default_action: ClassVar[Action] = Action.REVIEW
    needs_embeddings: ClassVar[bool] = False  # the scan checks the dataset's embeddings up front

    def __init__(self, config: Any) -> None:
        """`config` is the scan's typed configuration (`ScanConfig`); an expander reads its own section."""
        self.config = config
        self.action = Action(getattr(getattr(config, self.name, None), "action", self.default_action))

    def needs_images(self) -> bool:
        return False

    @abstractmethod
    def expand(self, context: ExpansionContext) -> pa.Table:
        """Findings (FINDINGS_SCHEMA) for rows related to the seeds; seeds themselves are left out."""


EXPANDERS: dict[str, type[Expander]] = {}


def register_expander(cls: type[Expander]) -> type[Expander]:
    EXPANDERS[cls.name] = cls
    return cls
