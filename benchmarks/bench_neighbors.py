"""Neighbour-expansion throughput: seeds × rows × d against this machine's own GEMM peak, measured in the same run.

    python benchmarks/bench_neighbors.py                       # 2 M rows × 768-d float16, 1 k and 10 k seeds
    python benchmarks/bench_neighbors.py --rows 200000 --seeds 1000   # a quick look

Synthetic unit vectors (float16, LAION's img_emb layout: N × d `.npy` parts) are written once to --data.
Each seed count runs in a fresh process (so peak memory is its own) through the same code the `neighbor`
expander uses: `NpyVectors.blocks` (memory-mapped) → `NeighbourSearch` (blocked sgemm + exact check).
Reported: rows/s, rows/s per core, effective GFLOP/s (2·seeds·d per row), the fraction of the GEMM peak
measured on the same shapes in the same process, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--shard-rows", type=int, default=250_000)
    parser.add_argument("--seeds", default="1000,10000", help="comma-separated seed counts")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (cores used)")
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--data", type=Path, default=Path("/tmp/safeset-bench-neighbors"))
    parser.add_argument("--out", type=Path, default=Path("bench-output/neighbors.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one seed count
    parser.add_argument("--gemm-before", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse()
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)  # before numpy loads BLAS

import numpy as np  # noqa: E402

from safeset.expansion.similarity import NeighbourSearch  # noqa: E402
from safeset.io.embeddings import NpyVectors  # noqa: E402


def generate(data: Path, rows: int, dim: int, shard_rows: int) -> list[Path]:
    data.mkdir(parents=True, exist_ok=True)
    parts = []
    rng = np.random.default_rng(0)
    for number, lo in enumerate(range(0, rows, shard_rows)):
        path = data / f"img_emb_{number:04d}.npy"
        n = min(shard_rows, rows - lo)
        parts.append(path)
        if path.exists() and NpyVectors(path).count == n and NpyVectors(path).dim == dim:
            continue
        out = np.lib.format.open_memmap(path.with_suffix(".tmp"), mode="w+", dtype=np.float16, shape=(n, dim))
        for a in range(0, n, 50_000):
            block = rng.standard_normal((min(50_000, n - a), dim), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[a : a + len(block)] = block
        out.flush()
        del out
        path.with_suffix(".tmp").rename(path)
    return parts


def gemm_peak(n_seeds: int, dim: int, block_rows: int, repeats: int = 3) -> float:
    """Best sgemm GFLOP/s on the search's own shapes (seed chunk × d) @ (d × block), and on a square one."""
    rng = np.random.default_rng(1)
    best = 0.0
    for m, n in ((min(n_seeds, 16384), block_rows), (4096, 4096)):
        a = rng.standard_normal((m, dim), dtype=np.float32)
        b = rng.standard_normal((n, dim), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        np.matmul(a, b.T, out=c)
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b.T, out=c)
            best = max(best, 2 * m * n * dim / (time.perf_counter() - start) / 1e9)
    return best


def _block_rows(n_seeds: int) -> int:
    return NeighbourSearch(
        np.eye(1, ARGS.dim).repeat(n_seeds, 0), 0.5, None, ARGS.backend, ARGS.memory_mb << 20
    ).block_rows


def run_one(n_seeds: int) -> dict:
    parts = sorted(ARGS.data.glob("img_emb_*.npy"))
    rng = np.random.default_rng(2)
    # Seeds: stored rows plus noise, so every seed has real neighbours to extract and check exactly.
    first = NpyVectors(parts[0])
    picks = np.sort(rng.choice(first.count, n_seeds, replace=False))
    seeds = first.take(picks)[0].astype(np.float64) + rng.standard_normal((n_seeds, first.dim)) * 0.01
    finder = NeighbourSearch(seeds, ARGS.threshold, None, ARGS.backend, ARGS.memory_mb << 20)
    rows = 0
    start = time.perf_counter()
    for index, path in enumerate(parts):
        for block in NpyVectors(path).blocks(finder.block_rows):
            finder.add_block(index, block, np.empty(0, dtype=np.int64))
            rows += len(block.rows)
    seconds = time.perf_counter() - start
    result = finder.result()
    search_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the probe's own buffers
    peak_before = ARGS.gemm_before
    peak_after = gemm_peak(n_seeds, first.dim, finder.block_rows)
    peak = max(peak_before, peak_after)
    effective = 2 * n_seeds * first.dim * rows / seconds / 1e9
    return {
        "seeds": n_seeds,
        "rows": rows,
        "dim": first.dim,
        "threads": ARGS.threads,
        "backend": finder.backend.name,
        "block_rows": finder.block_rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "rows_per_s_per_core": round(rows / seconds / ARGS.threads),
        "effective_gflops": round(effective, 1),
        "gemm_peak_gflops_before": round(peak_before, 1),
        "gemm_peak_gflops_after": round(peak_after, 1),
        "fraction_of_gemm_peak": round(effective / peak, 3),
        "neighbours_found": len(result.row),
        "peak_rss_mib": round(search_rss, 1),
    }


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        simd = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_bf16") if f" {f}" in flags]
    except (OSError, StopIteration):
        simd = []
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {
        "cpu": cpu,
        "simd": simd,
        "cores_visible": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": f"{blas.get('name', '?')} {blas.get('version', '')}".strip(),
    }


def main() -> None:
    if ARGS.one:
        print(json.dumps(run_one(ARGS.one)))
        return
    started = time.perf_counter()
    generate(ARGS.data, ARGS.rows, ARGS.dim, ARGS.shard_rows)
    print(f"data: {ARGS.rows} × {ARGS.dim} float16 in {ARGS.data} ({time.perf_counter() - started:.0f} s)")
    results = []
    for n_seeds in (int(s) for s in ARGS.seeds.split(",")):
        # GEMM peak just before (here, in the parent) and just after (in the child, same shapes) each run.
        before = gemm_peak(n_seeds, ARGS.dim, _block_rows(n_seeds))
        command = [sys.executable, *sys.argv, "--one", str(n_seeds), "--gemm-before", str(before)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        peak = max(r["gemm_peak_gflops_before"], r["gemm_peak_gflops_after"])
        print(
            f"seeds {r['seeds']:>6}: {r['rows_per_s_per_core']:>9} rows/s/core, {r['effective_gflops']} GFLOP/s "
            f"= {r['fraction_of_gemm_peak']:.0%} of GEMM peak ({peak} GFLOP/s), {r['seconds']} s, "
            f"peak RSS {r['peak_rss_mib']} MiB, {r['neighbours_found']} neighbours",
            flush=True,
        )
    report = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]), "results": results}
    ARGS.out.parent.mkdir(parents=True, exist_ok=True)
    ARGS.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["machine"]))


if __name__ == "__main__":
    main()
