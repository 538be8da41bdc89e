"""Decoys match the true removals where uniform covers do not: a small, fast version of benchmarks/bench_roadmap.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from safeset.errors import SafesetError
from safeset.manifest.adversary import audit_withheld
from safeset.manifest.decoys import DecoyOptions, select_decoys

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_roadmap.py"


def _planted_features(rows: int, true_count: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    spec = importlib.util.spec_from_file_location("bench_roadmap", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.planted_features(rows, true_count, seed)


def test_matched_decoys_hide_what_uniform_covers_give_away() -> None:
    features, is_true = _planted_features(20_000, 40, seed=1)
    bound = 0.05
    draw = select_decoys(features, is_true, ~is_true, DecoyOptions(roadmap_bound=bound, seed=1))
    assert draw.method.startswith("nearest") and draw.requested == 760
    assert int(draw.decoys.sum()) == 760 and not (draw.decoys & is_true).any()
    assert draw.achieved_bound == pytest.approx(bound)
    withheld = draw.decoys | is_true
    matched = audit_withheld(features.filter(pa.array(withheld)), is_true[withheld], seed=1)
    uniform = np.zeros(len(is_true), dtype=bool)
    uniform[np.random.default_rng(2).choice(np.flatnonzero(~is_true), 760, replace=False)] = True
    uniform |= is_true
    covers = audit_withheld(features.filter(pa.array(uniform)), is_true[uniform], seed=1)
    assert covers.auc >= 0.85 and covers.top_precision > 3 * bound
    assert matched.auc <= 0.65 and matched.top_precision <= 3 * bound


def test_decoys_are_reproducible_and_capped_by_the_pool() -> None:
    features, is_true = _planted_features(3_000, 30, seed=4)
    options = DecoyOptions(roadmap_bound=0.01, seed=7)
    first = select_decoys(features, is_true, ~is_true, options)
    assert np.array_equal(first.decoys, select_decoys(features, is_true, ~is_true, options).decoys)
    # 99 per removal would need 2970 of the 2970 other rows: all of them, and the achieved bound says so.
    assert int(first.decoys.sum()) == 2970 and first.achieved_bound == pytest.approx(30 / 3000)
    small_pool = np.zeros(len(is_true), dtype=bool)
    small_pool[:100] = True
    capped = select_decoys(features, is_true, small_pool, options)
    assert int(capped.decoys.sum()) == 100 and capped.achieved_bound == pytest.approx(30 / 130)


def test_adversary_needs_both_classes() -> None:
    features, is_true = _planted_features(500, 1, seed=0)
    with pytest.raises(SafesetError, match="at least 2 true removals"):
        audit_withheld(features, is_true)


def test_a_removal_is_not_the_centre_of_its_decoys() -> None:
    """A local-density adversary looks for the middle of each cluster of withheld rows. Each removal's decoys are
    drawn around an anchor from its own neighbourhood, so the removal sits off their middle: among its cluster,
    its distance to the centre is not the smallest."""
    rng = np.random.default_rng(5)
    rows = 40_000
    points = rng.random((rows, 2))
    spots = np.array([(x, y) for x in (0.15, 0.5, 0.85) for y in (0.15, 0.5, 0.85)])
    is_true = np.zeros(rows, dtype=bool)
    is_true[: len(spots)] = True
    points[: len(spots)] = spots
    features = pa.table({"punsafe": points[:, 0], "aesthetic": points[:, 1]})
    draw = select_decoys(features, is_true, ~is_true, DecoyOptions(roadmap_bound=0.05, seed=3))
    decoys = points[draw.decoys]
    owner = np.argmin(((decoys[:, None, :] - spots[None, :, :]) ** 2).sum(axis=2), axis=1)
    ranks = []
    for k, spot in enumerate(spots):
        cluster = np.vstack([spot[None, :], decoys[owner == k]])  # the removal first
        from_centre = np.linalg.norm(cluster - cluster.mean(axis=0), axis=1)
        ranks.append(float((from_centre < from_centre[0]).mean()))  # 0: the removal is the closest to the centre
    assert len(decoys) == 19 * len(spots)
    assert np.mean(ranks) >= 0.12, ranks  # 0.16-0.34 over seeds 0-4; drawn around the removal itself: 0.04
