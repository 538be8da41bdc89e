"""Decoys: benign rows withheld with the true removals, drawn so that a diff-reader cannot tell them apart.

Uniform covers (`--cover-ratio`) hide nothing: true removals have high `punsafe`, particular domains and sizes, so
a classifier separates them from random rows almost perfectly (AUC ≥ 0.9 in `benchmarks/bench_roadmap.py`).
Decoys here are drawn to match the true removals' distribution over the observable features (`features.py`).

How: nearest-neighbour matching, same domain first. Each true removal takes (1 − p)/p rows drawn at random among
the SPREAD × (1 − p)/p nearest unclaimed candidates of its own registrable domain around an anchor (a random one
of the removal's ANCHOR_SPREAD × (1 − p)/p nearest), in a space where every numeric
feature is replaced by its rank (so scores, sizes and lengths weigh alike whatever their units); where a domain has
too few candidates, the shortfall is taken from the nearest rows of any domain. Decoys are thus drawn around each
removal, and their distribution follows the removals' own wherever the dataset has rows like them.

Why not propensity weighting (a fitted classifier's odds as draw weights), which was tried first: with tens to
thousands of removals against millions of rows the propensity model is poorly calibrated in the tails, and on the
planted benchmark the adversary still told its decoys apart (AUC 0.80); matching leaves nothing to calibrate. Why
not cells of binned features: fine cells are mostly empty, coarse ones keep the within-cell skew an adversary
exploits. The known weakness of matching is that each removal sits inside its own decoys; drawing them from a wider
ring (SPREAD), centred on an anchor near the removal rather than on the removal (ANCHOR_SPREAD), blunts a
local-density attack, which the benchmark reports beside the supervised adversary.

Where the dataset runs out of look-alikes (a domain holding only removals) fewer or farther decoys exist; the
achieved bound T / (T + decoys) is reported rather than promised, and `audit-roadmap` measures what is left to see.

Seeded: the order removals claim rows in and the draws within each ring come from the seed, so a re-run withholds
the same rows.
Memory: one float matrix of the observable features for every row (a few columns × 8 bytes per row), so a
dataset of a few hundred million rows fits; LAION-5B as a whole would need sharding by domain (not done).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from safeset.manifest.features import MAX_DOMAIN_CATEGORIES, feature_matrix

#: Each removal's decoys are drawn at random among its SPREAD × (1 − p)/p nearest free rows, not its nearest ones:
#: with the nearest, the removal sits at the centre of its decoys and an unsupervised local-density ("centroid")
#: attack found it (AUC 0.68 on the benchmark); at 4 that attack falls to ≈ 0.55 while the supervised adversary
#: stays at chance (at 8 it starts to see the looser match: 0.55).
SPREAD = 4
#: ... and around an anchor drawn among the removal's ANCHOR_SPREAD × (1 − p)/p nearest free rows, not around the
#: removal itself: the removal is then off the middle of its decoys. On the benchmark (200 k rows, seeds 0-4) the
#: centroid attack fell from AUC 0.53-0.70 to 0.51-0.58 and its top-1 % precision from up to 0.083 to at most
#: 0.033; anchors drawn from the whole ring (4) pushed the supervised adversary at 1 M rows from 0.52 to 0.57.
ANCHOR_SPREAD = 2
#: Rounds of nearest-anywhere filling at most (each takes what the previous one's overlaps left).
FILL_ROUNDS = 20


@dataclass(frozen=True)
class DecoyOptions:
    roadmap_bound: float = 0.01  # p: at most this share of withheld rows should be true removals
    seed: int = 0


@dataclass
class DecoyDraw:
    decoys: np.ndarray  # bool per row: withheld as a decoy
    method: str  # "nearest neighbours (same domain first)", "uniform (no observable features)", "none"
    requested: int  # decoys wanted: (1 − p)/p per true removal
    achieved_bound: float  # true removals / (true removals + decoys drawn)

    def summary(self, bound: float, true_count: int) -> dict[str, object]:
        return {
            "roadmap_bound": bound,
            "achieved_bound": round(self.achieved_bound, 6),
            "true_removals": true_count,
            "decoys": int(self.decoys.sum()),
            "decoys_requested": self.requested,
            "method": self.method,
        }


def decoys_per_removal(bound: float) -> float:
    if not 0 < bound <= 1:
        raise ValueError("the roadmap bound must be in (0, 1]")
    return (1 - bound) / bound


def _quantiles(x: np.ndarray) -> np.ndarray:
    """Each numeric feature as its rank among all rows in [0, 1] (missing: 0.5): scale-free distances."""
    out = np.empty_like(x)
    n = len(x)
    for j in range(x.shape[1]):
        column = np.where(np.isnan(x[:, j]), np.nanmedian(x[:, j]) if (~np.isnan(x[:, j])).any() else 0, x[:, j])
        order = np.argsort(column, kind="stable")
        ranks = np.empty(n)
        ranks[order] = np.arange(n)
        out[:, j] = ranks / max(1, n - 1)
    return out


def _nearest_unclaimed(
    space: np.ndarray, seeds: np.ndarray, candidates: np.ndarray, per_seed: int, claimed: np.ndarray, seed: int
) -> None:
    """Give each seed row `per_seed` unclaimed candidates drawn at random from the `SPREAD × per_seed` nearest
    rows of an anchor, itself drawn among the seed's `ANCHOR_SPREAD × per_seed` nearest (seeds in random order):
    the seed then sits inside its decoys, off their middle."""
    from sklearn.neighbors import NearestNeighbors

    free = candidates[~claimed[candidates]]
    if len(free) == 0 or len(seeds) == 0:
        return
    ring = per_seed * SPREAD
    want = min(len(free), per_seed * (SPREAD + 2) + 10)
    rng = np.random.default_rng([seed, 3])
    with threadpool_limits(limits=1):  # small queries: threads only contend on a busy machine
        index = NearestNeighbors(n_neighbors=want, n_jobs=1).fit(space[free])
        _, around_seed = index.kneighbors(space[seeds])
        anchors = around_seed[np.arange(len(seeds)), rng.integers(0, min(per_seed * ANCHOR_SPREAD, want), len(seeds))]
        _, around_anchor = index.kneighbors(space[free[anchors]])
    for i in rng.permutation(len(seeds)):
        mine = free[around_anchor[i]]
        mine = mine[~claimed[mine]][:ring]
        if len(mine) > per_seed:
            mine = rng.choice(mine, per_seed, replace=False)
        claimed[mine] = True


def select_decoys(
    features_table: pa.Table, true_mask: np.ndarray, pool: np.ndarray, options: DecoyOptions
) -> DecoyDraw:
    """Draw decoys among the `pool` rows (benign rows that would otherwise be released) to match the `true_mask` rows.

    `features_table` is the observable features of every row (`features.batch_features`, concatenated).
    """
    true_count = int(true_mask.sum())
    n = len(true_mask)
    if true_count == 0 or not pool.any():
        return DecoyDraw(np.zeros(n, dtype=bool), "none", 0, 1.0 if true_count else 0.0)
    requested = round(decoys_per_removal(options.roadmap_bound) * true_count)
    x, categorical = feature_matrix(features_table, rank_domains_by=true_mask)
    if x.shape[1] == 0:
        probability = _uniform(pool, requested)
        draws = np.random.default_rng([options.seed, 2]).random(n)
        decoys = pool & (draws < probability)
        return DecoyDraw(
            decoys, "uniform (no observable features)", requested, true_count / (true_count + int(decoys.sum()))
        )
    numeric = [j for j in range(x.shape[1]) if j not in categorical]
    space = _quantiles(x[:, numeric]) if numeric else np.zeros((n, 1))
    per_seed = max(1, round(decoys_per_removal(options.roadmap_bound)))
    claimed = ~pool  # rows that can never be decoys count as claimed
    true_idx = np.flatnonzero(true_mask)
    if categorical:
        domain = x[:, categorical[0]].astype(np.int64)
        # Same domain first, where the domain has rows enough; the shortfall is filled from every domain.
        for code in np.unique(domain[true_idx]):
            seeds = true_idx[domain[true_idx] == code]
            if code == MAX_DOMAIN_CATEGORIES:
                continue  # the shared "other domains" code is no domain: matched globally below
            _nearest_unclaimed(space, seeds, np.flatnonzero(pool & (domain == code)), per_seed, claimed, options.seed)
    short = requested - int((claimed & pool).sum())
    before = claimed.copy()
    # Rows of domains too small to hide their removals: nearest rows anywhere, in rounds until enough are taken
    # (neighbours of nearby removals overlap, so one round may fall short) or the pool is spent.
    for _ in range(FILL_ROUNDS):
        missing = requested - int((claimed & pool).sum())
        if missing <= 0 or (claimed | ~pool).all():
            break
        _nearest_unclaimed(space, true_idx, np.flatnonzero(pool), -(-missing // true_count), claimed, options.seed)
    extra = np.flatnonzero(claimed & ~before)
    excess = int((claimed & pool).sum()) - requested
    if short > 0 and excess > 0:
        # Whole per-removal shares overshoot the shortfall: give back the surplus, chosen at random.
        claimed[np.random.default_rng([options.seed, 4]).choice(extra, min(excess, len(extra)), replace=False)] = False
    decoys = claimed & pool
    return DecoyDraw(
        decoys, "nearest neighbours (same domain first)", requested, true_count / (true_count + int(decoys.sum()))
    )


def _uniform(pool: np.ndarray, total: int) -> np.ndarray:
    return np.where(pool, min(1.0, total / max(1, int(pool.sum()))), 0.0)
