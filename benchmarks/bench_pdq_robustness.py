"""Robustness on real photos: the share of edited copies found within the radius, and false matches.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_robustness.py [--photos DIR]

The bank holds each original photo hashed with the reference pipeline (safeset `exact`, which equals Meta's
`pdq-photo-hasher`). Each copy is hashed as a query by:
  reference    the reference pipeline, one query per image (what hash-sharing tools do today);
  +trim        safeset fast, also querying with uniform borders trimmed;
  +dihedral    safeset fast, also querying the 8 rotations/flips;
  safeset      safeset fast with both (the scan's default);
  pHash        imagehash's 64-bit pHash at <= 8 bits (31/256 of its length), for comparison.
A copy is found when some query is within the radius of its own original; a false match is a query within
the radius of a *different* original (counted over all copy x other-original pairs, and over original pairs).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from common_photos import jpeg_bytes, load_rgb, photo_paths, web_sized
from safeset.kinds.pdq.matcher import query_variants
from safeset.signals import pdq

RADIUS = 31
PHASH_RADIUS = 8
Edit = Callable[[Image.Image], Image.Image]


def resize(f: float) -> Edit:
    return lambda im: im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), Image.LANCZOS)


def crop(f: float) -> Edit:  # f of each side's length removed, split between both ends
    return lambda im: im.crop(
        (
            round(im.width * f / 2),
            round(im.height * f / 2),
            im.width - round(im.width * f / 2),
            im.height - round(im.height * f / 2),
        )
    )


def letterbox(aspect: float, colour: str = "black") -> Edit:
    def edit(im: Image.Image) -> Image.Image:
        width = max(im.width, round(im.height * aspect))
        height = max(im.height, round(im.width / aspect))
        canvas = Image.new("RGB", (width, height), colour)
        canvas.paste(im, ((width - im.width) // 2, (height - im.height) // 2))
        return canvas

    return edit


def border(f: float, colour: str = "white") -> Edit:
    return lambda im: ImageOps.expand(im, border=max(2, round(min(im.size) * f)), fill=colour)


def caption(im: Image.Image) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    band = max(12, im.height // 8)
    draw.rectangle((0, im.height - band, im.width, im.height), fill="black")
    draw.text((8, im.height - band + 2), "www.example.com  SHARE  LIKE  meme text overlay", fill="white")
    return out


def jpeg(q: int) -> Edit:
    return lambda im: Image.open(__import__("io").BytesIO(jpeg_bytes(im, q))).convert("RGB")


EDITS: dict[str, Edit] = {
    "jpeg q30": jpeg(30),
    "jpeg q50": jpeg(50),
    "jpeg q70": jpeg(70),
    "jpeg q90": jpeg(90),
    "resize 0.25x": resize(0.25),
    "resize 0.5x": resize(0.5),
    "resize 0.75x": resize(0.75),
    "resize 1.5x": resize(1.5),
    "resize 2x": resize(2.0),
    "crop 2%": crop(0.02),
    "crop 5%": crop(0.05),
    "crop 10%": crop(0.10),
    "border 5% white": border(0.05),
    "letterbox 16:9 black": letterbox(16 / 9),
    "letterbox 1:1 black": letterbox(1.0),
    "pillarbox 9:16 black": letterbox(9 / 16),
    "brightness +30%": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "brightness -30%": lambda im: ImageEnhance.Brightness(im).enhance(0.7),
    "contrast +40%": lambda im: ImageEnhance.Contrast(im).enhance(1.4),
    "contrast -40%": lambda im: ImageEnhance.Contrast(im).enhance(0.6),
    "text overlay": caption,
    "mirror": ImageOps.mirror,
    "flip vertical": ImageOps.flip,
    "rotate 90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    # two edits, as copies on the web often have
    "resize 0.5x + jpeg q50": lambda im: jpeg(50)(resize(0.5)(im)),
    "letterbox 16:9 + jpeg q70": lambda im: jpeg(70)(letterbox(16 / 9)(im)),
    "mirror + resize 0.75x": lambda im: resize(0.75)(ImageOps.mirror(im)),
    "crop 5% + text overlay": lambda im: caption(crop(0.05)(im)),
    "border 5% + brightness +30%": lambda im: ImageEnhance.Brightness(border(0.05)(im)).enhance(1.3),
    "mirror + letterbox 1:1": lambda im: letterbox(1.0)(ImageOps.mirror(im)),
}
FLIPS = {"mirror", "flip vertical", "rotate 90", "mirror + resize 0.75x", "mirror + letterbox 1:1"}


def pdq_queries(blobs: list[bytes], mode: str, dihedral: bool, trim: bool) -> tuple[np.ndarray, np.ndarray]:
    hashes = pdq.hash_images(blobs, mode, dihedral=dihedral, unletterbox=trim)
    queries, owners, _ = query_variants(hashes)
    return queries, owners


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, help="a folder of further real photos to include")
    parser.add_argument("--side", type=int, default=480, help="long side of the originals, as on the web")
    args = parser.parse_args()
    originals = [web_sized(load_rgb(p), args.side) for p in photo_paths(args.photos)]
    bank_blobs = [jpeg_bytes(im, 90) for im in originals]
    bank = pdq.hash_images(bank_blobs, "exact").hashes
    bank_phash = [imagehash.phash(im) for im in originals]
    n = len(originals)
    copies: list[tuple[str, int, bytes, Image.Image]] = []
    for name, edit in EDITS.items():
        for i, im in enumerate(originals):
            edited = edit(im)
            copies.append((name, i, jpeg_bytes(edited, 85), edited))
    blobs = [c[2] for c in copies]
    owner_photo = np.array([c[1] for c in copies])
    configs = {
        "reference": ("exact", False, False),
        "+trim": ("fast", False, True),
        "+dihedral": ("fast", True, False),
        "safeset": ("fast", True, True),
    }
    found: dict[str, np.ndarray] = {}
    false_pairs: dict[str, int] = {}
    for label, (mode, dihedral, trim) in configs.items():
        queries, owners = pdq_queries(blobs, mode, dihedral, trim)
        dist = pdq.popcount_distance(queries[:, None, :], bank[None, :, :])  # (queries, originals)
        hit = dist <= RADIUS
        per_copy = np.zeros((len(copies), n), dtype=bool)
        np.logical_or.at(per_copy, owners, hit)
        found[label] = per_copy[np.arange(len(copies)), owner_photo]
        per_copy[np.arange(len(copies)), owner_photo] = False
        false_pairs[label] = int(per_copy.sum())
    phash_copies = [imagehash.phash(c[3]) for c in copies]
    phash_dist = np.array([[h - b for b in bank_phash] for h in phash_copies])
    found["pHash"] = phash_dist[np.arange(len(copies)), owner_photo] <= PHASH_RADIUS
    phash_dist[np.arange(len(copies)), owner_photo] = 999
    false_pairs["pHash"] = int((phash_dist <= PHASH_RADIUS).sum())
    labels = list(found)
    print(
        f"{n} real photos (long side {args.side} px), {len(EDITS)} edits, {len(copies)} copies; PDQ radius {RADIUS},"
        f" pHash radius {PHASH_RADIUS}/64\n"
    )
    print("| edit | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    names = np.array([c[0] for c in copies])
    for name in EDITS:
        mask = names == name
        print(f"| {name} | " + " | ".join(f"{found[label][mask].mean():.0%}" for label in labels) + " |")
    groups = {
        "all copies": np.ones(len(copies), bool),
        "one- and two-edit copies, no flip": ~np.isin(names, list(FLIPS)),
        "flips and rotations": np.isin(names, list(FLIPS)),
    }
    for group, mask in groups.items():
        print(f"| **{group}** | " + " | ".join(f"**{found[label][mask].mean():.1%}**" for label in labels) + " |")
    pairs = len(copies) * (n - 1)
    print(
        f"| false matches (copy vs other originals, {pairs:,} pairs) | "
        + " | ".join(f"{false_pairs[label]}" for label in labels)
        + " |"
    )
    pair_dist = pdq.popcount_distance(bank[:, None, :], bank[None, :, :])
    off_diagonal = pair_dist[~np.eye(n, dtype=bool)]
    print(
        f"\noriginals pairwise PDQ distance: min {off_diagonal.min()}, mean {off_diagonal.mean():.0f}"
        f" (pairs within {RADIUS}: {(off_diagonal <= RADIUS).sum() // 2})"
    )


if __name__ == "__main__":
    main()
