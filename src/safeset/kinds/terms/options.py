"""Import options of term banks: how terms match, how they are normalised, and co-occurrence and score rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safeset.banks.options import option
from safeset.signals.text import STEPS, parse_steps


@dataclass(frozen=True)
class TermImportOptions:
    match: str = option("word", "'word' (whole words, default) or 'substring'.")
    normalize: tuple[str, ...] = option(
        STEPS, f"'all' (default), 'none', or a comma list of {','.join(STEPS)}.", parse=parse_steps
    )
    near: Path | None = option(None, "Flag only when a term of this list is within --within tokens.")
    within: int | None = option(None, "Tokens allowed between the two terms of a --near rule.")
    min_score: float | None = option(None, "Flag when matched terms' weights add up to this.")
