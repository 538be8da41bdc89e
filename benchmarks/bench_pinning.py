"""Shard pinning cost: a metadata-only scan with and without `pin_shard`, paired round by round (issue 8).

    python benchmarks/bench_pinning.py [--rows N] [--files N] [--rounds N] [--quick] [--keep] [--workdir DIR]

Every scan pins each shard: `safeset.scan.task.pin_shard` reads every file of the shard once more and records its
size and xxh3-128 digest, so that `clean` can refuse a shard that changed since the scan. This benchmark
measures what that costs a metadata-only scan, the scan it costs most (a metadata-only scan reads only a few
columns of each parquet file; pinning reads all of its bytes).

Two variants of the same scan, each in a fresh child interpreter (`processes=1`):
  pinned  the code as it is;
  before  the same code with `safeset.scan.task.pin_shard` replaced, in the child, by a function returning [] (no
          pinning: what the scan did before pins were added).
They run in rounds: each round runs both variants back to back, the order alternating from round to round
(pinned first in even rounds), and the ratio pinned/before is taken within each round. On a machine whose
cores are shared with other work, the speed drifts over minutes; a ratio of two runs seconds apart is what
stays meaningful, and its median over the rounds is the figure to quote. One warm-up round is not counted.
The scans: md5 + url banks, md5 bank only (the fastest scan, so the largest share for pinning), and md5 bank
only with the dataset's files evicted from the page cache (fsync + POSIX_FADV_DONTNEED on those files alone)
before each run, as for a dataset larger than memory: pinning then reads every byte from the disk, and the
scan reads its columns from the cache the pinning filled. The banks stay cached.

Each round also times `pin_shard` alone over all shards, in a fresh child interpreter, against a plain read of
the same files in the same 4 MiB blocks and against xxh3-128 of the same bytes held in memory. The files were
just written and scanned, so the page cache is warm: this is the cost of copying and hashing, not disk speed;
two more rows time pin_shard and the plain read with the files evicted first.

The data is generated here, in a temporary directory that is deleted afterwards, and is synthetic and benign
(random hex digests, example.org / example.com / example.net URLs), made by bench_scan.py's generators:
LAION-style parquet metadata and an md5 bank and a URL bank with some of the dataset's values planted. Every
run's findings are compared row by row with the planted rows, and every pinned run's pins with the files'
sizes and digests (every "before" run's must be empty); any difference stops the benchmark with an error.

    python benchmarks/bench_pinning.py --child SPEC.json   runs one measured child (used by the rounds)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

import bench_scan

BLOCK = 1 << 22  # fsutil.file_pin's read size
VARIANTS = ("pinned", "before")


# --------------------------------------------------------------------------------------------------------------
# the measured children


def child_main(spec_path: str) -> None:
    task = json.loads(Path(spec_path).read_text())
    import safeset.scan.driver  # noqa: F401  (imports are not part of the measured time)

    if task["kind"] == "scan":
        out = child_scan(task)
    elif task["kind"] == "pin":
        out = child_pin(task)
    else:
        raise SystemExit(f"unknown task {task['kind']}")
    print(json.dumps(out))


def child_scan(task: dict[str, Any]) -> dict[str, Any]:
    import safeset.scan.task
    from safeset.scan.config import ScanConfig
    from safeset.scan.driver import run_scan

    if task["variant"] == "before":
        safeset.scan.task.pin_shard = lambda dataset, shard: []  # scan_shard looks the name up in the module
    elif task["variant"] != "pinned":
        raise SystemExit(f"unknown variant {task['variant']}")
    config = ScanConfig(
        dataset=task["dataset"],
        input_format="parquet",
        banks_dir=task["banks"],
        bank_names=tuple(task["bank_names"]),
        metadata_only=True,
    )
    own_dir = task.get("run_dir") is None  # a standalone run (e.g. under an outside timer) cleans up after itself
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=task["workdir"])) / "run" if own_dir else Path(task["run_dir"])
    rss_before = bench_scan.peak_rss_mb()
    spent, outcome = bench_scan.timed(lambda: run_scan(config, run_dir, processes=1))
    if own_dir:
        shutil.rmtree(run_dir.parent)
    return {
        "wall": spent.wall,
        "cpu": spent.cpu,
        "rss_before_mb": rss_before,
        "maxrss_mb": bench_scan.peak_rss_mb(),
        "rows_in": outcome.summary["rows_in"],
        "findings": outcome.summary["findings"],
    }


def child_pin(task: dict[str, Any]) -> dict[str, Any]:
    """pin_shard over every shard, alternating with a plain read of the same files, in one process."""
    from safeset.io.columns import ColumnOptions
    from safeset.io.detect import open_dataset
    from safeset.rundir import pin_shard

    dataset = open_dataset(Path(task["dataset"]), "parquet", ColumnOptions())
    shards = dataset.shards()
    files = [path for shard in shards for path in dataset.shard_files(shard)]

    def pin_all() -> int:
        return sum(pin["size"] for shard in shards for pin in pin_shard(dataset, shard))

    def read_all() -> int:
        size = 0
        for path in files:
            with open(path, "rb") as handle:
                while block := handle.read(BLOCK):
                    size += len(block)
        return size

    def hash_all(blobs: list[bytes]) -> list[str]:
        import xxhash

        return [xxhash.xxh3_128(blob).hexdigest() for blob in blobs]

    first, nbytes = bench_scan.timed(pin_all)  # the first call imports xxhash, as the first shard of a scan does
    blobs = [path.read_bytes() for path in files]
    pins, reads, hashes, cold_pins, cold_reads = [], [], [], [], []
    for _ in range(task["repeat"]):
        pins.append(bench_scan.timed(pin_all)[0])
        reads.append(bench_scan.timed(read_all)[0])
        hashes.append(bench_scan.timed(lambda: hash_all(blobs))[0])
        evict(files)
        cold_pins.append(bench_scan.timed(pin_all)[0])
        evict(files)
        cold_reads.append(bench_scan.timed(read_all)[0])
    return {
        "bytes": nbytes,
        "files": len(files),
        "first_wall": first.wall,
        "pin_wall": statistics.median(t.wall for t in pins),
        "pin_cpu": statistics.median(t.cpu for t in pins),
        "read_wall": statistics.median(t.wall for t in reads),
        "read_cpu": statistics.median(t.cpu for t in reads),
        "hash_wall": statistics.median(t.wall for t in hashes),
        "hash_cpu": statistics.median(t.cpu for t in hashes),
        "cold_pin_wall": statistics.median(t.wall for t in cold_pins),
        "cold_pin_cpu": statistics.median(t.cpu for t in cold_pins),
        "cold_read_wall": statistics.median(t.wall for t in cold_reads),
        "cold_read_cpu": statistics.median(t.cpu for t in cold_reads),
    }


def evict(paths: list[Path]) -> None:
    """Drop these files (and only these) from the page cache, so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_child(work: Path, task: dict[str, Any]) -> dict[str, Any]:
    """One child interpreter; its own timing of the work, plus its whole-process wall and CPU seen from here."""
    spec = work / f"task-{task['name']}.json"
    spec.write_text(json.dumps(task))
    usage0, wall0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(spec)], capture_output=True, text=True, check=False)
    wall, usage1 = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"benchmark child {task['name']!r} failed (exit {proc.returncode})")
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_wall": wall, "process_cpu": cpu}


