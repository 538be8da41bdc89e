"""PDQ matching, one core: queries/s with exact recall at radius 31, against faiss brute force and faiss
IndexBinaryMultiHash(256, 16, 16) with nflip=1 (python-threatexchange's default PDQ index).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_match.py            # banks of 100k and 1M
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_match.py --full     # adds 10M (several minutes)

Banks: `random` (uniform hashes, as distinct photos give) and `clustered` (families of 20 near-duplicates
2-40 bits apart, as real banks hold many edits of one picture). Each query is a bank hash with 0-31 bits
flipped (so every query has at least one true match), plus 10 % unrelated random queries.
Recall is measured against faiss IndexBinaryFlat's exact range search.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss
import numpy as np

from safeset.match.mih import MultiIndexHash

RADIUS = 31


def flip_random_bits(rng: np.random.Generator, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row with counts[i] distinct random bits flipped (vectorised: ranks of random keys pick the bits)."""
    keys = rng.random((len(hashes), 256))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return hashes ^ np.packbits(ranks < counts[:, None], axis=1)


def make_bank(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    if kind == "random":
        return rng.integers(0, 256, (n, 32), dtype=np.uint8)
    family = 20
    centres = rng.integers(0, 256, (n // family + 1, 32), dtype=np.uint8)
    out = np.empty((n, 32), np.uint8)
    for lo in range(0, n, 200_000):  # blocks keep the temporaries small
        hi = min(n, lo + 200_000)
        base = centres[np.arange(lo, hi) // family]
        out[lo:hi] = flip_random_bits(rng, base, rng.integers(2, 41, hi - lo))
    return out


def make_queries(rng: np.random.Generator, bank: np.ndarray, count: int) -> np.ndarray:
    planted = flip_random_bits(rng, bank[rng.integers(0, len(bank), count)], rng.integers(0, RADIUS + 1, count))
    unrelated = rng.integers(0, 256, (count // 10, 32), dtype=np.uint8)
    return np.concatenate([planted, unrelated])


def pairs_from_range(lims: np.ndarray, labels: np.ndarray) -> set[tuple[int, int]]:
    queries = np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
    return set(zip(queries.tolist(), labels.tolist(), strict=True))


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="also the 10M-hash bank")
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    sizes = [100_000, 1_000_000] + ([10_000_000] if args.full else [])
    rng = np.random.default_rng(2024)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; faiss {faiss.__version__}; one thread each\n")
    print(
        "| bank | hashes | queries | flat q/s | MultiHash q/s (recall) | safeset MIH q/s (recall) | m | "
        "MIH / flat | MIH / MultiHash | MIH bytes/hash | MIH build s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for kind in ("random", "clustered"):
            bank = make_bank(rng, n, kind)
            queries = make_queries(rng, bank, args.queries)
            flat = faiss.IndexBinaryFlat(256)
            flat.add(bank)
            (lims, _, labels), flat_s = timed(flat.range_search, queries, RADIUS + 1)
            truth = pairs_from_range(lims, labels)
            multi = faiss.IndexBinaryMultiHash(256, 16, 16)
            multi.nflip = 1
            multi.add(bank)
            (mlims, _, mlabels), multi_s = timed(multi.range_search, queries, RADIUS + 1)
            multi_recall = len(pairs_from_range(mlims, mlabels) & truth) / max(1, len(truth))
            index, build_s = timed(MultiIndexHash.build, bank, RADIUS)
            (q, b, _), ours_s = timed(index.search, queries, RADIUS)
            ours = set(zip(q.tolist(), b.tolist(), strict=True))
            recall = len(ours & truth) / max(1, len(truth))
            assert ours == truth, "MIH must find exactly the brute-force pairs"
            print(
                f"| {kind} | {n:,} | {len(queries):,} | {len(queries) / flat_s:,.0f}"
                f" | {len(queries) / multi_s:,.0f} ({multi_recall:.1%})"
                f" | {len(queries) / ours_s:,.0f} ({recall:.0%}) | {len(index.layout)} | {flat_s / ours_s:.1f}x"
                f" | {multi_s / ours_s:.1f}x | {index.memory_bytes() / n:.0f} | {build_s:.1f} |",
                flush=True,
            )
            flat = multi = index = None  # free the large structures before the next bank


if __name__ == "__main__":
    main()
