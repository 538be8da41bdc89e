"""Hashing throughput, one core: safeset `exact` and `fast` against pdqhash + Pillow, and against the decoder.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_hash.py [--rounds 5] [--sides 320 480 1024]

Every figure is CPU time of the measured call (`time.process_time`; the machine may be shared), images per
CPU-second; each round times every pipeline back to back on the same files, and the table gives the median over
rounds with min-max of the per-round ratios. Pipelines (each also takes the MD5 of the bytes, as `safeset hash`
prints both):
  decode >=64   Pillow's DCT-scaled luma decode of the same files, smallest scale keeping >= 64 px (the issue's
                "decode limit"); decode only, no hash.
  decode fast   the same at the scale `fast` uses (short side >= 256 px, below which the hash moves).
  peer          what python-threatexchange does: Pillow decodes, converts to RGB, pdqhash (Meta's C++ core).
  exact, fast   safeset.signals.pdq.hash_images on the batch.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_hash.py --scan-queries --sides 160 320 480 1024

times instead the scan's default query hashing (`fast` with the 8 flips and trimmed borders) without and with the
512-px canvas variant (`--pdq-upscale`), which pictures of at most 512 px get.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pdqhash
import PIL
import simplejpeg
from PIL import Image

from common_photos import jpeg_bytes, load_rgb, photo_paths, web_sized
from safeset.signals import pdq
from safeset.signals.pdq_variants import UPSCALED

Pipeline = Callable[[list[bytes]], np.ndarray | None]


def ratio(rates: dict[str, list[float]], a: str, b: str) -> str:
    """Median and min-max over rounds of the per-round rate ratio a / b."""
    per_round = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
    return f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"


def peer(blobs: list[bytes]) -> np.ndarray:
    out = np.zeros((len(blobs), 32), np.uint8)
    for i, blob in enumerate(blobs):
        hashlib.md5(blob).digest()
        with Image.open(io.BytesIO(blob)) as image:
            rgb = np.asarray(image.convert("RGB"))
        bits, _ = pdqhash.compute(rgb)
        out[i] = np.packbits(bits.astype(np.uint8))
    return out


def pillow_decode(min_side: int) -> Pipeline:
    def run(blobs: list[bytes]) -> None:
        for blob in blobs:
            hashlib.md5(blob).digest()
            with Image.open(io.BytesIO(blob)) as image:
                width, height = image.size
                scale = next(s for s in (8, 4, 2, 1) if min(width, height) // s >= min_side or s == 1)
                image.draft("L", (width // scale, height // scale))
                image.load()

    return run


def ours(mode: str) -> Pipeline:
    def run(blobs: list[bytes]) -> np.ndarray:
        for blob in blobs:
            hashlib.md5(blob).digest()
        return pdq.hash_images(blobs, mode).hashes

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sides", type=int, nargs="+", default=[320, 480, 1024])
    parser.add_argument("--copies", type=int, default=8, help="JPEG qualities per photo (70..91)")
    parser.add_argument(
        "--scan-queries",
        action="store_true",
        help="instead: the scan's query hashing (flips, trimmed borders) without and with the 512-px canvas",
    )
    args = parser.parse_args()
    photos = [load_rgb(p) for p in photo_paths()]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f};"
        f" Python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__},"
        f" simplejpeg {simplejpeg.__version__}, pdqhash (C++ core)"
    )
    print(
        f"{len(photos)} real photos x {args.copies} JPEG qualities per size; images per CPU-second, median of"
        f" {args.rounds} rounds (ratios: median, min-max of per-round ratios)\n"
    )
    print(
        "| long side | images | decode >=64 | decode fast | peer | exact | fast | fast / decode >=64 | fast / peer"
        " | exact / peer | exact = peer bits | fast vs exact: mean / max bits |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    if args.scan_queries:
        scan_queries(photos, args)
        return
    pipelines: dict[str, Pipeline] = {
        "decode64": pillow_decode(64),
        "decodefast": pillow_decode(pdq.FAST_MIN_SIDE),
        "peer": peer,
        "exact": ours("exact"),
        "fast": ours("fast"),
    }
    for side in args.sides:
        blobs = [jpeg_bytes(web_sized(p, side), 70 + 3 * k) for p in photos for k in range(args.copies)]
        ours("fast")(blobs[:2])  # load the compiled kernels before timing
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        results: dict[str, np.ndarray | None] = {}
        for _ in range(args.rounds):
            for name, run in pipelines.items():
                start = time.process_time()
                results[name] = run(blobs)
                rates[name].append(len(blobs) / max(time.process_time() - start, 1e-9))

        same = pdq.popcount_distance(results["exact"], results["peer"]) == 0  # type: ignore[arg-type]
        gap = pdq.popcount_distance(results["exact"], results["fast"])  # type: ignore[arg-type]
        median = {name: statistics.median(values) for name, values in rates.items()}
        print(
            f"| {side} | {len(blobs)} | {median['decode64']:.0f} | {median['decodefast']:.0f} | {median['peer']:.0f}"
            f" | {median['exact']:.0f} | {median['fast']:.0f} | {ratio(rates, 'fast', 'decode64')}"
            f" | {ratio(rates, 'fast', 'peer')}"
            f" | {ratio(rates, 'exact', 'peer')} | {same.mean():.0%} | {gap.mean():.2f} / {gap.max()} |"
        )


def scan_queries(photos: list, args: argparse.Namespace) -> None:
    """What the scan's default query variants cost to hash, without and with the 512-px canvas (`upscale`)."""
    variants = {
        "flips + trim": {},
        "flips + trim + canvas": {"reframes": (UPSCALED,)},
    }
    print("| long side | images | " + " | ".join(variants) + " | with canvas / without |")
    print("|---|---|" + "---|" * (len(variants) + 1))
    for side in args.sides:
        blobs = [jpeg_bytes(web_sized(p, side), 70 + 3 * k) for p in photos for k in range(args.copies)]
        for extra in variants.values():
            pdq.hash_images(blobs[:2], "fast", dihedral=True, unletterbox=True, **extra)  # compile / load kernels
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, extra in variants.items():
                start = time.process_time()
                pdq.hash_images(blobs, "fast", dihedral=True, unletterbox=True, **extra)
                rates[name].append(len(blobs) / max(time.process_time() - start, 1e-9))
        names = list(variants)
        print(
            f"| {side} | {len(blobs)} | "
            + " | ".join(f"{statistics.median(rates[name]):.0f}" for name in names)
            + f" | {ratio(rates, names[1], names[0])} |"
        )


if __name__ == "__main__":
    main()