# --------------------------------------------------------------------------------------------------------------
# checks


def check_findings(run_dir: Path, expected: dict[str, set[tuple[str, int]]], label: str) -> None:
    got: dict[str, set[tuple[str, int]]] = {bank: set() for bank in expected}
    findings = pq.read_table(run_dir / "findings.parquet", columns=["bank", "shard", "row"]).to_pylist()
    for f in findings:
        got.setdefault(f["bank"], set()).add((f["shard"], f["row"]))
    problems = [
        f"bank {bank}: {len(expected.get(bank, set()) - have)} planted rows missed, "
        f"{len(have - expected.get(bank, set()))} unexpected"
        for bank, have in got.items()
        if have != expected.get(bank, set())
    ]
    if len(findings) != sum(len(v) for v in expected.values()):
        problems.append(f"{len(findings)} findings for {sum(len(v) for v in expected.values())} planted rows")
    if problems:
        raise SystemExit(f"RECALL CHECK FAILED in {label}: " + "; ".join(problems))


def check_pins(run_dir: Path, variant: str, truth: dict[str, dict[str, Any]], label: str) -> None:
    """Pinned runs record every shard file's size and digest; 'before' runs none."""
    summary = json.loads((run_dir / "summary.json").read_text())
    for shard in summary["shards"]:
        want = [{"file": shard["shard"], **truth[shard["shard"]]}] if variant == "pinned" else []
        if shard["pins"] != want:
            raise SystemExit(f"PIN CHECK FAILED in {label}: shard {shard['shard']} pins {shard['pins']}, want {want}")


