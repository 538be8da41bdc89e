"""URL normal forms (issue 13): the vectorised Arrow path of `te` and `canonical` against the scalar reference
applied row by row (the naive matcher: a Python loop over urllib), both followed by MD5 as URL-MD5 banks need.

    python benchmarks/bench_url_forms.py [--rows 200000] [--runs 5]

Synthetic benign URLs with the shape mix of `bench_scan.py` (80 % plain, 10 % query, 4 % percent escapes,
3 % upper-case path, 1 % non-ASCII path, 1 % upper-case host, 0.5 % port, 0.5 % fragment) plus 1 % IDN hosts.
Each round times both paths on the same URLs, alternating which goes first, in CPU time of this process; the
results are checked identical (digest for digest). Prints a markdown table with min / median / max over rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import statistics
import time
from importlib import metadata

import numpy as np
import pyarrow as pa

from safeset.signals.urls import NORMALIZERS


def make_urls(rows: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    words = ["photo", "img", "gallery", "stock", "cat", "flower", "2019", "large", "thumb", "view"]
    shapes = [
        (0.80, lambda p: f"https://{rng.choice(['cdn', 'img', 'www'])}.example.org/{p}.jpg"),
        (0.10, lambda p: f"https://img.example.com/{p}.jpg?w={rng.randint(100, 999)}&h=200"),
        (0.04, lambda p: f"https://img.example.net/{p}%20copy%2Bx.jpg"),
        (0.03, lambda p: f"https://img.example.org/{p.upper()}.JPG"),
        (0.01, lambda p: f"https://img.example.org/{p}/İstanbul-çay-ş.jpg"),
        (0.01, lambda p: f"https://IMG.Example.ORG/{p}.jpg"),
        (0.005, lambda p: f"http://img.example.org:8080/{p}.jpg"),
        (0.005, lambda p: f"https://img.example.org/{p}.jpg#frag"),
        (0.01, lambda p: f"https://bücher.example.de/{p}.jpg"),
    ]
    weights = [w for w, _ in shapes]
    makers = [m for _, m in shapes]
    out = []
    for _ in range(rows):
        path = "/".join(rng.choice(words) + str(rng.randint(0, 99999)) for _ in range(rng.randint(1, 4)))
        out.append(rng.choices(makers, weights)[0](path))
    return out


def vector_digests(form: str, urls: pa.Array) -> list[bytes]:
    normalised = NORMALIZERS[form].normalize_array(urls)
    return [hashlib.md5(u.encode()).digest() for u in normalised.to_pylist()]


def naive_digests(form: str, urls: list[str]) -> list[bytes]:
    normalize = NORMALIZERS[form].normalize
    return [hashlib.md5(normalize(u).encode()).digest() for u in urls]


def vector_only(form: str, urls: pa.Array) -> pa.Array:
    return NORMALIZERS[form].normalize_array(urls)


def cpu(fn, *args):  # type: ignore[no-untyped-def]
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    urls = make_urls(args.rows)
    array = pa.array(urls, type=pa.string())
    print(
        f"machine: nproc={os.cpu_count()} {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, pyarrow {metadata.version('pyarrow')}, numpy {np.__version__}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{args.rows} URLs, {args.runs} paired rounds (CPU seconds of this process)\n")
    print(
        "| form | normalise (vector) rows/s | normalise + MD5 (vector) rows/s | naive (urllib loop + MD5) rows/s "
        "| ratio vector+MD5 / naive |"
    )
    print("|---|---|---|---|---|")
    for form in ("te", "canonical"):
        normal, fast, slow = [], [], []
        for round_ in range(args.runs):
            order = [("fast", vector_digests, array), ("slow", naive_digests, urls)]
            if round_ % 2:
                order.reverse()
            got = {}
            for name, fn, data in order:
                seconds, got[name] = cpu(fn, form, data)
                (fast if name == "fast" else slow).append(seconds)
            assert got["fast"] == got["slow"], f"{form}: vector and naive digests differ"
            normal.append(cpu(vector_only, form, array)[0])
        ratios = [s / f for f, s in zip(fast, slow, strict=True)]

        def rate(times: list[float]) -> str:
            values = sorted(args.rows / t / 1000 for t in times)
            return f"{values[0]:.0f} / {statistics.median(values):.0f} / {values[-1]:.0f} k"

        ratio = f"{min(ratios):.1f} / {statistics.median(ratios):.1f} / {max(ratios):.1f}×"
        print(f"| {form} | {rate(normal)} | {rate(fast)} | {rate(slow)} | {ratio} |")


if __name__ == "__main__":
    main()
