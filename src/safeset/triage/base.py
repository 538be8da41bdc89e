"""Triage detectors: per-batch checks that are not bank lookups (score columns, a model on embeddings, concept
similarity, rules combining them). Like matchers they return Hits; their findings go to review by default.

In findings a detector's `detector` column says which kind it is (`score`, `model`, `concept`, `rule`) and
the `bank` column carries its label (the score spec, the model's file name, the concept file's name, the
rule's name), so reports can tell several of one kind apart.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.errors import SafesetError
from safeset.kinds.base import Hits
from safeset.policy.actions import Action
from safeset.signals.compute import Signals

COMPARISONS = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
COMPARISON = re.compile(rf"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*({_NUMBER})\s*$")
ACTION_SUFFIX = re.compile(r"^(.*?)\s*->\s*(\w+)\s*$", re.S)


class Detector(ABC):
    detector: ClassVar[str]
    needs_embeddings: ClassVar[bool] = False

    def __init__(self, label: str, action: Action) -> None:
        self.label = label
        self.action = action

    @property
    def columns(self) -> tuple[str, ...]:
        """Metadata columns this detector reads (refused up front if the dataset lacks them)."""
        return ()

    def prepare(self, dim: int) -> None:  # noqa: B027 - most detectors read no embeddings
        """Check the embedding dimension before any work (0: not known until shards are read)."""

    @abstractmethod
    def detect(self, signals: Signals) -> list[Hits]:
        """Rows of the batch this detector flags."""


def parse_action(text: str, default: Action) -> tuple[str, Action]:
    """Split an optional `-> ACTION` suffix off a spec."""
    match = ACTION_SUFFIX.match(text)
    if not match:
        return text.strip(), default
    body, action = match.group(1).strip(), match.group(2).lower()
    if action not in {a.value for a in Action}:
        raise SafesetError(f"unknown action {action!r} in {text!r}; choose remove, exclude or review")
    return body, Action(action)


def parse_comparison(text: str) -> tuple[str, str, float]:
    match = COMPARISON.match(text)
    if not match:
        raise SafesetError(f"cannot read {text!r}: expected COLUMN OP NUMBER, e.g. 'punsafe>0.95'")
    return match.group(1), match.group(2), float(match.group(3))


def numeric_column(signals: Signals, column: str) -> np.ndarray:
    """A metadata column as floats, NaN where null (a comparison with NaN is False: null never flags).

    A float32 column stays float32, so that `pwatermark>=0.9` compares the threshold as the column stores
    0.9 (0.9f < 0.9 in float64 would otherwise miss rows whose value prints as 0.9)."""
    array = signals.batch.extra.get(column)
    if array is None:
        raise SafesetError(f"column {column!r} was not read for this batch")
    if not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)):
        raise SafesetError(f"column {column!r} is {array.type}, not numeric; it cannot be compared with a number")
    target = array.type if pa.types.is_floating(array.type) else pa.float64()
    return np.asarray(pc.cast(array, target).to_numpy(zero_copy_only=False))


class ScoreDetector(Detector):
    """An existing score column against a threshold: `punsafe>0.95`, `pwatermark>=0.8`, ..."""

    detector = "score"

    def __init__(self, spec: str, default_action: Action = Action.REVIEW) -> None:
        body, action = parse_action(spec, default_action)
        self.column, self.op, self.value = parse_comparison(body)
        super().__init__(f"{self.column}{self.op}{self.value:g}", action)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def detect(self, signals: Signals) -> list[Hits]:
        values = numeric_column(signals, self.column)
        with np.errstate(invalid="ignore"):
            mask = COMPARISONS[self.op](values, self.value)
        positions = np.flatnonzero(mask).astype(np.int64)
        if not len(positions):
            return []
        return [Hits(positions, [f"{self.column}={v:.6g}" for v in values[positions]], self.detector)]
