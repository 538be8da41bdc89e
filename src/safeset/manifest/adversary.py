"""The adversary in the box: how well can a diff-reader tell true removals from decoys among the withheld rows?

A gradient-boosted classifier (scikit-learn HistGradientBoosting, the model family that separates uniform covers
best) is trained on the observable features (`features.py`) with stratified k-fold cross-validation; every
withheld row is scored by a model that never saw it. Reported: ROC AUC (0.5 = no better than chance) and the share
of true removals among the top 1 % of withheld rows by score (chance = the achieved bound p; the target is ≤ 3p).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from safeset.errors import SafesetError
from safeset.manifest.features import feature_matrix

TOP_SHARE = 0.01


@dataclass(frozen=True)
class RoadmapAudit:
    withheld: int
    true_removals: int
    base_rate: float  # true removals / withheld: what chance achieves
    auc: float
    top_share: float
    top_rows: int
    top_precision: float  # true removals among the top `top_rows` scored rows
    folds: int

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def audit_withheld(features: pa.Table, is_true: np.ndarray, folds: int = 5, seed: int = 0) -> RoadmapAudit:
    """Cross-validated adversary over the withheld rows' features; `is_true` marks true removals."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    is_true = np.asarray(is_true, dtype=bool)
    positives, n = int(is_true.sum()), len(is_true)
    if positives < 2 or positives == n:
        raise SafesetError(
            f"the adversary needs at least 2 true removals and 1 decoy among the withheld rows ({positives} of {n})"
        )
    x, categorical = feature_matrix(features)
    folds = min(folds, positives, n - positives)
    scores = np.zeros(n)
    if x.shape[1]:
        cat = np.zeros(x.shape[1], dtype=bool)
        cat[categorical] = True
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for train, test in splitter.split(x, is_true):
            model = HistGradientBoostingClassifier(
                max_iter=200, learning_rate=0.1, categorical_features=cat if categorical else None, random_state=seed
            )
            model.fit(x[train], is_true[train])
            scores[test] = model.predict_proba(x[test])[:, 1]
    auc = float(roc_auc_score(is_true, scores))
    top = max(1, math.ceil(TOP_SHARE * n))
    # Ties broken at random, so a constant score earns chance precision rather than the rows' order.
    order = np.lexsort((np.random.default_rng(seed).random(n), -scores))
    return RoadmapAudit(
        withheld=n,
        true_removals=positives,
        base_rate=positives / n,
        auc=auc,
        top_share=TOP_SHARE,
        top_rows=top,
        top_precision=float(is_true[order[:top]].mean()),
        folds=folds,
    )
