"""Peak memory of a metadata-only scan by rows per parquet file: the old whole-file reading against row groups.

    python benchmarks/bench_rss.py [--rows 1000000,10000000] [--row-group-rows 100000] [--repeat 1] [--quick]
                                   [--workdir DIR] [--keep]

For each size the script writes one LAION-style parquet file (url, caption, md5-like hex, width, height and a
few score columns; row groups of --row-group-rows), streaming row group by row group so that even 10 M rows
never sit in memory. Everything is synthetic and benign (example.org / example.com / example.net URLs, random
hex digests) and lives in a temporary directory under /tmp that is deleted afterwards (unless --keep).

Each scan is `run_scan(ScanConfig(metadata_only=True, ...), processes=1)` with an md5 bank and a url bank
(10,000 entries each, 100 of them planted in every file), in a fresh interpreter, once with the reading this
repository had before issue 8 and once with the current one:
- `old`: `pq.ParquetFile(path)` with pyarrow's defaults (pre-buffering on) and one `iter_batches` over the whole
  file, as `ParquetDataset` read it before;
- `new`: `ParquetDataset` as it is: no pre-buffering, a 1 MiB read buffer, one row group at a time.

Peak RSS is taken two ways. `ru_maxrss`: the scan runs as the child of a small probe interpreter, which reports
`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` once the scan has exited (the probe imports nothing heavy, so the
high-water mark a fork carries over from its parent is the probe's ~10 MB, not this script's ~100 MB). `VmHWM`: the
scan's own /proc high-water mark, printed by the scan before it exits; the two agree to a few MB.
The script exits non-zero if a scan finds other than the planted rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

BANK_ENTRIES = 10_000
PLANTED = 100  # rows of each file found by each bank
HOSTS = np.array(["img1.example.org", "cdn.example.com", "static3.example.net", "media.example.org", "example.org"])
WORDS = np.array(
    [
        "a", "photo", "of", "the", "red", "blue", "green", "small", "large", "old", "new", "wooden", "stone",
        "glass", "house", "tree", "river", "mountain", "dog", "cat", "bird", "car", "street", "city", "beach",
        "sunset", "portrait", "vintage", "modern", "kitchen", "garden", "table", "chair", "lamp", "book", "cup",
    ]
)  # fmt: skip
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------------
# data


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit value per input (SplitMix64's finaliser), vectorised: digests that look random but
    are a function of the row number, so the banks can name rows without storing the file's digests."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hex_digests(rows: np.ndarray) -> pa.Array:
    """One 32-hex-digit md5-like string per row number, built in numpy straight into an Arrow buffer."""
    words = np.stack([_splitmix64(rows), _splitmix64(rows + (1 << 40))], axis=1)
    raw = words.view(np.uint8).reshape(len(rows), 16)
    chars = np.empty((len(rows), 32), dtype=np.uint8)
    chars[:, 0::2], chars[:, 1::2] = HEX[raw >> 4], HEX[raw & 15]
    offsets = np.arange(0, 32 * (len(rows) + 1), 32, dtype=np.int32)
    return pa.StringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def url_of(row: int) -> str:
    return f"https://{HOSTS[row % len(HOSTS)]}/photos/{row // 1000}/{row}.jpg"


def urls_of(rows: np.ndarray) -> pa.Array:
    """`url_of` for many rows at once, joined by Arrow (10 M Python f-strings would take minutes)."""
    hosts = pa.array(HOSTS.tolist()).take(pa.array(rows % len(HOSTS)))
    folders = pc.cast(pa.array(rows // 1000), pa.string())
    return pc.binary_join_element_wise(
        "https://", hosts, "/photos/", folders, "/", pc.cast(pa.array(rows), pa.string()), ".jpg", ""
    )


def row_group(first: int, n: int, rng: np.random.Generator, captions: pa.Array) -> pa.Table:
    rows = np.arange(first, first + n, dtype=np.int64)
    return pa.table(
        {
            "url": urls_of(rows),
            "caption": captions.take(pa.array(rng.integers(0, len(captions), n))),
            "md5": hex_digests(rows),
            "width": pa.array(rng.integers(64, 2048, n), pa.int32()),
            "height": pa.array(rng.integers(64, 2048, n), pa.int32()),
            "similarity": pa.array(rng.random(n, dtype=np.float32)),
            "punsafe": pa.array(rng.random(n, dtype=np.float32)),
            "pwatermark": pa.array(rng.random(n, dtype=np.float32)),
            "aesthetic": pa.array(rng.random(n, dtype=np.float32) * 10),
        }
    )


def write_file(path: Path, rows: int, group_rows: int) -> None:
    """Write the file one row group at a time: memory stays at one group whatever the size."""
    rng = np.random.default_rng(rows)
    # Captions of 4 to 12 words drawn from a pool (LAION captions average ~50 characters).
    pool = [" ".join(rng.choice(WORDS, rng.integers(4, 13))) for _ in range(65536)]
    captions = pa.array(pool, pa.string())
    schema = row_group(0, 1, rng, captions).schema
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for first in range(0, rows, group_rows):
            group = row_group(first, min(group_rows, rows - first), rng, captions)
            writer.write_table(group, row_group_size=group_rows)


def planted_rows(rows: int) -> np.ndarray:
    return np.linspace(0, rows - 1, PLANTED, dtype=np.int64)


def make_banks(root: Path, rows: int, work: Path) -> dict[str, set[int]]:
    """An md5 bank and a url bank, each planting PLANTED rows of the file among decoys; returns the planted rows."""
    from safeset.banks.store import BankStore

    planted = planted_rows(rows)
    rng = np.random.default_rng(1)
    decoys = rng.integers(0, 256, (BANK_ENTRIES - PLANTED, 16), dtype=np.uint8)
    md5s = hex_digests(planted).to_pylist() + [bytes(d).hex() for d in decoys]
    urls = [url_of(int(r)) for r in planted] + [
        f"https://decoy.example.net/{i}.jpg" for i in range(BANK_ENTRIES - PLANTED)
    ]
    (work / "md5.txt").write_text("\n".join(md5s) + "\n")
    (work / "urls.txt").write_text("\n".join(urls) + "\n")
    store = BankStore(root)
    store.add("md5", "md5", work / "md5.txt")
    store.add("urls", "url", work / "urls.txt")
    return {"md5": set(planted.tolist()), "urls": set(planted.tolist())}


# --------------------------------------------------------------------------------------------------------------
# the scan child and its probe


def use_old_reading() -> None:
    """Make ParquetDataset read as it did before issue 8: pyarrow's default buffering, whole-file iter_batches."""
    from safeset.errors import InputError
    from safeset.io.parquet import PARQUET_ERRORS, ParquetDataset

    def old_open(self: ParquetDataset, shard: Any) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(shard.path)
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet: {exc}", shard.path) from exc

    def old_read_batches(self: ParquetDataset, parquet: pq.ParquetFile, batch_rows: int, columns: Any) -> Any:
        return parquet.iter_batches(batch_size=batch_rows, columns=columns)

    ParquetDataset._open = old_open  # type: ignore[method-assign]
    ParquetDataset._read_batches = old_read_batches  # type: ignore[method-assign]


