"""Metadata matching throughput (issue 13 item 4): md5 + url + url-md5 banks on the scan's own path, one core.

    python benchmarks/bench_metadata.py [--rows 500000] [--runs 3] [--batch-rows 4096] [--naive-rows 100000]
    python benchmarks/bench_metadata.py --profile          # cProfile of one pass of the fast path, top 25
    python benchmarks/bench_metadata.py --per-bank         # also each bank's matcher alone

The path timed is the scan's: Arrow batches (`RowBatch`, 4,096 rows) -> `Signals` -> the md5, url and url-md5
matchers' `match` (banks imported with `BankStore.add`, matchers built by the registry). Figures are CPU time
(`time.process_time`) of the match calls only: the machine's cores are shared, so wall time says little.

The naive peer is what one would write without safeset: pyarrow `to_pylist`, the md5 column in a Python set,
each URL put through python's `urllib` in both normal forms (safeset's scalar reference functions, which are
urllib + re + idna), `hashlib.md5` of each form, Python set lookups. Each paired round runs both on the same
rows (alternating which goes first) and checks the flagged (row, bank) pairs are identical.

Data (synthetic, benign): URL shapes after LAION-400M/5B metadata -- CDN image hosts with long hex or numeric
paths, size directories, query strings (~22 %), percent escapes (~7 %), upper-case paths, non-ASCII paths
(~2 %), IDN hosts (~0.5 %), ports, fragments, http/https mix; hosts are `example`-style names. md5 column
with 2 % nulls. Banks: md5 1,000,000 entries, url 100,000, url-md5 100,000 (forms te + canonical), each with
1,000 of the dataset's rows planted (URLs written another way: scheme, case, default port).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import platform
import pstats
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

HOSTS = [
    "i.pinexample.com",
    "images-na.ssl-images-example.com",
    "cdn.shopexample.com",
    "img.alicdn-example.com",
    "ae01.alicdn-example.com",
    "media.gettyexample.com",
    "i.ytimg-example.com",
    "static.wixexample.com",
    "www.example-shop.de",
    "photos.smugexample.com",
    "s3.amazonaws-example.com",
    "upload.wikimedia-example.org",
    "i0.wp-example.com",
    "thumbs.dreamstime-example.com",
    "cdn.example-news.co.uk",
]
WORDS = ["product", "large", "photo", "vintage", "wedding", "dress", "black", "img", "new", "home", "decor", "cat"]


def make_urls(n: int, seed: int = 13) -> list[str]:
    rng = np.random.default_rng(seed)
    hexes = [bytes(row).hex() for row in rng.integers(0, 256, (n, 16), dtype=np.uint8)]
    host_pick = rng.integers(0, len(HOSTS), n)
    shape = rng.random(n)
    urls = []
    for i in range(n):
        host = HOSTS[host_pick[i]]
        h = hexes[i]
        scheme = "https" if shape[i] % 0.1 < 0.085 else "http"
        s = shape[i]
        if s < 0.30:
            path = f"/originals/{h[:2]}/{h[2:4]}/{h[4:6]}/{h}.jpg"
        elif s < 0.45:
            path = f"/images/I/{h[:11].upper()}L._AC_SX{300 + i % 400}_.jpg"
        elif s < 0.60:
            path = f"/s/files/1/{i % 9999:04d}/{i % 777:04d}/products/{WORDS[i % 12]}-{h[:8]}_{480 + i % 5}x.jpg"
        elif s < 0.67:
            path = f"/wp-content/uploads/2019/0{1 + i % 9}/{WORDS[i % 12]}%20{WORDS[(i + 3) % 12]}%20{h[:6]}.jpg"
        elif s < 0.82:
            path = f"/photos/{WORDS[i % 12]}-{WORDS[(i + 5) % 12]}-{h[:10]}.jpg"
        elif s < 0.84:
            path = f"/bilder/{WORDS[i % 12]}-größe-{h[:6]}.jpg" if i % 2 else f"/商品/{h[:8]}.jpg"
        else:
            path = f"/{WORDS[i % 12]}/{h[:12]}/{WORDS[(i + 1) % 12].upper()}_{i}.JPG"
        tail = ""
        t = (s * 7919) % 1.0
        if t < 0.22:
            tail = f"?w={200 + i % 800}&h={200 + i % 600}&fit=crop&q=80"
        elif t < 0.225:
            tail = "#main"
        if t > 0.995:
            host = "bücher-example.de"
        elif t > 0.99:
            host += ":8080"
        urls.append(f"{scheme}://{host}{path}{tail}")
    return urls


def url_variant(url: str, k: int) -> str:
    """The same resource as a list would spell it: other scheme, other case, explicit default port."""
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    if k == 1:
        return ("http" if scheme == "https" else "https") + "://" + rest
    if k == 2:
        return scheme.upper() + "://" + host.upper() + "/" + path
    if k == 3 and ":" not in host:
        return f"{scheme}://{host}:{443 if scheme == 'https' else 80}/{path}"
    return url


def build(work: Path, rows: int, plant: int = 1000, seed: int = 7, url_md5_forms: str = "") -> dict[str, Any]:
    """Data, list files and banks; returns the Arrow table and the banks' folder."""
    from safeset.banks.store import BankStore
    from safeset.signals.urls import ThreatExchangeUrl

    rng = np.random.default_rng(seed)
    urls = make_urls(rows)
    md5 = [bytes(r).hex() for r in rng.integers(0, 256, (rows, 16), dtype=np.uint8)]
    missing = rng.random(rows) < 0.02
    md5_col = [None if m else h for h, m in zip(md5, missing, strict=True)]
    table = pa.table({"URL": pa.array(urls, type=pa.string()), "md5": pa.array(md5_col, type=pa.string())})
    chosen = rng.choice(rows, 3 * plant, replace=False)
    lists = work / "lists"
    lists.mkdir()
    noise_md5 = [bytes(r).hex() for r in rng.integers(0, 256, (1_000_000 - plant, 16), dtype=np.uint8)]
    planted_md5 = [md5[r] for r in chosen[:plant] if md5_col[r] is not None]
    (lists / "md5.txt").write_text("\n".join(noise_md5 + planted_md5) + "\n")
    noise_urls = [f"https://list{i % 997}.example.net/item/{i:08x}.jpg" for i in range(100_000 - plant)]
    planted_urls = [url_variant(urls[r], k % 4) for k, r in enumerate(chosen[plant : 2 * plant])]
    (lists / "urls.txt").write_text("\n".join(noise_urls + planted_urls) + "\n")
    te = ThreatExchangeUrl()
    noise_url_md5 = [bytes(r).hex() for r in rng.integers(0, 256, (100_000 - plant, 16), dtype=np.uint8)]
    planted_url_md5 = [hashlib.md5(te.normalize(urls[r]).encode()).hexdigest() for r in chosen[2 * plant :]]
    (lists / "url-md5.txt").write_text("\n".join(noise_url_md5 + planted_url_md5) + "\n")
    banks = work / "banks"
    store = BankStore(banks)
    store.add("md5", "md5", lists / "md5.txt")
    store.add("urls", "url", lists / "urls.txt")
    forms = {"url_forms": tuple(url_md5_forms.split(","))} if url_md5_forms else None
    store.add("url-md5", "url-md5", lists / "url-md5.txt", options=forms)
    return {"table": table, "banks": banks}