def xxh3_of(path: Path) -> dict[str, Any]:
    """The expected pin, computed here independently of fsutil.file_pin."""
    import xxhash

    data = path.read_bytes()
    return {"size": len(data), "xxh3_128": xxhash.xxh3_128(data).hexdigest()}


# --------------------------------------------------------------------------------------------------------------
# reporting


def machine() -> dict[str, str]:
    import xxhash

    import safeset

    facts = bench_scan.machine()
    facts.pop("pillow", None)
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    facts["memory"] = f"{mem_kib / 2**20:.0f} GiB"
    facts["kernel"] = platform.release()
    facts["xxhash"] = f"{xxhash.VERSION} (xxh3 {xxhash.XXHASH_VERSION})"
    src = Path(safeset.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True, text=True)
    if head.returncode == 0:
        facts["safeset tree"] = head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    return facts


def spread(values: list[float], form: str = "{:.2f}") -> str:
    return f"{form.format(statistics.median(values))} ({form.format(min(values))}–{form.format(max(values))})"


def rate(x: float) -> str:
    return f"{x:,.0f}"


@dataclass
class Scenario:
    label: str
    bank_names: list[str]
    expected: dict[str, set[tuple[str, int]]]
    cold: bool = False  # the dataset's files are evicted from the page cache before each run


