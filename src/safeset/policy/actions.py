"""Actions a finding can carry, and the release policy that turns them into kept or dropped rows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    REMOVE = "remove"  # known abuse material: never in the release
    EXCLUDE = "exclude"  # rights holders' opt-out: not in the release, reported apart from abuse matches
    REVIEW = "review"  # a candidate for confirmation by a party entitled to review it


# When one row has several findings, the strongest action decides its fate.
ACTION_RANK = {Action.REMOVE: 3, Action.EXCLUDE: 2, Action.REVIEW: 1}


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
    roadmap_bound: float = 0.0

    def drops(self, action: Action) -> bool:
        return action in (Action.REMOVE, Action.EXCLUDE) or (self.drop_review and action is Action.REVIEW)