def matchers(banks: Path) -> list[Any]:
    from safeset.banks.store import BankStore
    from safeset.kinds.base import MATCHERS

    store = BankStore(banks)
    out = []
    for name in ("md5", "urls", "url-md5"):
        info = store.info(name)
        out.append(MATCHERS[info.kind](info, store.folder(name)))
    return out


def fast_pass(table: pa.Table, found: list[Any], batch_rows: int) -> tuple[float, set[tuple[int, str]]]:
    """The scan's path; CPU seconds of Signals + match calls, and the flagged (row, bank) pairs."""
    from safeset.io.batch import RowBatch
    from safeset.signals.compute import Signals

    flagged: set[tuple[int, str]] = set()
    batches = []
    for start in range(0, table.num_rows, batch_rows):
        part = table.slice(start, batch_rows)
        batches.append(
            RowBatch(
                "bench",
                np.arange(start, start + part.num_rows),
                None,
                urls=part.column("URL").combine_chunks(),
                metadata_hashes={"md5": part.column("md5").combine_chunks()},
            )
        )
    seconds = 0.0
    for batch in batches:
        start = time.process_time()
        signals = Signals(batch, [])
        hits = [(m.info.name, h) for m in found for h in m.match(signals)]
        seconds += time.process_time() - start
        for name, h in hits:
            flagged.update((int(batch.rows[p]), name) for p in h.positions)
    return seconds, flagged


def naive_pass(table: pa.Table, banks: Path) -> tuple[float, set[tuple[int, str]]]:
    """pyarrow + urllib + hashlib + re, one Python loop over the rows, Python sets for the banks."""
    from safeset.signals.urls import CanonicalUrl, ThreatExchangeUrl

    te, canonical = ThreatExchangeUrl().normalize, CanonicalUrl().normalize
    sets = _naive_sets(banks)
    start = time.process_time()
    flagged: set[tuple[int, str]] = set()
    urls = table.column("URL").to_pylist()
    md5s = table.column("md5").to_pylist()
    md5_set, url_te, url_canonical, url_md5 = sets
    for row, (url, md5) in enumerate(zip(urls, md5s, strict=True)):
        if md5 is not None and bytes.fromhex(md5) in md5_set:
            flagged.add((row, "md5"))
        if url is None:
            continue
        t, c = te(url), canonical(url)
        if t in url_te or c in url_canonical:
            flagged.add((row, "urls"))
        if hashlib.md5(t.encode()).digest() in url_md5 or hashlib.md5(c.encode()).digest() in url_md5:
            flagged.add((row, "url-md5"))
    return time.process_time() - start, flagged


_NAIVE: dict[str, Any] = {}


