"""Image digests matched exactly: from the bytes the scan read, and from metadata hash columns."""

from __future__ import annotations

from pathlib import Path

from safeset.banks.store import BankInfo
from safeset.kinds.base import (
    DatasetOffer,
    Hits,
    Matcher,
    entry_line,
    positions_of,
    register_matcher,
)
from safeset.kinds.digest.digestset import DigestSet
from safeset.signals.compute import Signals
from safeset.signals.digests import digests_to_hex


@register_matcher
class ImageDigestMatcher(Matcher):
    """MD5 / SHA-1 / SHA-256 of image bytes, from the bytes themselves and from metadata hash columns."""

    kinds = ("md5", "sha1", "sha256")

    def __init__(self, info: BankInfo, folder: Path) -> None:
        super().__init__(info, folder)
        self.algorithm = info.kind
        self.digests = DigestSet.load(folder, int(info.details["bitmap_bits"]))

    @property
    def image_digests(self) -> list[str]:
        return [self.algorithm]

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        if (offer.has_images and read_images) or self.algorithm in offer.metadata_hashes:
            return None
        return (
            f"bank {self.info.name!r} holds {self.algorithm} hashes, but the dataset has no images to hash"
            f"{' (metadata-only mode)' if offer.has_images else ''} and no {self.algorithm!r} column"
        )

    def match(self, signals: Signals) -> list[Hits]:
        hits = []
        sources = (
            ("image bytes", signals.image_digest(self.algorithm)),
            (f"metadata column {self.algorithm}", signals.metadata_digest(self.algorithm)),
        )
        for source, pair in sources:
            if pair is None:
                continue
            digests, valid = pair
            found = self.digests.lookup(digests, valid)
            if (found >= 0).any():
                pos = positions_of(found >= 0)
                lines = self.digests.lines_of(found[pos])
                evidence = [
                    f"{self.algorithm}:{h}{entry_line(line)} ({source})"
                    for h, line in zip(digests_to_hex(digests[pos]), lines, strict=True)
                ]
                hits.append(Hits(pos, evidence, self.algorithm))
        return hits
