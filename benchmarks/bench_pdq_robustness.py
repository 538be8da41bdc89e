"""Robustness on real photos: the share of edited copies found within the radius, and false matches.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_robustness.py [--photos DIR] [--windows 250]

The bank holds each original photo hashed with the reference pipeline (safeset `exact`, which equals Meta's
`pdq-photo-hasher`). Each copy is hashed as a query by:
  reference    the reference pipeline, one query per image (what hash-sharing tools do today);
  safeset      safeset fast with trimmed borders, the 8 rotations/flips and the 512-px canvas (the scan's default);
  robust       safeset with `--pdq-robust`: also the re-padded frames of signals/pdq_variants.py, the flips
               from mirrored pixels, and the 512-px canvas's flips.
A copy is found when some query is within the radius of its own original. `--radii` adds the same shares and
false matches at larger radii (what a larger radius buys and costs); `--oracle` adds upper bounds for crops
(re-padded by exactly the sides that were cut) and caption bands (filled knowing exactly where the band is).

False matches are measured on many distinct pictures: `--windows` random windows of each photo (40-90 % of each
side at a random offset, scaled to a 400-px long side, JPEG q85). Windows of the same photo overlap, so only
pairs from different photos count: every window's queries (all variants of a configuration) against every other
photo's windows hashed as a bank (reference pipeline), plus every edited copy against the other originals.
Photos whose reference hash already moves more than 20 bits under a plain JPEG re-encode (q75) are reported
apart ("fragile"): the targets are stated on the others.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pdq_robustness.py --fragile 16

None of the whole bundled photos is fragile, so `--fragile N` makes the originals N fragile pictures instead:
windows (15-50 % of each side) of the bundled photos, drawn with a fixed seed, kept when their reference hash
moves more than 20 bits under a q75 re-encode (at most N // 3 from one photo, so that several scenes count).
Windows of one photo may overlap, so in this mode a copy matching another window of its own photo is not
counted as a false match, and the distinct-window measurement is skipped (run it without `--fragile`).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import faiss
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from common_photos import jpeg_bytes, load_rgb, photo_paths, web_sized
from safeset.kinds.pdq.matcher import query_variants
from safeset.signals import pdq
from safeset.signals.pdq import Reframe
from safeset.signals.pdq_variants import ROBUST_REFRAMES, UPSCALED, UPSCALED_FLIPS

RADIUS = 31
FRAGILE_BITS = 20
Edit = Callable[[Image.Image], Image.Image]


def resize(f: float) -> Edit:
    return lambda im: im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), Image.LANCZOS)


def crop(top: float, bottom: float | None = None, left: float | None = None, right: float | None = None) -> Edit:
    """Remove these fractions of the height (top, bottom) and width (left, right); one value: every side."""
    sides = (top, top if bottom is None else bottom, top if left is None else left, top if right is None else right)

    def edit(im: Image.Image) -> Image.Image:
        top_cut, bottom_cut, left_cut, right_cut = sides
        w, h = im.size
        APPLIED.cut = sides  # what the oracle re-pad undoes
        return im.crop((round(w * left_cut), round(h * top_cut), w - round(w * right_cut), h - round(h * bottom_cut)))

    return edit


@dataclass
class Applied:
    """What the edits of one copy did that the oracle bounds need: the sides a crop cut (top, bottom, left,
    right) and the share of the height a caption band covers. Set by the edits, cleared before each copy."""

    cut: tuple[float, float, float, float] | None = None
    band: float | None = None


APPLIED = Applied()


def oracle_repad(sides: tuple[float, float, float, float]) -> Reframe:
    """The re-framing that puts every pixel of a copy cut by `sides` back where its original had it: the best
    alignment any re-pad search could find, with the lost band mirrored as the robust re-pads do."""
    top, bottom, left, right = sides
    rows, cols = 1 - top - bottom, 1 - left - right
    return Reframe("oracle re-pad", top / rows, bottom / rows, left / cols, right / cols)


def random_crop(seed: int) -> Edit:
    """Each side cut by its own fraction drawn from 1-10 % (seeded per photo)."""
    cache: dict[int, Edit] = {}

    def edit(im: Image.Image) -> Image.Image:
        key = zlib.crc32(im.tobytes()[:4096]) ^ seed  # stable across runs (str/bytes hash() is salted)
        if key not in cache:
            cache[key] = crop(*np.random.default_rng(abs(key) % 2**32).uniform(0.01, 0.10, 4))
        return cache[key](im)

    return edit


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
    APPLIED.band = band / im.height  # what the oracle fill knows
    draw.rectangle((0, im.height - band, im.width, im.height), fill="black")
    draw.text((8, im.height - band + 2), "www.example.com  SHARE  LIKE  meme text overlay", fill="white")
    return out


def jpeg(q: int) -> Edit:
    return lambda im: Image.open(io.BytesIO(jpeg_bytes(im, q))).convert("RGB")


def rotate(transpose: Image.Transpose) -> Edit:
    return lambda im: im.transpose(transpose)


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
    "border 5% white": border(0.05),
    "letterbox 16:9 black": letterbox(16 / 9),
    "letterbox 1:1 black": letterbox(1.0),
    "pillarbox 9:16 black": letterbox(9 / 16),
    "brightness +30%": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "brightness -30%": lambda im: ImageEnhance.Brightness(im).enhance(0.7),
    "contrast +40%": lambda im: ImageEnhance.Contrast(im).enhance(1.4),
    "contrast -40%": lambda im: ImageEnhance.Contrast(im).enhance(0.6),
    "text overlay": caption,
    "resize 0.5x + jpeg q50": lambda im: jpeg(50)(resize(0.5)(im)),
    "letterbox 16:9 + jpeg q70": lambda im: jpeg(70)(letterbox(16 / 9)(im)),
    "border 5% + brightness +30%": lambda im: ImageEnhance.Brightness(border(0.05)(im)).enhance(1.3),
    "text overlay + resize 0.5x": lambda im: resize(0.5)(caption(im)),
    "contrast +40% + jpeg q50": lambda im: jpeg(50)(ImageEnhance.Contrast(im).enhance(1.4)),
    # crops, per side
    "crop 1%": crop(0.01),
    "crop 2%": crop(0.02),
    "crop 3%": crop(0.03),
    "crop 5%": crop(0.05),
    "crop 7%": crop(0.07),
    "crop 10%": crop(0.10),
    "crop 5% top only": crop(0.05, 0, 0, 0),
    "crop 1-10% random sides": random_crop(1),
    "crop 1-10% random sides (2)": random_crop(2),
    "crop 2% + jpeg q50": lambda im: jpeg(50)(crop(0.02)(im)),
    "crop 2% + text overlay": lambda im: caption(crop(0.02)(im)),
    # flips and rotations
    "mirror": ImageOps.mirror,
    "flip vertical": ImageOps.flip,
    "rotate 90": rotate(Image.Transpose.ROTATE_90),
    "rotate 180": rotate(Image.Transpose.ROTATE_180),
    "rotate 270": rotate(Image.Transpose.ROTATE_270),
    "mirror + resize 0.75x": lambda im: resize(0.75)(ImageOps.mirror(im)),
    "mirror + letterbox 1:1": lambda im: letterbox(1.0)(ImageOps.mirror(im)),
    "rotate 90 + jpeg q50": lambda im: jpeg(50)(im.transpose(Image.Transpose.ROTATE_90)),
}
GROUPS = {
    "one- and two-edit copies (no crop, no flip)": lambda name: not name.startswith(("crop", "mirror", "flip", "rot")),
    "crops 1-10% per side (alone or with one more edit)": lambda name: name.startswith("crop"),
    "flips and rotations (alone or with one more edit)": lambda name: name.startswith(("mirror", "flip", "rot")),
}
CONFIGS = {
    "reference": dict(mode="exact"),
    "safeset": dict(mode="fast", dihedral=True, unletterbox=True, reframes=(UPSCALED,)),
    "robust": dict(
        mode="fast", dihedral=True, unletterbox=True, reframes=(UPSCALED_FLIPS, *ROBUST_REFRAMES), pixel_flips=True
    ),
}


def queries_of(blobs: list[bytes], config: dict) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """All query hashes of the images under a configuration, their image, variant names and the CPU seconds."""
    pdq.hash_images(blobs[:2], **config)  # load the compiled kernels before timing
    start = time.process_time()
    hashes = pdq.hash_images(blobs, **config)
    queries, owners, names = query_variants(hashes)
    return queries, owners, names, time.process_time() - start


def closest_other(
    queries: np.ndarray, owner_photo: np.ndarray, bank: np.ndarray, bank_photo: np.ndarray, radii: list[int]
) -> tuple[dict[int, int], int]:
    """({radius: query x bank pairs within it}, closest distance) over pairs from different photos, by photo."""
    within, closest = dict.fromkeys(radii, 0), 256
    for photo in np.unique(bank_photo):
        index = faiss.IndexBinaryFlat(256)
        index.add(np.ascontiguousarray(bank[bank_photo != photo]))
        mine = np.ascontiguousarray(queries[owner_photo == photo])
        if not len(mine):
            continue
        distances, _ = index.search(mine, 1)
        closest = min(closest, int(distances.min()))
        _, found, _ = index.range_search(mine, max(radii) + 1)
        for radius in radii:
            within[radius] += int((found <= radius).sum())
    return within, closest


def band_filled(blob: bytes, band: float) -> list[bytes]:
    """The copy with its bottom `band` share of rows filled two ways: mirrored from the rows above, and the
    picture's mean colour (PNG, so no re-encoding adds to the distance)."""
    rgb = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).copy()
    rows = max(1, round(band * rgb.shape[0]))
    above = rgb[: rgb.shape[0] - rows]
    out = []
    for fill in (
        above[::-1][:rows],
        np.broadcast_to(above.reshape(-1, 3).mean(axis=0).astype(np.uint8), rgb[-rows:].shape),
    ):
        filled = rgb.copy()
        filled[-rows:][: len(fill)] = fill
        buffer = io.BytesIO()
        Image.fromarray(filled).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def oracle_bounds(copies: list, bank: np.ndarray, robust_best: np.ndarray, radii: list[int]) -> None:
    """Upper bounds for query-side fixes: crops re-padded with the exact sides that were cut, and caption bands
    filled (mirror or mean colour) knowing exactly where the band is. Prints one row per edit kind."""
    rows: dict[str, list[tuple[int, int]]] = {}
    for k, (_, photo, blob, cut, band) in enumerate(copies):
        if cut is not None:
            frame = oracle_repad(cut)
            hashes = pdq.hash_images([blob], "fast", reframes=(frame,))
            oracle = int(pdq.popcount_distance(hashes.reframed[0, 0], bank[photo]))
        elif band is not None:
            oracle = int(
                pdq.popcount_distance(pdq.hash_images(band_filled(blob, band), "fast").hashes, bank[photo]).min()
            )
        else:
            continue
        kind = "crops (oracle re-pad)" if cut is not None else "caption bands (oracle fill)"
        rows.setdefault(kind, []).append((oracle, int(robust_best[k])))
    print("\n| oracle bound | copies | " + " | ".join(f"oracle <= {r} | robust or oracle <= {r}" for r in radii) + " |")
    print("|---|---|" + "---|---|" * len(radii))
    for kind, pairs in rows.items():
        oracle = np.array([p[0] for p in pairs])
        either = np.minimum(oracle, [p[1] for p in pairs])
        cells = " | ".join(f"{(oracle <= r).mean():.1%} | {(either <= r).mean():.1%}" for r in radii)
        print(f"| {kind} | {len(pairs)} | {cells} |")