def _naive_sets(banks: Path) -> tuple[set[bytes], set[str], set[str], set[bytes]]:
    """The banks as Python sets, read from the list files (built once, not timed)."""
    if "sets" not in _NAIVE:
        from safeset.signals.urls import CanonicalUrl, ThreatExchangeUrl

        lists = banks.parent / "lists"
        md5 = {bytes.fromhex(x) for x in (lists / "md5.txt").read_text().split()}
        urls = (lists / "urls.txt").read_text().split()
        te = {ThreatExchangeUrl().normalize(u) for u in urls}
        canonical = {CanonicalUrl().normalize(u) for u in urls}
        url_md5 = {bytes.fromhex(x) for x in (lists / "url-md5.txt").read_text().split()}
        _NAIVE["sets"] = (md5, te, canonical, url_md5)
    return _NAIVE["sets"]


def stage_profile(table: pa.Table, found: list[Any], batch_rows: int) -> None:
    """cProfile of one fast pass: the top functions, then their own time per row (the compiled kernels are single
    calls per batch, so their own time is theirs; the profiler adds to the Python glue)."""
    profiler = cProfile.Profile()
    profiler.enable()
    fast_pass(table, found, batch_rows)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    rows = table.num_rows
    entries = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    total = sum(entry[2] for _, entry in entries)
    print(f"own time per row, {rows:,} rows (total {1e6 * total / rows:.2f} µs/row under the profiler):")
    for (filename, _, function), (_, calls, own, _, _) in entries[:14]:
        print(f"  {1e6 * own / rows:6.3f} µs  {function} ({Path(filename).name}, {calls} calls)")


def spread(values: list[float], digits: int = 0) -> str:
    values = sorted(values)
    return " / ".join(f"{v:,.{digits}f}" for v in (values[0], statistics.median(values), values[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=4096)
    parser.add_argument("--naive-rows", type=int, default=100_000, help="rows the naive loop runs on (it is slow)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--per-bank", action="store_true", help="also time each bank's matcher alone")
    parser.add_argument("--url-md5-forms", default="", help="the url-md5 bank's forms (default: the kind's, all)")
    args = parser.parse_args()
    try:
        from safeset.signals import url_kernels
    except ImportError:  # code before the compiled kernels
        url_kernels = None

    with tempfile.TemporaryDirectory(prefix="bench-metadata-") as tmp:
        data = build(Path(tmp), args.rows, url_md5_forms=args.url_md5_forms)
        table, banks = data["table"], data["banks"]
        found = matchers(banks)
        fast_pass(table.slice(0, 10_000), found, args.batch_rows)  # numba kernels loaded or compiled: not timed
        if args.profile:
            stage_profile(table, found, args.batch_rows)
            return
        print(
            f"machine: nproc={os.cpu_count()} {platform.machine()}, Python {platform.python_version()}, "
            f"pyarrow {metadata.version('pyarrow')}, numpy {np.__version__}, numba {metadata.version('numba')}; "
            f"load average at start {os.getloadavg()[0]:.1f}"
        )
        naive_table = table.slice(0, args.naive_rows)
        fast_rates, naive_rates, ratios = [], [], []
        if url_kernels is not None:
            url_kernels.STATS.reset()
        for run in range(args.runs):
            order = ["fast", "naive"] if run % 2 == 0 else ["naive", "fast"]
            got: dict[str, tuple[float, set[tuple[int, str]]]] = {}
            for which in order:
                if which == "fast":
                    got["fast"] = fast_pass(table, found, args.batch_rows)
                    got["fast-cut"] = fast_pass(naive_table, found, args.batch_rows)
                else:
                    got["naive"] = naive_pass(naive_table, banks)
            assert got["fast-cut"][1] == got["naive"][1], "fast and naive matchers disagree"
            fast_rate = args.rows / got["fast"][0]
            naive_rate = args.naive_rows / got["naive"][0]
            fast_rates.append(fast_rate)
            naive_rates.append(naive_rate)
            ratios.append(fast_rate / naive_rate)
            print(
                f"run {run + 1}: fast {fast_rate:,.0f} rows/CPU-s ({len(got['fast'][1])} flagged), naive "
                f"{naive_rate:,.0f} rows/CPU-s, identical on {args.naive_rows:,} rows "
                f"({len(got['naive'][1])} flagged); load {os.getloadavg()[0]:.1f}"
            )
        fallbacks = url_kernels and url_kernels.STATS
        print(f"\nload average at end {os.getloadavg()[0]:.1f}; URL kernel fallbacks: {fallbacks}")
        print("\n| path | rows/s per core, min / median / max | naive ratio min / median / max |")
        print("|---|---:|---:|")
        print(f"| safeset (md5 + url + url-md5) | {spread(fast_rates)} | {spread(ratios, 1)}× |")
        print(f"| naive (pyarrow + urllib + hashlib + re) | {spread(naive_rates)} | 1× |")
        if args.per_bank:
            print("\n| bank alone (Signals + its matcher) | rows/s per core, min / median / max |")
            print("|---|---:|")
            for matcher in found:
                rates = [args.rows / fast_pass(table, [matcher], args.batch_rows)[0] for _ in range(args.runs)]
                print(f"| {matcher.info.name} ({matcher.info.kind}) | {spread(rates)} |")


if __name__ == "__main__":
    main()
