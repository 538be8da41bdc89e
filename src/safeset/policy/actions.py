"""Actions a finding can carry, and the release policy that turns them into kept or dropped rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from safeset.errors import SafesetError


class Action(StrEnum):
    REMOVE = "remove"  # known abuse material: never in the release
    EXCLUDE = "exclude"  # rights holders' opt-out: not in the release, reported apart from abuse matches
    REVIEW = "review"  # a candidate for confirmation by a party entitled to review it


# When one row has several findings, the strongest action decides its fate.
ACTION_RANK = {Action.REMOVE: 3, Action.EXCLUDE: 2, Action.REVIEW: 1}
#: A policy may also silence a signal: its findings are not reported, though rules may still use it.
IGNORE = "ignore"
#: Findings of these detectors seed expansion by default: exact hashes, URLs and PDQ (known items), not triage
#: scores, whose neighbours would be a guess of a guess.
SEED_DETECTORS: tuple[str, ...] = ("md5", "sha1", "sha256", "url", "url-md5", "url-sha1", "url-sha256", "pdq", "case")


def strongest(actions: Iterable[str | Action]) -> Action:
    """The action that decides a row with these findings."""
    return max((Action(a) for a in actions), key=ACTION_RANK.__getitem__)


def strongest_per_row(rows: Sequence[int], actions: Sequence[str]) -> dict[int, Action]:
    """Row -> the strongest of its findings' actions."""
    best: dict[int, Action] = {}
    for row, action in zip(rows, actions, strict=True):
        current, candidate = best.get(row), Action(action)
        if current is None or ACTION_RANK[candidate] > ACTION_RANK[current]:
            best[row] = candidate
    return best


@dataclass(frozen=True)
class ActionPolicy:
    """Per-signal actions: `bank:NAME` or `detector:NAME` -> remove, exclude, review or ignore; the first that
    applies wins (a bank's entry before its detector's), else the bank's or detector's own default."""

    overrides: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for signal, action in self.overrides:
            if not signal.startswith(("bank:", "detector:")):
                raise SafesetError(f"policy action for {signal!r}: name a signal as bank:NAME or detector:NAME")
            if action != IGNORE and action not in {a.value for a in Action}:
                raise SafesetError(f"policy action {action!r} for {signal}: choose remove, exclude, review or ignore")

    def action_for(self, bank: str, detector: str, default: str) -> str:
        table = dict(self.overrides)
        return table.get(f"bank:{bank}") or table.get(f"detector:{detector}") or default


@dataclass(frozen=True)
class ReleasePolicy:
    """Which rows a cleaned release leaves out."""

    drop_review: bool = False  # also drop rows only flagged for review
    keep_errored: bool = False  # rows that could not be checked are withheld unless asked otherwise
    # Cover removals against the "roadmap" problem: this many extra rows, drawn uniformly at random across the
    # whole dataset, are withheld per flagged row, so that a diff of release and original does not simply
    # list the flagged links (LAION buried its ~2 k removals among millions of filter removals the same way).
    cover_ratio: float = 0.0
    cover_seed: int = 0  # seed of the cover rows and of the decoys
    # Withhold decoys matched to the true removals (safeset.manifest.decoys) so that at most this share of withheld
    # rows are true removals: (1 - p)/p decoys per removal. 0 = off (then `cover_ratio` applies, if set).
    roadmap_bound: float = 0.01

    def drops(self, action: Action) -> bool:
        return action in (Action.REMOVE, Action.EXCLUDE) or (self.drop_review and action is Action.REVIEW)
