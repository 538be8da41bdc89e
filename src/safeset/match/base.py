"""The matcher interface and the registry that pairs each bank kind with its matcher."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

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

    def configure(self, options: dict[str, Any]) -> None:
        """Detector settings of the scan (`ScanConfig.options`); most matchers have none."""
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
