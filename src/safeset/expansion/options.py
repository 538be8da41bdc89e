"""The expanders' options, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safeset.errors import SafesetError
from safeset.policy.actions import SEED_DETECTORS, Action

DEFAULT_MEMORY_MB = 256  # score matrix + converted block per matrix product


@dataclass(frozen=True)
class NeighborOptions:
    threshold: float = 0.85  # cosine similarity to a seed
    top_k: int | None = None  # only each seed's k nearest rows (within the threshold)
    hops: int = 1  # 2: search again around the first hop's rows
    max_hop_seeds: int = 1000  # bound on second-hop seeds (closest first)
    seed_detectors: tuple[str, ...] = SEED_DETECTORS  # findings of these detectors seed the search
    seed_file: Path | None = None  # more seeds: a .npy of vectors (n × d) or a file of keys
    action: Action = Action.REVIEW
    backend: str = "auto"  # auto (GPU via torch when present), numpy, torch, torch-cpu
    memory_mb: int = DEFAULT_MEMORY_MB

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise SafesetError(f"neighbor threshold {self.threshold} is not a cosine in [-1, 1]")
        if self.hops not in (1, 2):
            raise SafesetError("neighbor hops is 1 or 2")
        if self.top_k is not None and self.top_k < 1:
            raise SafesetError("neighbor top_k is at least 1")
        if self.max_hop_seeds < 1 or self.memory_mb < 16:
            raise SafesetError("neighbor max_hop_seeds is at least 1 and memory_mb at least 16")


@dataclass(frozen=True)
class DuplicateOptions:
    pdq: bool = True  # also copies within the PDQ radius, not only byte-identical ones
    action: Action = Action.REVIEW
