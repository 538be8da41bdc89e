"""Hashing throughput, one core: safeset `exact` and `fast` against pdqhash + Pillow full decode.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_hash.py [--rounds 3] [--sides 320 480]

The peer is what python-threatexchange does per image: Pillow decodes and converts to RGB, pdqhash (Meta's
C++ core) hashes; every pipeline also takes the MD5 of the bytes, as `safeset hash` prints both.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pdqhash
from PIL import Image

from common_photos import jpeg_bytes, load_rgb, photo_paths, web_sized
from safeset.signals import pdq


def peer(blobs: list[bytes]) -> np.ndarray:
    out = np.zeros((len(blobs), 32), np.uint8)
    for i, blob in enumerate(blobs):
        hashlib.md5(blob).digest()
        with Image.open(io.BytesIO(blob)) as image:
            rgb = np.asarray(image.convert("RGB"))
        bits, _ = pdqhash.compute(rgb)
        out[i] = np.packbits(bits.astype(np.uint8))
    return out


def ours(mode: str):  # type: ignore[no-untyped-def]
    def run(blobs: list[bytes]) -> np.ndarray:
        for blob in blobs:
            hashlib.md5(blob).digest()
        return pdq.hash_images(blobs, mode).hashes

    return run


def best_rate(fn, blobs: list[bytes], rounds: int) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    best, result = 0.0, None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn(blobs)
        best = max(best, len(blobs) / (time.perf_counter() - start))
    return best, result  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sides", type=int, nargs="+", default=[320, 480, 1024])
    parser.add_argument("--copies", type=int, default=8, help="JPEG qualities per photo (70..91)")
    args = parser.parse_args()
    photos = [load_rgb(p) for p in photo_paths()]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; numpy {np.__version__}")
    print(f"{len(photos)} real photos x {args.copies} JPEG qualities per size; best of {args.rounds} rounds, 1 core\n")
    print(
        "| long side | images | pdqhash + Pillow (img/s) | safeset exact | safeset fast | exact / peer | fast / peer "
        "| exact = peer bits | fast vs exact: mean / max bits |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for side in args.sides:
        blobs = [jpeg_bytes(web_sized(p, side), 70 + 3 * k) for p in photos for k in range(args.copies)]
        peer_rate, peer_hashes = best_rate(peer, blobs, args.rounds)
        exact_rate, exact_hashes = best_rate(ours("exact"), blobs, args.rounds)
        fast_rate, fast_hashes = best_rate(ours("fast"), blobs, args.rounds)
        same = pdq.popcount_distance(exact_hashes, peer_hashes) == 0
        gap = pdq.popcount_distance(exact_hashes, fast_hashes)
        print(
            f"| {side} | {len(blobs)} | {peer_rate:.0f} | {exact_rate:.0f} | {fast_rate:.0f}"
            f" | {exact_rate / peer_rate:.1f}x | {fast_rate / peer_rate:.1f}x | {same.mean():.0%}"
            f" | {gap.mean():.2f} / {gap.max()} |"
        )
    # The core alone, on the same decoded pixels: wrapping the C++ core versus the vectorised numpy core.
    arrays = [np.asarray(web_sized(p, 480)) for p in photos] * 8
    start = time.perf_counter()
    for rgb in arrays:
        pdqhash.compute(rgb)
    wrapped = len(arrays) / (time.perf_counter() - start)
    start = time.perf_counter()
    for rgb in arrays:
        pdq.hash_rgb(rgb)
    vectorised = len(arrays) / (time.perf_counter() - start)
    print(
        f"\ncore only, 480-px RGB arrays: pdqhash (C++) {wrapped:.0f}/s, safeset numpy {vectorised:.0f}/s "
        f"({vectorised / wrapped:.1f}x)"
    )


if __name__ == "__main__":
    main()