def print_results(
    scenarios: list[Scenario],
    runs: dict[tuple[str, str], list[dict[str, Any]]],
    pins: list[dict[str, Any]],
    rows: int,
    files: int,
    nbytes: int,
) -> None:
    rounds = len(pins)
    print(f"\n## results ({rows:,} rows in {files} parquet files, {nbytes / 2**20:.1f} MiB; {rounds} rounds)\n")
    print("### Metadata-only scan, 1 process, per variant: median (min–max) over the rounds\n")
    print(
        "| banks | variant | wall s | CPU s | rows/s (wall) | rows per CPU-s | whole process wall s "
        "| whole process CPU s | peak RSS MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in scenarios:
        for variant in VARIANTS:
            rs = runs[scenario.label, variant]
            walls, cpus = [r["wall"] for r in rs], [r["cpu"] for r in rs]
            print(
                f"| {scenario.label} | {variant} | {spread(walls)} | {spread(cpus)} "
                f"| {rate(rows / statistics.median(walls))} | {rate(rows / statistics.median(cpus))} "
                f"| {spread([r['process_wall'] for r in rs])} | {spread([r['process_cpu'] for r in rs])} "
                f"| {max(r['maxrss_mb'] for r in rs):.0f} |"
            )

    print("\n### Paired ratio pinned / before, per round: median (min–max)\n")
    print(
        "| banks | scan wall | scan CPU | whole process wall | whole process CPU | pinned − before, scan wall ms "
        "| pinned − before, scan CPU ms | pin_shard alone CPU / before scan CPU, same round |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in scenarios:
        pairs = list(zip(runs[scenario.label, "pinned"], runs[scenario.label, "before"], strict=True))

        def ratio(key: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]] = pairs) -> str:
            return spread([p[key] / b[key] for p, b in pairs], "{:.3f}")

        def diff(key: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]] = pairs) -> str:
            return spread([1000 * (p[key] - b[key]) for p, b in pairs], "{:+.0f}")

        share = [p["pin_cpu"] / r["cpu"] for p, r in zip(pins, runs[scenario.label, "before"], strict=True)]
        print(
            f"| {scenario.label} | {ratio('wall')} | {ratio('cpu')} | {ratio('process_wall')} "
            f"| {ratio('process_cpu')} | {diff('wall')} | {diff('cpu')} "
            f"| {spread(share, '{:.1%}')} |"
        )

    print(
        "\nThe last column is what the ratio should be (less 1) if pinning cost exactly what it costs alone: the "
        "pin_shard CPU time of the round's own pinning-alone process over the 'before' scan's CPU time."
    )
    print(f"\n### pin_shard alone over all {files} shards ({nbytes / 2**20:.1f} MiB), warm page cache unless said\n")
    print("| | wall ms | CPU ms | GB/s (wall) |")
    print("|---|---:|---:|---:|")
    for label, wall_key, cpu_key in (
        ("pin_shard, every shard (size + xxh3-128 of each file)", "pin_wall", "pin_cpu"),
        ("plain read of the same files, same 4 MiB blocks, no digest", "read_wall", "read_cpu"),
        ("xxh3-128 of the same bytes already in memory, no read", "hash_wall", "hash_cpu"),
        ("pin_shard, files evicted from the page cache first", "cold_pin_wall", "cold_pin_cpu"),
        ("plain read, files evicted from the page cache first", "cold_read_wall", "cold_read_cpu"),
    ):
        walls, cpus = [p[wall_key] for p in pins], [p[cpu_key] for p in pins]
        print(
            f"| {label} | {spread([1000 * w for w in walls], '{:.1f}')} | {spread([1000 * c for c in cpus], '{:.1f}')} "
            f"| {nbytes / statistics.median(walls) / 1e9:.2f} |"
        )
    print(
        f"\nEach round's figure is the median of {pins[0]['repeat']} passes in one fresh process; the table gives "
        "the median (min–max) of those over the rounds. The first pass of each process, which also imports "
        f"xxhash (as a scan's first shard does), took {spread([1000 * p['first_wall'] for p in pins], '{:.1f}')} ms."
    )


# --------------------------------------------------------------------------------------------------------------
# main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="metadata rows (default 1,000,000; --quick 100,000)")
    parser.add_argument("--files", type=int, default=10, help="parquet files (shards) the rows are split into")
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 15; --quick 2)")
    parser.add_argument("--pin-repeat", type=int, default=5, help="pin_shard passes per round, median kept")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test; not for reporting")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate data (default: a /tmp dir)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return

    rows = args.rows or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (2 if args.quick else 15)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="safeset-bench-pinning-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/bench_pinning.py", *sys.argv[1:]])
    print(f"# safeset shard pinning benchmark\n\ncommand: `{command}`\nworkdir: {work}", flush=True)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()), flush=True)
    print(f"load average at start: {bench_scan.load_average()}", flush=True)
    started = time.perf_counter()
    try:
        measure(work, rows, args.files, rounds, args.pin_repeat, args.quick, np.random.default_rng(args.seed))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end: {bench_scan.load_average()}; whole benchmark {time.perf_counter() - started:.0f}s")


