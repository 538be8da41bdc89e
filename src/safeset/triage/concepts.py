"""Concept scoring, the pattern of Stable Diffusion's safety checker and LAION's safety settings: cosine
similarity of each row's embedding to a set of concept vectors, each with its own threshold, plus
"special-care" concepts that, when any of them is hit, tighten the others by `adjustment`.

For a row: special = cos(special_i) − threshold_i; if any special > 0 the adjustment applies;
score_j = cos(concept_j) − threshold_j + adjustment; the row is flagged if any score_j > 0. A special-care
hit alone does not flag (as in the safety checker); it is named in the evidence of a flagged row.

Concept file (vectors come from the same embedding model as the dataset's, e.g. CLIP text embeddings of
prompts the user chose):
  JSON  {"adjustment": 0.01,
         "concepts":     [{"name": "...", "threshold": 0.2, "vector": [...]}, ...],
         "special_care": [{"name": "...", "threshold": 0.22, "vector": [...]}, ...]}
  NPZ   arrays `names` (str), `vectors` (n × d), `thresholds` (n), `special` (bool, n), optional `adjustment`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from safeset.errors import InputError
from safeset.kinds.base import Hits
from safeset.policy.actions import Action
from safeset.signals.compute import Signals
from safeset.triage.base import Detector

DEFAULT_ADJUSTMENT = 0.01  # the safety checker's value


@dataclass
class ConceptSet:
    names: list[str]
    vectors: np.ndarray  # n × d float64, unit rows
    thresholds: np.ndarray  # n
    special: np.ndarray  # bool, n
    adjustment: float

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _unit(vectors: np.ndarray, path: Path) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(norms) & (norms > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(norms) & (norms > 0)))[0])
        raise InputError(f"concept vector {bad} is zero or not finite", path)
    return vectors / norms[:, None]


def load_concepts(path: Path) -> ConceptSet:
    if not path.is_file():
        raise InputError("concept file does not exist", path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["names"]]
                vectors = np.asarray(data["vectors"], dtype=np.float64)
                thresholds = np.asarray(data["thresholds"], dtype=np.float64)
                special = np.asarray(data["special"], dtype=bool)
                adjustment = float(data["adjustment"]) if "adjustment" in data else DEFAULT_ADJUSTMENT
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(f"concept file needs arrays names, vectors, thresholds, special: {exc}", path) from exc
    else:
        try:
            spec = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"not a readable JSON concept file: {exc}", path) from exc
        entries = [(c, False) for c in spec.get("concepts", [])] + [(c, True) for c in spec.get("special_care", [])]
        try:
            names = [str(c["name"]) for c, _ in entries]
            vectors = np.asarray([c["vector"] for c, _ in entries], dtype=np.float64)
            thresholds = np.asarray([float(c["threshold"]) for c, _ in entries], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"each concept needs name, threshold and a vector of one length: {exc}", path) from exc
        special = np.asarray([s for _, s in entries], dtype=bool)
        adjustment = float(spec.get("adjustment", DEFAULT_ADJUSTMENT))
    if vectors.ndim != 2 or not len(vectors) or not (len(names) == len(thresholds) == len(special) == len(vectors)):
        raise InputError("concept file holds no concepts, or arrays of different lengths", path)
    if special.all():
        raise InputError("concept file has only special-care concepts; they tighten others but never flag", path)
    return ConceptSet(names, _unit(vectors, path), thresholds, special, adjustment)


class ConceptDetector(Detector):
    detector = "concept"
    needs_embeddings = True

    def __init__(self, path: Path, action: Action = Action.REVIEW) -> None:
        super().__init__(path.name, action)
        self.path = path
        self.concepts = load_concepts(path)

    def prepare(self, dim: int) -> None:
        if dim and dim != self.concepts.dim:
            raise InputError(f"concept vectors are {self.concepts.dim}-d, the embeddings are {dim}-d", self.path)

    def margins(self, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row and concept: cosine − threshold (+ adjustment where special care applies); and that flag."""
        self.prepare(unit.shape[1])
        c = self.concepts
        margins = unit @ c.vectors.T - c.thresholds[None, :]
        special_hit = (margins[:, c.special] > 0).any(axis=1)
        margins[:, ~c.special] += np.where(special_hit, c.adjustment, 0.0)[:, None]
        return margins, special_hit

    def detect(self, signals: Signals) -> list[Hits]:
        pair = signals.unit_embeddings()
        if pair is None:
            return []
        unit, usable = pair
        rows = np.flatnonzero(usable)
        if not len(rows):
            return []
        margins, special_hit = self.margins(unit[rows])
        ordinary = np.flatnonzero(~self.concepts.special)
        hit = margins[:, ordinary] > 0
        flagged = np.flatnonzero(hit.any(axis=1))
        if not len(flagged):
            return []
        names = np.asarray(self.concepts.names, dtype=object)
        special_names = names[self.concepts.special]
        evidence = []
        for i in flagged:
            which = ordinary[hit[i]]
            parts = [f"{names[j]} (+{margins[i, j]:.3f})" for j in which]
            text = "concepts " + ", ".join(parts)
            if special_hit[i]:
                near = special_names[margins[i, self.concepts.special] > 0]
                text += f"; special care {', '.join(near)} tightened by {self.concepts.adjustment:g}"
            evidence.append(text)
        return [Hits(rows[flagged].astype(np.int64), evidence, self.detector)]