def fragile_windows(full: list[Image.Image], names: list[str], wanted: int, side: int) -> tuple[list, list, list]:
    """Up to `wanted` windows of the photos whose reference hash moves > FRAGILE_BITS under a q75 re-encode."""
    rng = np.random.default_rng(1)
    per_photo = max(1, wanted // 3)
    windows, parents, labels = [], [], []
    for parent, im in enumerate(full):
        candidates = []
        for _ in range(150):
            fx, fy = rng.uniform(0.15, 0.5, 2)
            x0, y0 = rng.uniform(0, 1 - fx) * im.width, rng.uniform(0, 1 - fy) * im.height
            box = (int(x0), int(y0), int(x0 + fx * im.width), int(y0 + fy * im.height))
            candidates.append(web_sized(im.crop(box), side))
        before = pdq.hash_images([jpeg_bytes(w, 90) for w in candidates], "exact").hashes
        after = pdq.hash_images([jpeg_bytes(w, 75) for w in candidates], "exact").hashes
        moved = np.flatnonzero(pdq.popcount_distance(before, after) > FRAGILE_BITS)[:per_photo]
        windows += [candidates[k] for k in moved]
        parents += [parent] * len(moved)
        labels += [f"{names[parent]} window {k}" for k in moved]
    return windows[:wanted], parents[:wanted], labels[:wanted]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, help="a folder of further real photos to include")
    parser.add_argument("--side", type=int, default=480, help="long side of the originals, as on the web")
    parser.add_argument("--windows", type=int, default=250, help="random windows per photo for false matches")
    parser.add_argument("--fragile", type=int, default=0, help="originals: this many fragile windows of the photos")
    parser.add_argument("--radii", type=int, nargs="*", default=[], help="also report found and false at these radii")
    parser.add_argument("--oracle", action="store_true", help="also the oracle bounds for crops and caption bands")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    paths = photo_paths(args.photos)
    full = [load_rgb(p) for p in paths]
    if args.fragile:
        originals, parent_list, original_names = fragile_windows(full, [p.name for p in paths], args.fragile, args.side)
        parents = np.array(parent_list)
    else:
        originals = [web_sized(im, args.side) for im in full]
        parents, original_names = np.arange(len(full)), [p.name for p in paths]
    bank_blobs = [jpeg_bytes(im, 90) for im in originals]
    bank = pdq.hash_images(bank_blobs, "exact").hashes
    n = len(originals)
    bank_quality = pdq.hash_images(bank_blobs, "exact").quality
    reencoded = pdq.hash_images([jpeg_bytes(Image.open(io.BytesIO(b)).convert("RGB"), 75) for b in bank_blobs], "exact")
    moves = pdq.popcount_distance(reencoded.hashes, bank)
    fragile = moves > FRAGILE_BITS
    copies: list[tuple[str, int, bytes, tuple | None, float | None]] = []  # name, original, bytes, crop, band
    for name, edit in EDITS.items():
        for i, im in enumerate(originals):
            APPLIED.cut = APPLIED.band = None
            blob = jpeg_bytes(edit(im), 85)
            copies.append((name, i, blob, APPLIED.cut, APPLIED.band))
    radii = sorted({RADIUS, *args.radii})
    blobs = [c[2] for c in copies]
    owner_photo = np.array([c[1] for c in copies])
    names = np.array([c[0] for c in copies])
    found: dict[str, np.ndarray] = {}
    best: dict[str, np.ndarray] = {}  # per copy: the closest query to its own original (bits)
    variant_found: dict[str, dict[str, int]] = {}
    copy_false: dict[str, dict[int, int]] = {}
    cpu: dict[str, float] = {}
    per_config_queries: dict[str, int] = {}
    for label, config in CONFIGS.items():
        queries, owners, variant_names, seconds = queries_of(blobs, config)
        cpu[label] = seconds
        per_config_queries[label] = len(queries)
        dist = pdq.popcount_distance(queries[:, None, :], bank[None, :, :])  # (queries, originals)
        hit = dist <= RADIUS
        per_copy = np.full((len(copies), n), 256)
        np.minimum.at(per_copy, owners, dist)
        best[label] = per_copy[np.arange(len(copies)), owner_photo]
        found[label] = best[label] <= RADIUS
        own_hit = hit[np.arange(len(queries)), owner_photo[owners]]
        variant_found[label] = {}
        for q in np.flatnonzero(own_hit):
            variant_found[label][variant_names[q]] = variant_found[label].get(variant_names[q], 0) + 1
        per_copy[parents[owner_photo][:, None] == parents[None, :]] = 256  # its own photo (or window of it)
        copy_false[label] = {radius: int((per_copy <= radius).sum()) for radius in radii}
    # Distinct pictures: windows of each photo.
    rng = np.random.default_rng(12)
    window_blobs, window_photo = [], []
    for i, im in enumerate(full):
        w, h = im.size
        for _ in range(0 if args.fragile else args.windows):
            cw, ch = int(w * rng.uniform(0.4, 0.9)), int(h * rng.uniform(0.4, 0.9))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            window_blobs.append(jpeg_bytes(web_sized(im.crop((x, y, x + cw, y + ch)), 400), 85))
            window_photo.append(i)
    window_photo_arr = np.array(window_photo)
    window_bank = pdq.hash_images(window_blobs, "exact").hashes
    image_pairs = sum(int((window_photo_arr != p).sum()) * int((window_photo_arr == p).sum()) for p in range(n))
    false_rows = {label: (dict.fromkeys(radii, 0), 256, 0) for label in CONFIGS}
    for label, config in CONFIGS.items() if window_blobs else ():
        queries, owners, _, _ = queries_of(window_blobs, config)
        within, closest = closest_other(queries, window_photo_arr[owners], window_bank, window_photo_arr, radii)
        false_rows[label] = (within, closest, len(queries))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load"
        f" {os.getloadavg()[0]:.1f}; {n} real photos (long side {args.side} px), {len(EDITS)} edits,"
        f" {len(copies)} copies; PDQ radius {RADIUS}\n"
    )
    print(
        f"reference hash moved by a JPEG q75 re-encode: median {np.median(moves):.0f}, max {moves.max()} bits; photos"
        f" moving > {FRAGILE_BITS} bits (fragile): "
        + (
            ", ".join(
                f"{original_names[i]} ({moves[i]} bits, quality {bank_quality[i]})" for i in np.flatnonzero(fragile)
            )
            or "none"
        )
        + f"; PDQ quality of the originals: min {bank_quality.min()}, median {np.median(bank_quality):.0f}"
        + f" ({int((bank_quality < 50).sum())} below 50, which hash-sharing programmes usually drop)\n"
    )
    labels = list(CONFIGS)
    print("| edit | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name in EDITS:
        mask = names == name
        print(f"| {name} | " + " | ".join(f"{found[label][mask].mean():.0%}" for label in labels) + " |")
    solid = ~fragile[owner_photo]
    group_of = {group: np.array([member(str(x)) for x in names]) for group, member in GROUPS.items()}
    for group, in_group in group_of.items():
        for tag, mask in (("", in_group & solid), (", fragile photos", in_group & ~solid)):
            if not mask.any():
                continue
            print(
                f"| **{group}{tag}** ({mask.sum()}) | "
                + " | ".join(f"**{found[label][mask].mean():.1%}**" for label in labels)
                + " |"
            )
    print(
        f"| copies vs other originals ({len(copies) * (n - 1):,} pairs): false matches | "
        + " | ".join(str(copy_false[label][RADIUS]) for label in labels)
        + " |"
    )
    if window_blobs:
        print(
            f"| distinct windows ({len(window_blobs):,} images, {image_pairs:,} image pairs): false matches | "
            + " | ".join(str(false_rows[label][0][RADIUS]) for label in labels)
            + " |"
        )
        print(
            "| distinct windows: closest pair (bits) | "
            + " | ".join(str(false_rows[label][1]) for label in labels)
            + " |"
        )
    print(
        "| queries per image | "
        + " | ".join(f"{per_config_queries[label] / len(copies):.1f}" for label in labels)
        + " |"
    )
    print(
        "| query hashing, copies per CPU-second | "
        + " | ".join(f"{len(copies) / cpu[label]:.0f}" for label in labels)
        + " |"
    )
    print(
        "\nvariants that found copies (robust): "
        + ", ".join(f"{k} {v}" for k, v in sorted(variant_found["robust"].items(), key=lambda kv: -kv[1]))
    )
    if len(radii) > 1:
        print_radius_sweep(radii, group_of, solid, best, copy_false, false_rows)
    if args.oracle:
        oracle_bounds(copies, bank, best["robust"], radii)


def print_radius_sweep(
    radii: list[int], group_of: dict[str, np.ndarray], solid: np.ndarray, best: dict, copy_false: dict, false_rows: dict
) -> None:
    """Found and false matches at each radius: what a larger radius would buy, and what it would cost."""
    print(
        "\n| radius | config | "
        + " | ".join(GROUPS)
        + " | false: copies vs other originals | false: distinct windows |"
    )
    print("|---|---|" + "---|" * (len(GROUPS) + 2))
    for radius in radii:
        for label in CONFIGS:
            shares = [f"{(best[label][in_group & solid] <= radius).mean():.1%}" for in_group in group_of.values()]
            print(
                f"| {radius} | {label} | "
                + " | ".join(shares)
                + f" | {copy_false[label][radius]} | {false_rows[label][0][radius]} |"
            )


if __name__ == "__main__":
    main()
