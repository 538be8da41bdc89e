"""The PDQ kind's scan options, with their defaults (also used by the duplicate expander's PDQ propagation)."""

from __future__ import annotations

from dataclasses import dataclass

from safeset.banks.options import option
from safeset.errors import SafesetError
from safeset.kinds.pdq.index import DEFAULT_RADIUS
from safeset.signals.pdq import DEFAULT_MODE, MODES


@dataclass(frozen=True)
class PdqOptions:
    radius: int = DEFAULT_RADIUS  # Hamming radius in bits (31: the reference's threshold)
    mode: str = DEFAULT_MODE  # pixel pipeline: "fast" or "exact" (the reference tool's)
    dihedral: bool = True  # also query the 8 rotations/flips
    unletterbox: bool = True  # also query with uniform borders trimmed
    upscale: bool = True  # also query pictures of <= 512 px on the 512 canvas (downscaled copies), see Reframe
    robust: bool = False  # also query re-padded frames (cropped copies), see signals/pdq_variants.py

    def __post_init__(self) -> None:
        if not 0 <= self.radius <= 128:
            raise SafesetError(f"pdq radius {self.radius} is not between 0 and 128 bits")
        if self.mode not in MODES:
            raise SafesetError(f"unknown pdq mode {self.mode!r}; choose {' or '.join(MODES)}")


#: Below this stated quality a bank hash comes from a flat or tiny image and would match unrelated pictures.
DEFAULT_MIN_QUALITY = 50


@dataclass(frozen=True)
class PdqImportOptions:
    min_quality: int = option(DEFAULT_MIN_QUALITY, "Drop hashes whose stated quality is below this (0..100).")