def scan_child(mode: str, dataset: str, banks: str, run_dir: str) -> None:
    from safeset.banks.store import BankStore
    from safeset.scan.config import ScanConfig
    from safeset.scan.driver import run_scan

    if mode == "old":
        use_old_reading()
    names = tuple(b.name for b in BankStore(Path(banks)).list())
    config = ScanConfig(dataset=dataset, input_format="parquet", banks_dir=banks, bank_names=names, metadata_only=True)
    started = time.perf_counter()
    summary = run_scan(config, Path(run_dir), processes=1).summary
    seconds = time.perf_counter() - started
    findings = pq.read_table(Path(run_dir) / "findings.parquet", columns=["row", "bank"]).to_pylist()
    print(
        json.dumps(
            {
                "vm_hwm_kib": _vm_hwm_kib(),
                "seconds": round(seconds, 1),
                "rows_in": summary["rows_in"],
                "shards_failed": summary["shards_failed"],
                "found": {bank: sorted({f["row"] for f in findings if f["bank"] == bank}) for bank in ("md5", "urls")},
            }
        )
    )


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


#: The probe: a bare interpreter (nothing imported beyond the standard library's process tools) that runs the
#: scan as its only child and reports the child's `ru_maxrss`. A fork carries the parent's high-water mark over
#: to the child, so the parent must be small; this script, with numpy and pyarrow loaded, is not.
PROBE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(done.stderr)
if done.returncode:
    sys.exit(done.returncode)
result = json.loads(done.stdout.strip().splitlines()[-1])
result["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(result))
"""


def measure(mode: str, dataset: Path, banks: Path, run_dir: Path) -> dict[str, Any]:
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    scan = [sys.executable, __file__, "--scan", mode, str(dataset), str(banks), str(run_dir)]
    done = subprocess.run([sys.executable, "-c", PROBE, *scan], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{mode} scan failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------------------------
# main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--scan":
        scan_child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="rows per file, comma-separated")
    parser.add_argument("--row-group-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="scans per (size, reading); the median is shown")
    parser.add_argument("--quick", action="store_true", help="200k and 1M rows: a smoke test, not for reporting")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    sizes = [200_000, 1_000_000] if args.quick else [int(s) for s in args.rows.split(",")]
    work = Path(tempfile.mkdtemp(prefix="safeset-bench-rss-", dir=args.workdir))
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pyarrow {pa.__version__}, numpy {np.__version__}; workdir {work}",
        flush=True,
    )
    failures = 0
    try:
        print("rows per file | file MiB | row groups | reading | peak RSS MiB (ru_maxrss) | VmHWM MiB | scan s")
        for rows in sizes:
            folder = work / f"rows-{rows}"
            folder.mkdir()
            started = time.perf_counter()
            data = folder / "data"
            data.mkdir()
            write_file(data / "part-00000.parquet", rows, args.row_group_rows)
            expected = make_banks(folder / "banks", rows, folder)
            size_mib = (data / "part-00000.parquet").stat().st_size / 2**20
            groups = pq.ParquetFile(data / "part-00000.parquet").num_row_groups
            print(f"# wrote {rows:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
            for mode in ("old", "new"):
                runs = [measure(mode, data, folder / "banks", folder / f"run-{mode}") for _ in range(args.repeat)]
                runs.sort(key=lambda r: r["ru_maxrss_kib"])
                run = runs[len(runs) // 2]
                for r in runs:
                    found = {bank: set(rows_found) for bank, rows_found in r["found"].items()}
                    if found != expected or r["rows_in"] != rows or r["shards_failed"]:
                        failures += 1
                        print(f"# ERROR: {mode} scan of {rows:,} rows found other rows than planted", flush=True)
                print(
                    f"{rows:>13,} | {size_mib:8.0f} | {groups:10} | {mode:7} | {run['ru_maxrss_kib'] / 1024:24.0f} | "
                    f"{run['vm_hwm_kib'] / 1024:9.0f} | {run['seconds']:6.1f}",
                    flush=True,
                )
            shutil.rmtree(folder)
    finally:
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
