"""Roadmap benchmark: can a classifier tell the true removals from the rows withheld to hide them?

A planted LAION-style dataset (synthetic, benign): most rows are ordinary, a small set of "true removals" is drawn
with skewed `punsafe`, domains, image sizes and caption lengths, and the benign rows include enough look-alikes
(high-`punsafe`, same domains) for matching to be possible, as in LAION-5B where ~3 % of rows score punsafe > 0.5.
In the same run the true removals are hidden (a) among matched decoys (`safeset.manifest.decoys`) and (b) among
as many uniform random covers, and the cross-validated adversary (`safeset.manifest.adversary`) is run on both.

    PYTHONPATH=src python benchmarks/bench_roadmap.py --rows 200000 --true 60 --bound 0.01

Targets: decoys AUC ≤ 0.6 and top-1 % precision ≤ 3p; uniform covers AUC ≥ 0.9. A second, unsupervised adversary
(`centroid_attack`: decoys are drawn around each removal, so rank rows by local density) is reported beside.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyarrow as pa

from safeset.manifest.adversary import audit_withheld
from safeset.manifest.decoys import DecoyOptions, select_decoys
from safeset.manifest.features import DOMAIN


def planted_features(rows: int, true_count: int, seed: int = 0) -> tuple[pa.Table, np.ndarray]:
    """Observable features of a planted dataset and the mask of its true removals (the last `true_count` rows)."""
    rng = np.random.default_rng(seed)
    benign = rows - true_count
    general = [f"site{i}.example.org" for i in range(2000)]
    skewed = [f"gallery{i}.example.net" for i in range(20)]
    zipf = 1 / np.arange(1, len(general) + 1)
    zipf /= zipf.sum()

    def domains(n: int, skew_share: float, concentrated: bool) -> np.ndarray:
        out = np.array(general, dtype=object)[rng.choice(len(general), n, p=zipf)]
        pick = rng.random(n) < skew_share
        weights = np.linspace(3, 1, len(skewed)) ** (3 if concentrated else 0)
        out[pick] = np.array(skewed, dtype=object)[rng.choice(len(skewed), pick.sum(), p=weights / weights.sum())]
        return out

    # An eighth of the benign rows are an "NSFW-ish but legal" segment resembling the removals (in LAION-5B about 3 %
    # of 5.85 B rows score punsafe > 0.5 against a few thousand removals); the rest are ordinary rows.
    lookalike = rng.random(benign) < 0.12
    punsafe = np.where(lookalike, rng.beta(6, 1.5, benign), rng.beta(1, 8, benign))
    width = np.where(lookalike, rng.lognormal(5.8, 0.45, benign), rng.lognormal(6.2, 0.5, benign))
    height = np.where(lookalike, rng.lognormal(5.7, 0.45, benign), rng.lognormal(6.0, 0.5, benign))
    caption = np.where(lookalike, rng.lognormal(3.2, 0.55, benign), rng.lognormal(3.6, 0.6, benign))
    domain = domains(benign, 0.02, concentrated=False)
    domain[lookalike] = domains(int(lookalike.sum()), 0.7, concentrated=False)
    benign_table = {
        "punsafe": punsafe,
        "pwatermark": rng.beta(1, 6, benign),
        "WIDTH": np.round(width),
        "HEIGHT": np.round(height),
        "caption_length": np.round(caption),
        DOMAIN: domain,
    }
    true_table = {
        "punsafe": rng.beta(8, 1.5, true_count),
        "pwatermark": rng.beta(1, 6, true_count),
        "WIDTH": np.round(rng.lognormal(5.7, 0.4, true_count)),
        "HEIGHT": np.round(rng.lognormal(5.6, 0.4, true_count)),
        "caption_length": np.round(rng.lognormal(3.1, 0.5, true_count)),
        DOMAIN: domains(true_count, 0.9, concentrated=True),
    }
    table = pa.table(
        {
            k: pa.array(np.concatenate([benign_table[k], true_table[k]]), type=pa.string() if k == DOMAIN else None)
            for k in benign_table
        }
    )
    is_true = np.zeros(rows, dtype=bool)
    is_true[benign:] = True
    return table, is_true


def centroid_attack(features: pa.Table, is_true: np.ndarray, neighbours: int = 5) -> dict[str, float]:
    """An unsupervised adversary that knows decoys are drawn around each removal: it ranks withheld rows by local
    density (mean distance to their nearest withheld rows, features as ranks), so cluster centres come first."""
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    from safeset.manifest.decoys import _quantiles
    from safeset.manifest.features import feature_matrix

    x, categorical = feature_matrix(features)
    space = _quantiles(x[:, [j for j in range(x.shape[1]) if j not in categorical]])
    distances, _ = NearestNeighbors(n_neighbors=neighbours + 1).fit(space).kneighbors(space)
    score = -distances[:, 1:].mean(axis=1)
    top = np.argsort(-score, kind="stable")[: max(1, int(np.ceil(0.01 * len(score))))]
    return {
        "auc": round(float(roc_auc_score(is_true, score)), 6),
        "top_precision": round(float(is_true[top].mean()), 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--true", type=int, default=60)
    parser.add_argument("--bound", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    features, is_true = planted_features(args.rows, args.true, args.seed)
    started = time.perf_counter()
    draw = select_decoys(features, is_true, ~is_true, DecoyOptions(roadmap_bound=args.bound, seed=args.seed))
    decoy_seconds = time.perf_counter() - started
    withheld = draw.decoys | is_true
    matched = audit_withheld(features.filter(pa.array(withheld)), is_true[withheld], seed=args.seed)
    # Uniform covers: as many rows, drawn uniformly from the same pool, in the same run.
    rng = np.random.default_rng([args.seed, 9])
    uniform = np.zeros(args.rows, dtype=bool)
    uniform[rng.choice(np.flatnonzero(~is_true), int(draw.decoys.sum()), replace=False)] = True
    uniform |= is_true
    covers = audit_withheld(features.filter(pa.array(uniform)), is_true[uniform], seed=args.seed)
    result = {
        "rows": args.rows,
        "true_removals": args.true,
        "roadmap": draw.summary(args.bound, args.true),
        "decoy_selection_seconds": round(decoy_seconds, 2),
        "matched_decoys": matched.as_dict(),
        "uniform_covers": covers.as_dict(),
        "matched_decoys_centroid_attack": centroid_attack(features.filter(pa.array(withheld)), is_true[withheld]),
        "targets": {
            "decoys_auc_le_0.6": matched.auc <= 0.6,
            "decoys_top1_precision_le_3p": matched.top_precision <= 3 * args.bound,
            "uniform_auc_ge_0.9": covers.auc >= 0.9,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
