"""The `pdq` detector: rows whose image's PDQ hash is within a Hamming radius of a bank hash.

Banks come from hotlines that hashed with the reference, so only the query side can be made robust: each
image is queried as decoded, and optionally also with uniform borders trimmed (letterboxed copies), as
its 8 rotations/flips (computed from the same DCT, no second decode), on the 512-px canvas the reference hashes
large originals on (downscaled copies, `upscale`; with `robust` also that canvas's flips) and, with `robust`,
re-padded to the frame a cropped copy was cut from (`signals/pdq_variants.py`), with the flips taken from the
mirrored pixels rather than the DCT's signs (fine textures); all from the same decoded pixels. Evidence names the
bank hash, the distance and which query variant matched (`repad 4.5%`, `upscaled 512 flipy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from safeset.banks.store import BankInfo
from safeset.errors import InputError
from safeset.kinds.base import DatasetOffer, Hits, Matcher, register_matcher
from safeset.kinds.pdq.bank import PDQ_LINES_FILE
from safeset.kinds.pdq.index import MultiIndexHash
from safeset.kinds.pdq.options import PdqOptions
from safeset.signals import pdq
from safeset.signals.compute import Signals
from safeset.signals.pdq_variants import ROBUST_REFRAMES, UPSCALED, UPSCALED_FLIPS
from safeset.signals.rows import register_row_signal

#: Below this quality a query hash comes from a flat or tiny image and is not used to propagate findings.
MIN_PROPAGATION_QUALITY = 50


def query_variants(hashes: pdq.PdqHashes) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All query hashes of a batch: (hashes (k, 32), row of each, name of each variant)."""
    rows = np.flatnonzero(hashes.valid & (hashes.hashes.any(axis=1)))
    parts: list[tuple[np.ndarray, np.ndarray, str]] = []
    if hashes.dihedral is not None:
        for v, name in enumerate(pdq.DIHEDRAL_NAMES):
            parts.append((hashes.dihedral[rows, v], rows, name))
    else:
        parts.append((hashes.hashes[rows], rows, "original"))
    if hashes.trimmed is not None and hashes.trimmed_valid is not None:
        trimmed_rows = rows[hashes.trimmed_valid[rows]]
        if hashes.trimmed_dihedral is not None:
            for v, name in enumerate(pdq.DIHEDRAL_NAMES):
                parts.append((hashes.trimmed_dihedral[trimmed_rows, v], trimmed_rows, f"trimmed {name}"))
        else:
            parts.append((hashes.trimmed[trimmed_rows], trimmed_rows, "trimmed original"))
    if hashes.reframed is not None:
        for f, frame in enumerate(hashes.reframes):
            framed_rows = rows if hashes.reframed_valid is None else rows[hashes.reframed_valid[rows, f]]
            parts.append((hashes.reframed[framed_rows, f], framed_rows, frame.name))
            if frame.flips and hashes.reframed_dihedral is not None:
                for v, name in enumerate(pdq.DIHEDRAL_NAMES[1:], start=1):
                    parts.append((hashes.reframed_dihedral[framed_rows, f, v], framed_rows, f"{frame.name} {name}"))
    queries = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 32), np.uint8)
    owners = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    names = [p[2] for p in parts for _ in range(len(p[1]))]
    return queries, owners, names


@register_matcher
class PdqMatcher(Matcher):
    kinds = ("pdq",)

    def __init__(self, info: BankInfo, folder: Path) -> None:
        super().__init__(info, folder)
        self.index = MultiIndexHash.load(folder)
        self.lines = _entry_lines(folder, len(self.index))
        self.options = PdqOptions()

    def configure(self, config: Any) -> None:
        self.options = config.pdq

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        if offer.has_images and read_images:
            return None
        return f"bank {self.info.name!r} holds PDQ hashes, which need image bytes; this scan reads none"

    def match(self, signals: Signals) -> list[Hits]:
        # Robust queries also take the canvas's flips: a mirrored and downscaled copy needs both.
        canvas = (UPSCALED_FLIPS if self.options.robust else UPSCALED,) if self.options.upscale else ()
        hashes = signals.pdq(
            dihedral=self.options.dihedral,
            unletterbox=self.options.unletterbox,
            reframes=canvas + (ROBUST_REFRAMES if self.options.robust else ()),
            pixel_flips=self.options.robust,
        )
        if hashes is None:
            return []
        queries, owners, names = query_variants(hashes)
        q, b, d = self.index.search(queries, self.options.radius)
        if not len(q):
            return []
        # Per row, the closest bank hash over all its query variants.
        order = np.lexsort((q, d, owners[q]))
        rows_sorted = owners[q][order]
        first = order[np.concatenate([[True], rows_sorted[1:] != rows_sorted[:-1]])]
        positions = owners[q[first]].astype(np.int64)
        evidence = [
            f"pdq:{bytes(self.index.hashes[b[i]]).hex()}"
            f"{'' if self.lines is None else f' L{int(self.lines[b[i]])}'} distance {int(d[i])} ({names[q[i]]}, "
            f"quality {int(hashes.quality[owners[q[i]]])})"
            for i in first
        ]
        return [Hits(positions, evidence, "pdq")]


def _entry_lines(folder: Path, entries: int) -> np.ndarray | None:
    """Source line of each bank hash (aligned with the index's hashes); None for banks imported before lines
    were kept, or whose line file does not fit the hashes (evidence then names the hash alone)."""
    path = folder / PDQ_LINES_FILE
    if not path.is_file():
        return None
    try:
        lines = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"bank {folder.name!r}: cannot load stored file ({exc})", path) from exc
    return lines if lines.shape == (entries,) else None


def _image_pdq(signals: Signals) -> pa.Array:
    """The row's PDQ hash for the second pass; null without an image or below the propagation quality."""
    hashes = signals.pdq()
    if hashes is None:
        return pa.nulls(len(signals.batch), pa.binary(32))
    usable = hashes.valid & (hashes.quality >= MIN_PROPAGATION_QUALITY)
    return pa.array([bytes(h) if ok else None for h, ok in zip(hashes.hashes, usable, strict=True)], type=pa.binary(32))


register_row_signal("image_pdq", pa.binary(32), _image_pdq)