def measure(work: Path, rows: int, files: int, rounds: int, pin_repeat: int, quick: bool, rng: Any) -> None:
    from safeset.banks.store import BankStore

    md5_entries, url_entries, plant = (100_000, 10_000, 100) if quick else (1_000_000, 100_000, 1000)
    print("\n## generating data", flush=True)
    spent, meta = bench_scan.timed(lambda: bench_scan.make_metadata(work / "metadata", rows, files, rng))
    print(f"  {rows:,} rows in {files} parquet files ({meta.bytes_on_disk / 2**20:.1f} MiB) in {spent.wall:.1f}s")
    lists = bench_scan.write_lists(work / "lists", meta, [], md5_entries, url_entries, plant, rng)
    store = BankStore(work / "banks")
    for name, kind, source in (("md5-1m", "md5", "md5.txt"), ("urls", "url", "urls.txt")):
        bank = store.add(name, kind, work / "lists" / source)
        print(f"  bank {name}: {kind}, {bank.entries:,} entries")
    truth = {shard: xxh3_of(meta.root / shard) for shard, _ in meta.shard_rows}
    shard_paths = [meta.root / shard for shard, _ in meta.shard_rows]
    expected_md5, expected_url = meta.locate(lists.md5_rows), meta.locate(lists.url_rows)
    scenarios = [
        Scenario(
            f"md5 ({md5_entries:,}) + url ({url_entries:,})",
            ["md5-1m", "urls"],
            {"md5-1m": expected_md5, "urls": expected_url},
        ),
        Scenario(f"md5 ({md5_entries:,}) only", ["md5-1m"], {"md5-1m": expected_md5}),
        Scenario(f"md5 ({md5_entries:,}) only, cold dataset files", ["md5-1m"], {"md5-1m": expected_md5}, cold=True),
    ]
    del meta.urls, meta.md5_hex  # the parent's copy of the data is not needed any more

    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(s.label, v): [] for s in scenarios for v in VARIANTS}
    pins: list[dict[str, Any]] = []
    base = {"workdir": str(work), "dataset": str(meta.root), "banks": str(work / "banks")}
    print(f"\n## rounds (1 warm-up + {rounds}; each: both variants of each scan, order alternating, then pinning)")
    for number in range(-1, rounds):
        order = VARIANTS if number % 2 == 0 else VARIANTS[::-1]
        line = []
        for scenario in scenarios:
            pair = {}
            for variant in order:
                run_dir = work / "runs" / variant
                task = {**base, "name": variant, "kind": "scan", "variant": variant, "run_dir": str(run_dir)}
                if scenario.cold:
                    evict(shard_paths)
                pair[variant] = result = run_child(work, {**task, "bank_names": scenario.bank_names})
                label = f"{scenario.label}, {variant}, round {number}"
                if result["rows_in"] != rows:
                    raise SystemExit(f"{label}: the scan saw {result['rows_in']} rows, expected {rows}")
                check_findings(run_dir, scenario.expected, label)
                check_pins(run_dir, variant, truth, label)
                shutil.rmtree(run_dir)
            line.append(f"{pair['pinned']['wall'] / pair['before']['wall']:.3f}")
            if number >= 0:
                for variant in VARIANTS:
                    runs[scenario.label, variant].append(pair[variant])
        pin = run_child(work, {**base, "name": "pin", "kind": "pin", "repeat": pin_repeat})
        if pin["bytes"] != sum(t["size"] for t in truth.values()):
            raise SystemExit(f"pin_shard pinned {pin['bytes']} bytes, not the files' {len(truth)} sizes")
        name = "warm-up" if number < 0 else f"round {number}"
        print(
            f"  {name}: pinned/before scan wall {' | '.join(line)}; pin_shard {1000 * pin['pin_wall']:.1f} ms; "
            f"load {bench_scan.load_average()}",
            flush=True,
        )
        if number >= 0:
            pins.append({**pin, "repeat": pin_repeat})
    print("  every run: findings = planted rows (none missed, none extra); pins = files' sizes and xxh3-128 digests")
    nbytes = sum(t["size"] for t in truth.values())
    print_results(scenarios, runs, pins, rows, files, nbytes)


if __name__ == "__main__":
    main()
