"""Import options of URL-hash banks: which URL normal forms the listed hashes may have been computed over."""

from __future__ import annotations

from dataclasses import dataclass

from safeset.banks.options import option
from safeset.signals.urls import NORMALIZERS


def _forms(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class UrlDigestImportOptions:
    url_forms: tuple[str, ...] = option(
        tuple(NORMALIZERS), f"URL forms to hash, comma list of {','.join(NORMALIZERS)} (default all).", parse=_forms
    )
