"""PDQ matching, one core: queries/s with exact recall at radius 31, against faiss brute force
(IndexBinaryFlat) and faiss IndexBinaryMultiHash(256, 16, 16) with nflip=1 (python-threatexchange's PDQ index).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_match.py            # banks of 100k and 1M
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_match.py --full     # adds 10M

Banks: `random` (uniform hashes, as distinct photos give) and `clustered` (families of 20 near-duplicates,
each member about 2-40 bits from its family's centre, as real banks hold many edits of one picture).
Workloads: `audit` (99 % of queries unrelated random hashes, 1 % a bank hash with 0-31 bits flipped: an audit
of a web dataset finds almost nothing) and `mix` (91 % planted, 9 % unrelated: the earlier benchmark's mix).

Every timing is CPU time of one thread (`time.process_time`), because the machine is shared. Each round runs
flat, MultiHash and safeset's MIH back to back on the same queries (the peers on the first --peer-queries of
them: brute force costs the same for every query); ratios are per round, reported as median (min-max) over
--rounds rounds. Truth is faiss IndexBinaryFlat's exact range search over all queries; safeset's result must
equal it. Banks are generated block by block and freed after each row.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss
import numpy as np

from safeset.kinds.pdq.index import MultiIndexHash

RADIUS = 31
FAMILY = 20
BLOCK = 250_000  # rows generated at a time: keeps temporaries ~250 MB


@dataclass(frozen=True)
class Workload:
    name: str
    planted_share: float  # queries that are a bank hash with 0-RADIUS bits flipped; the rest are unrelated


WORKLOADS = (Workload("audit", 0.01), Workload("mix", 1000 / 1100))


def flip_exact(rng: np.random.Generator, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row with exactly counts[i] distinct random bits flipped (ranks of random keys pick the bits)."""
    ranks = np.argsort(np.argsort(rng.random((len(hashes), 256), dtype=np.float32), axis=1), axis=1)
    return hashes ^ np.packbits(ranks < counts[:, None], axis=1)


def make_bank(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    out = np.empty((n, 32), np.uint8)
    if kind == "random":
        for lo in range(0, n, BLOCK):
            out[lo : lo + BLOCK] = rng.integers(0, 256, (min(BLOCK, n - lo), 32), dtype=np.uint8)
        return out
    centres = rng.integers(0, 256, (n // FAMILY + 1, 32), dtype=np.uint8)
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        # Each bit flips with probability k/256, k uniform in 2..40: about k bits from the centre (fast to draw).
        share = rng.integers(2, 41, hi - lo).astype(np.float32) / 256
        flips = rng.random((hi - lo, 256), dtype=np.float32) < share[:, None]
        out[lo:hi] = centres[np.arange(lo, hi) // FAMILY] ^ np.packbits(flips, axis=1)
    return out


def make_queries(rng: np.random.Generator, bank: np.ndarray, count: int, workload: Workload) -> np.ndarray:
    planted_count = max(1, round(count * workload.planted_share))
    picked = bank[rng.integers(0, len(bank), planted_count)]
    planted = flip_exact(rng, picked, rng.integers(0, RADIUS + 1, planted_count))
    unrelated = rng.integers(0, 256, (count - planted_count, 32), dtype=np.uint8)
    queries = np.concatenate([planted, unrelated])
    return queries[rng.permutation(len(queries))]


def range_pairs(index: faiss.IndexBinary, queries: np.ndarray) -> set[tuple[int, int]]:
    lims, _, labels = index.range_search(queries, RADIUS + 1)  # faiss keeps distances < the threshold
    owners = np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
    return set(zip(owners.tolist(), labels.tolist(), strict=True))


def cpu_timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.process_time()
    result = fn(*args)
    return result, time.process_time() - start


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f}x ({min(values):,.1f}-{max(values):,.1f})"


def bench_bank(rng: np.random.Generator, n: int, kind: str, args: argparse.Namespace) -> None:
    bank = make_bank(rng, n, kind)
    flat = faiss.IndexBinaryFlat(256)
    flat.add(bank)
    multi = faiss.IndexBinaryMultiHash(256, 16, 16)
    multi.nflip = 1  # exact at r <= 31: 16 chunks of 16 bits, floor(31 / 16) = 1 flip
    multi.add(bank)
    index, build_s = cpu_timed(MultiIndexHash.build, bank, RADIUS)
    index.search(bank[:2], RADIUS)  # compile (or load the cached kernels) outside the timings
    for workload in WORKLOADS:
        queries = make_queries(rng, bank, args.queries, workload)
        subset = queries[: args.peer_queries]
        truth = range_pairs(flat, queries)
        flat_qps, multi_qps, ours_qps, vs_flat, vs_multi = [], [], [], [], []
        multi_recall: float | None = None  # None: no true pair among the peers' queries
        for _ in range(args.rounds):
            _, flat_s = cpu_timed(flat.range_search, subset, RADIUS + 1)
            multi_found, multi_s = cpu_timed(range_pairs, multi, subset)
            (q, b, _), ours_s = cpu_timed(index.search, queries, RADIUS)
            ours = set(zip(q.tolist(), b.tolist(), strict=True))
            assert ours == truth, "MIH must find exactly the brute-force pairs"
            subset_truth = {pair for pair in truth if pair[0] < len(subset)}
            if subset_truth:
                recall = len(multi_found & subset_truth) / len(subset_truth)
                multi_recall = recall if multi_recall is None else min(multi_recall, recall)
            flat_qps.append(len(subset) / flat_s)
            multi_qps.append(len(subset) / multi_s)
            ours_qps.append(len(queries) / ours_s)
            vs_flat.append(ours_qps[-1] / flat_qps[-1])
            vs_multi.append(ours_qps[-1] / multi_qps[-1])
        multi_recall_text = "no pairs" if multi_recall is None else f"{multi_recall:.0%}"
        print(
            f"| {kind} | {n:,} | {workload.name} | {len(queries):,} / {len(subset):,} | {len(truth):,}"
            f" | {statistics.median(flat_qps):,.0f} | {statistics.median(multi_qps):,.0f} ({multi_recall_text})"
            f" | {statistics.median(ours_qps):,.0f} (100%) | {len(index.layout)}"
            f" | {spread(vs_flat)} | {spread(vs_multi)} | {index.memory_bytes() / n:.0f} | {build_s:.1f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="also the 10M-hash bank")
    parser.add_argument("--sizes", type=int, nargs="*", help="bank sizes (overrides the defaults)")
    parser.add_argument("--queries", type=int, default=2000, help="queries per workload for safeset's MIH")
    parser.add_argument("--peer-queries", type=int, default=200, help="of those, timed on the faiss peers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    sizes = args.sizes or [100_000, 1_000_000] + ([10_000_000] if args.full else [])
    rng = np.random.default_rng(2024)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus; numpy {np.__version__}, faiss {faiss.__version__}; "
        f"one thread each, CPU time; {args.rounds} rounds\n"
    )
    print(
        "| bank | hashes | workload | queries (MIH / peers) | true pairs | flat q/s | MultiHash q/s (recall) "
        "| safeset MIH q/s (recall) | m | MIH / flat | MIH / MultiHash | MIH bytes/hash | MIH build s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for kind in ("random", "clustered"):
            bench_bank(rng, n, kind, args)


if __name__ == "__main__":
    main()
