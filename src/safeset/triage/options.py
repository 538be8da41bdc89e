"""Triage options: score thresholds, a classifier on embeddings, concept vectors and combination rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safeset.policy.actions import Action


@dataclass(frozen=True)
class TriageOptions:
    scores: tuple[str, ...] = ()  # e.g. "punsafe>0.95", "pwatermark >= 0.9 -> remove"
    model: Path | None = None  # ONNX classifier applied to each embedding (e.g. an NSFW head)
    model_threshold: float = 0.5
    model_column: int | None = None  # which output column is the score (None: the only or the last one)
    concepts: Path | None = None  # concept vectors with thresholds (JSON or NPZ)
    rules: tuple[str, ...] = ()  # 'name=EXPR -> action', evaluated in order after everything else
    action: Action = Action.REVIEW  # for score, model, concept and rule findings without their own

    @property
    def any(self) -> bool:
        return bool(self.scores or self.model or self.concepts or self.rules)
