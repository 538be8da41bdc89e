"""Expansion: a second pass, after every shard is scanned, that grows findings around the first ones.

The same abuse image repeats under many URLs, and related images cluster in embedding space, so a
confirmed match is a seed: expanders find its copies and neighbours across the whole dataset. During
the first pass an expander can ask for per-row signals to be kept (`row_signals`, written to
`RUN_DIR/shards/<id>.signals.parquet`); in the second pass it reads them, or the dataset's own files
(embeddings), and returns findings of its own detector (`duplicate`, `neighbor`, ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from safeset.fsutil import read_parquet
from safeset.io.base import DatasetFormat, ShardRef
from safeset.policy.actions import Action
from safeset.rundir import shard_file
from safeset.signals.compute import Signals

#: Per-row signals the first pass can keep for expanders: name -> (Arrow type, compute from a batch).
RowSignal = Callable[[Signals], pa.Array]
ROW_SIGNALS: dict[str, tuple[pa.DataType, RowSignal]] = {}


def register_row_signal(name: str, dtype: pa.DataType, compute: RowSignal) -> None:
    ROW_SIGNALS[name] = (dtype, compute)


def _image_md5(signals: Signals) -> pa.Array:
    pair = signals.image_digest("md5")
    if pair is None:
        return pa.nulls(len(signals.batch), pa.binary(16))
    digests, valid = pair
    return pa.array([bytes(d) if ok else None for d, ok in zip(digests, valid, strict=True)], type=pa.binary(16))


register_row_signal("image_md5", pa.binary(16), _image_md5)


@dataclass
class ExpansionContext:
    run_dir: Path
    dataset: DatasetFormat
    shards: list[ShardRef]
    seeds: pa.Table  # findings of the first pass (FINDINGS_SCHEMA)
    options: dict[str, Any] = field(default_factory=dict)

    def row_signals(self, shard: ShardRef) -> pa.Table:
        return read_parquet(shard_file(self.run_dir, shard.id, ".signals.parquet"))


class Expander(ABC):
    name: ClassVar[str]
    row_signals: ClassVar[tuple[str, ...]] = ()
    default_action: ClassVar[Action] = Action.REVIEW
    needs_embeddings: ClassVar[bool] = False  # the scan checks the dataset's embeddings up front

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.action = Action(options.get(f"{self.name}_action", self.default_action.value))

    def needs_images(self) -> bool:
        return False

    @abstractmethod
    def expand(self, context: ExpansionContext) -> pa.Table:
        """Findings (FINDINGS_SCHEMA) for rows related to the seeds; seeds themselves are left out."""


EXPANDERS: dict[str, type[Expander]] = {}


def register_expander(cls: type[Expander]) -> type[Expander]:
    EXPANDERS[cls.name] = cls
    return cls
