"""The matcher interface and the registry that pairs each bank kind with its matcher."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.banks.store import BankInfo
from safeset.signals.compute import Signals


@dataclass
class Hits:
    """Rows of a batch that matched, by position within the batch, with evidence for each."""

    positions: np.ndarray
    evidence: list[str]
    detector: str


@dataclass
class DatasetOffer:
    """What the dataset being scanned can provide to matchers."""

    has_urls: bool
    has_images: bool
    metadata_hashes: list[str] = field(default_factory=list)
    has_captions: bool = False


class Matcher(ABC):
    kinds: ClassVar[tuple[str, ...]]

    def __init__(self, info: BankInfo, folder: Path) -> None:
        self.info = info
        self.folder = folder

    #: Whether the matcher reads captions; when no matcher does, readers skip the caption column entirely.
    uses_captions: ClassVar[bool] = False

    def configure(self, config: Any) -> None:
        """The scan's typed configuration (`ScanConfig`): a kind reads its own section; most have none."""
        return None

    @property
    def image_digests(self) -> list[str]:
        """Cryptographic digests of image bytes this matcher needs (computed once per batch for all)."""
        return []

    @abstractmethod
    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        """Why this bank cannot be matched against the dataset, or None."""

    @abstractmethod
    def match(self, signals: Signals) -> list[Hits]:
        """Matching rows of the batch."""


MATCHERS: dict[str, type[Matcher]] = {}


def register_matcher(cls: type[Matcher]) -> type[Matcher]:
    for kind in cls.kinds:
        MATCHERS[kind] = cls
    return cls


def positions_of(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(np.int64)


def entry_line(line: int | None) -> str:
    """How evidence names the bank entry that matched: ` L7` (its list-file line), or nothing for banks
    imported before lines were kept."""
    return "" if line is None else f" L{int(line)}"


def entry_lines(matched: pa.Array, entries: pa.Array, lines: pa.Array | None) -> list[int | None]:
    """Source line of each matched entry value, looked up among a bank's (distinct) `entries` in one pass."""
    if lines is None:
        return [None] * len(matched)
    index = pc.index_in(matched, value_set=entries)
    return pc.take(lines, index).to_pylist()


def first_lines(column: pa.Array, distinct: pa.Array, lines: pa.Array) -> np.ndarray:
    """For each value of `distinct` (the distinct values of `column`), the smallest source line it has in
    `column` (a bank's entries, with `lines` aligned to them). Vectorised: one index lookup and a minimum."""
    index = np.asarray(pc.index_in(column, value_set=distinct).to_numpy(zero_copy_only=False), dtype=np.int64)
    first = np.full(len(distinct), np.iinfo(np.int32).max, dtype=np.int64)
    np.minimum.at(first, index, np.asarray(lines.to_numpy(zero_copy_only=False), dtype=np.int64))
    return first
