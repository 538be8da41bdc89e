"""The executor interface: scan a list of shards, reporting each result as it completes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from safeset.io.base import ShardRef

if TYPE_CHECKING:
    from safeset.scan import ScanConfig, ShardResult, ShardScanner


class Executor(ABC):
    name: str

    @abstractmethod
    def run(
        self,
        scanner: ShardScanner,
        config: ScanConfig,
        shards: list[ShardRef],
        read_images: bool,
        run_dir: Path,
        on_shard: Callable[[ShardResult], None] | None = None,
    ) -> None:
        """Scan every shard; `scanner` is this process's own (used where shards run here)."""
