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
from threadpoolctl import threadpool_limits

from safeset.errors import SafesetError
from safeset.manifest.features import feature_matrix

TOP_SHARE = 0.01
#: Fits on fewer withheld rows than this run on one thread.
PARALLEL_FROM_ROWS = 100_000


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
    from sklearn.metrics import roc_auc_score

    is_true = np.asarray(is_true, dtype=bool)
    positives, n = int(is_true.sum()), len(is_true)
    if positives < 2 or positives == n:
        raise SafesetError(
            f"the adversary needs at least 2 true removals and 1 decoy among the withheld rows ({positives} of {n})"
        )
    x, categorical = feature_matrix(features)
    folds = min(folds, positives, n - positives)
    scores = np.zeros(n)
    # OpenMP threads cost more than they give on small fits, and on a busy machine they thrash (25x slower).
    with threadpool_limits(limits=1 if n < PARALLEL_FROM_ROWS else None, user_api="openmp"):
        _cross_validate(x, categorical, is_true, folds, seed, scores)
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


def _cross_validate(
    x: np.ndarray, categorical: list[int], is_true: np.ndarray, folds: int, seed: int, scores: np.ndarray
) -> None:
    """Out-of-fold scores: every row scored by a model trained without it."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold

    if not x.shape[1]:
        return
    cat = np.zeros(x.shape[1], dtype=bool)
    cat[categorical] = True
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, is_true):
        model = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.1, categorical_features=cat if categorical else None, random_state=seed
        )
        model.fit(x[train], is_true[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
