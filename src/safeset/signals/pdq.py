"""PDQ perceptual hashing (Meta's 256-bit image hash), vectorised with numpy, conforming to the reference.

The reference pipeline (Meta's C++ core) is: luma from RGB; a "Jarosz" filter, i.e. two passes of a box filter
along rows and then columns with windows of about 1/128 of each side; decimation to 64x64 by picking pixels at
cell centres; a quality score from the 64x64 gradients; a 16x16 block of the 2-D DCT (frequencies 1..16); and
one bit per coefficient: above the median or not.

Everything before the DCT is linear and separable, so the whole blur-and-decimate is two small matrices:
`64x64 = R @ luma @ C.T`, with R (64 x height) and C (64 x width) built once per side length. Two BLAS calls
replace four running-sum passes over every pixel. The result equals the reference's float32 running sums up
to rounding (~1e-3 in coefficient units); a bit can only differ when the two coefficients either side of the
median are closer than that, so `exact` mode checks that gap (and the quality score's integer boundaries) and,
when it is too small to be sure, recomputes the image with the reference's float32 operation order, which
reproduces the C++ core bit for bit.

Two pixel pipelines feed the core:
- `exact`: Pillow decodes the full image, converts it to RGB, and, like the reference command-line hasher
  (`pdq-photo-hasher`), images with a side above 512 px are first resized to 512x512 by nearest neighbour
  (CImg's sampling: source index floor(i * n / 512)). This reproduces that tool's hashes.
- `fast`: JPEGs are decoded as their luma channel only (no chroma upsampling or colour conversion) and, when
  large, at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling, never below 256 px on the short side. The
  blur-and-decimate weights for the full-size grid are summed over each block of the reduced grid, so the
  hash stays that of the canonical image rather than of a smaller one (hashing a smaller image directly
  changes the filter windows and moves the hash by many bits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from safeset.signals import pdq_kernels
from safeset.signals.blas import single_threaded_blas
from safeset.signals.images import DEFAULT_MAX_PIXELS, ImageRefused, decode_problem, open_image

HASH_BYTES = 32
HASH_BITS = 256
MIN_HASHABLE_DIM = 5  # the reference returns an all-zero hash with quality 0 below this
REFERENCE_RESIZE = 512  # pdq-photo-hasher resizes images with a larger side to 512x512 before hashing
FAST_MIN_SIDE = 256  # the fast path never decodes a JPEG below this many pixels on its short side
MODES = ("exact", "fast")
DEFAULT_MODE = "fast"

#: The 8 dihedral transforms, in the reference's order.
DIHEDRAL_NAMES = ("original", "rotate90", "rotate180", "rotate270", "flipx", "flipy", "flipplus1", "flipminus1")

# The reference builds the DCT matrix as float32(float32 scale * double cosine): the product is taken in double.
_DCT = (
    np.float64(np.float32(np.sqrt(2.0 / 64)))
    * np.cos((np.pi / 2.0 / 64) * np.arange(1, 17)[:, None] * (2 * np.arange(64)[None, :] + 1))
).astype(np.float32)
_DCT64 = _DCT.astype(np.float64)


@dataclass(frozen=True)
class Reframe:
    """A query-side re-framing of the picture: each side grown (positive fraction, the new margin filled by
    mirroring the picture at its edge) or cut (negative fraction) by that fraction of its length; or, with
    `canvas`, the picture hashed as if linearly resized to canvas x canvas pixels.

    A copy cropped by c per side is, to PDQ's low frequencies, its original with the outer band lost: growing it
    back by c/(1-2c) per side puts every remaining pixel where the original had it, so the DCT's basis functions
    line up again; the mirrored margin stands in for the lost band. Computed from the decoded pixels already in
    memory (a different weight band per side), so a variant costs a blur-and-decimate, not a decode.

    A downscaled copy differs from its original in the blur: the reference's box window is about side / 128
    pixels, so a 480-px original is blurred over 4 pixels and a 120-px copy not at all, and fine textures then
    alias differently. The reference resizes any original larger than 512 px to 512 x 512 first; hashing a smaller
    copy on that canvas (`canvas=512`, the copy linearly interpolated) blurs it as the original was blurred. Only
    pictures with both sides at most `canvas` get this variant (larger ones are already hashed on that canvas).
    """

    name: str
    top: float = 0.0
    bottom: float = 0.0
    left: float = 0.0
    right: float = 0.0
    canvas: int = 0
    flips: bool = False  # with `dihedral`, also this frame's 8 rotations/flips (from the pixels with `pixel_flips`)

    def __post_init__(self) -> None:
        if self.canvas and (self.top or self.bottom or self.left or self.right):
            raise ValueError(f"re-framing {self.name!r}: a canvas and grown or cut sides do not combine")

    def applies(self, rows: int, cols: int) -> bool:
        """Whether this re-framing changes a picture of this canonical size (a canvas only enlarges)."""
        return not self.canvas or (max(rows, cols) <= self.canvas and min(rows, cols) < self.canvas)


@dataclass
class PdqHashes:
    """PDQ of a batch of images. Rows whose image could not be hashed have valid=False and a reason."""

    hashes: np.ndarray  # (n, 32) uint8, big-endian bit order as in the reference's hex form
    quality: np.ndarray  # (n,) int16, 0..100
    valid: np.ndarray  # (n,) bool
    errors: list[str | None]
    decoded: np.ndarray | None = None  # (n,) bool: the bytes decoded (errors of the others are decode reasons)
    dihedral: np.ndarray | None = None  # (n, 8, 32) uint8 in DIHEDRAL_NAMES order, index 0 == hashes
    trimmed: np.ndarray | None = None  # (n, 32): hash after removing uniform borders (unletterboxing)
    trimmed_valid: np.ndarray | None = None  # (n,) bool: borders were found and removed
    trimmed_dihedral: np.ndarray | None = None  # (n, 8, 32)
    pixel_flips: bool = False  # dihedral variants from mirrored pixels (see hash_images)
    reframes: tuple[Reframe, ...] = ()
    reframed: np.ndarray | None = None  # (n, len(reframes), 32): one hash per re-framing, in that order
    reframed_valid: np.ndarray | None = None  # (n, len(reframes)) bool: the re-framing applied to that image
    reframed_dihedral: np.ndarray | None = None  # (n, len(reframes), 8, 32): rotations/flips of frames with flips
    reframed_dct: np.ndarray | None = None  # (n, len(reframes), 16, 16)

    def __len__(self) -> int:
        return len(self.valid)

    def has_reframes(self, wanted: tuple[Reframe, ...]) -> bool:
        return set(wanted) <= set(self.reframes)

    def hex(self, i: int) -> str:
        return bytes(self.hashes[i]).hex()


# ----------------------------------------------------------------------------------------------------------------
# The core: luma -> 64x64 -> DCT -> bits


def jarosz_window(old: int, new: int = 64) -> int:
    """Box-filter window for one pass along a side of `old` pixels (rounded up: half of old/new)."""
    return (old + 2 * new - 1) // (2 * new)


def _box_bounds(n: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive [lo, hi] of the reference's box window at each position (clipped at the edges)."""
    half = (window + 2) // 2
    positions = np.arange(n)
    return np.maximum(positions - (window - half), 0), np.minimum(positions + half - 1, n - 1)


@lru_cache(maxsize=1024)
def blur_decimate_weights(n: int) -> np.ndarray:
    """(64, n) float64: the rows of decimate . box . box for a side of n pixels.

    Row i is the weight of each input pixel in output pixel i after two box passes (each averaging over its
    clipped window) and the pick of pixel floor((i + 0.5) * n / 64).
    """
    window = jarosz_window(n)
    lo, hi = _box_bounds(n, window)
    count = (hi - lo + 1).astype(np.float64)
    picks = ((np.arange(64) + 0.5) * n / 64).astype(np.int64)
    # Second pass: output pixel picks[i] averages inputs lo..hi of the first pass.
    first = np.zeros((64, n))
    for i, p in enumerate(picks):
        first[i, lo[p] : hi[p] + 1] = 1.0 / count[p]
    # First pass: pixel c contributes 1/count(r) to every r whose window holds c; with prefix sums over r.
    spread = np.concatenate([np.zeros((64, 1)), np.cumsum(first / count, axis=1)], axis=1)
    half = (window + 2) // 2
    r_lo = np.maximum(np.arange(n) - (half - 1), 0)
    r_hi = np.minimum(np.arange(n) + (window - half), n - 1)
    weights = spread[:, r_hi + 1] - spread[:, r_lo]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=1024)
def reference_resize_index(n: int, other: int) -> np.ndarray | None:
    """Source indices of the reference tool's nearest-neighbour resize to 512, or None when it keeps size."""
    if n <= REFERENCE_RESIZE and other <= REFERENCE_RESIZE:
        return None
    return (np.arange(REFERENCE_RESIZE) * n) // REFERENCE_RESIZE


def luma_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Float luma exactly as the reference's Python binding computes it (double, then float32)."""
    return (rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114).astype(np.float32)


def downsample_64(luma: np.ndarray) -> np.ndarray:
    """64x64 float64 blur-and-decimate of a luma array (the reference copies a 64x64 input unchanged)."""
    rows, cols = luma.shape
    if rows == 64 and cols == 64:
        return luma.astype(np.float64)
    return (blur_decimate_weights(rows) @ luma.astype(np.float64)) @ blur_decimate_weights(cols).T


def dct_16(block64: np.ndarray) -> np.ndarray:
    """(..., 16, 16) DCT coefficients 1..16 of (..., 64, 64) blocks.

    A batch is two large matrix products (all blocks' rows at once, then all columns), not two per block.
    """
    if block64.ndim == 2:
        return _DCT64 @ block64 @ _DCT64.T
    lead = block64.shape[:-2]
    flat = np.ascontiguousarray(block64).reshape(-1, 64)
    right = (flat @ _DCT64.T).reshape(-1, 64, 16)  # X @ D.T for every block
    left = np.ascontiguousarray(right.transpose(0, 2, 1)).reshape(-1, 64) @ _DCT64.T  # (D @ X @ D.T).T rows
    return left.reshape(-1, 16, 16).transpose(0, 2, 1).reshape(*lead, 16, 16)


def quality_scores(block64: np.ndarray) -> np.ndarray:
    """Reference quality of (..., 64, 64) blocks: truncated scaled gradients summed, /90, capped at 100."""
    block = block64.astype(np.float32)
    scale, norm = np.float32(100), np.float32(255)
    down = np.trunc(((block[..., :-1, :] - block[..., 1:, :]) * scale) / norm)
    across = np.trunc(((block[..., :, :-1] - block[..., :, 1:]) * scale) / norm)
    total = np.abs(down).sum(axis=(-2, -1)).astype(np.int64) + np.abs(across).sum(axis=(-2, -1)).astype(np.int64)
    return np.minimum(total // 90, 100).astype(np.int16)


def bits_from_dct(dct: np.ndarray) -> np.ndarray:
    """(..., 32) uint8 hashes: a bit per coefficient above the (lower) median, in the reference's layout.

    Bit k = 16 * row + col of the 16x16 block is bit k of a 256-bit number whose hex form is the reference's;
    as bytes, most significant first, that is the flattened block reversed and packed.
    """
    flat = dct.reshape(*dct.shape[:-2], 256)
    median = np.partition(flat, 127, axis=-1)[..., 127:128]
    return np.packbits((flat > median)[..., ::-1], axis=-1)


# The sign patterns and transposes that turn the DCT of an image into the DCT of its rotations and flips.
_ROW_ODD = (np.arange(16) % 2 == 1)[:, None]
_COL_ODD = (np.arange(16) % 2 == 1)[None, :]
_DIHEDRAL_PLAN: tuple[tuple[bool, np.ndarray], ...] = (
    (False, np.ones((16, 16))),  # original
    (True, np.where(_COL_ODD, 1.0, -1.0)),  # rotate90: B[j][i] = +-A[i][j], sign by j
    (False, np.where((np.arange(16)[:, None] + np.arange(16)[None, :]) % 2 == 1, -1.0, 1.0)),  # rotate180
    (True, np.where(_ROW_ODD, 1.0, -1.0)),  # rotate270: sign by i
    (False, np.where(_ROW_ODD, 1.0, -1.0) * np.ones((16, 16))),  # flipx
    (False, np.where(_COL_ODD, 1.0, -1.0) * np.ones((16, 16))),  # flipy
    (True, np.ones((16, 16))),  # flipplus1: transpose
    (True, np.where((np.arange(16)[:, None] + np.arange(16)[None, :]) % 2 == 1, -1.0, 1.0)),  # flipminus1
)


#: (rows reversed, columns reversed) behind each plan entry's sign pattern: (-1)^frequency along an axis is that
#: axis mirrored (index k is frequency k + 1).
_PLAN_FLIPS: tuple[tuple[bool, bool], ...] = (
    (False, False),
    (False, True),
    (True, True),
    (True, False),
    (True, False),
    (False, True),
    (False, False),
    (True, True),
)


def dihedral_dcts_from_flips(flipped: np.ndarray) -> np.ndarray:
    """(..., 8, 16, 16) like `dihedral_dcts`, from the DCTs of the image with its rows and/or columns reversed in
    the pixels (`flipped[..., rows_reversed, cols_reversed, :, :]`) rather than by sign: the reference picks cell
    centres at floor((i + 0.5) * n / 64), which a mirror does not map onto itself, so on fine textures the sign
    trick drifts by tens of bits where the flipped pixels do not. Rotations by 90 degrees are exact transposes.
    """
    out = []
    for (transpose, _), (rows, cols) in zip(_DIHEDRAL_PLAN, _PLAN_FLIPS, strict=True):
        chosen = flipped[..., int(rows), int(cols), :, :]
        out.append(np.swapaxes(chosen, -1, -2) if transpose else chosen)
    return np.stack(out, axis=-3)


def dihedral_bits(dct: np.ndarray, flipped: np.ndarray | None) -> np.ndarray:
    """(..., 8, 32) hashes of the 8 rotations/flips: from the flipped pixels' DCTs when there are any
    (`dihedral_dcts_from_flips`), else from the DCT's signs (`dihedral_dcts`)."""
    return bits_from_dct(dihedral_dcts(dct) if flipped is None else dihedral_dcts_from_flips(flipped))


def dihedral_dcts(dct: np.ndarray) -> np.ndarray:
    """(..., 8, 16, 16): the DCT blocks of the 8 rotations/flips, from the original's block alone."""
    out = []
    for transpose, sign in _DIHEDRAL_PLAN:
        signed = dct * sign
        out.append(np.swapaxes(signed, -1, -2) if transpose else signed)
    return np.stack(out, axis=-3)


# ----------------------------------------------------------------------------------------------------------------
# Bit-exact fallback: the reference's float32 operations, in its order, vectorised across rows/columns.


@lru_cache(maxsize=256)
def _running_box_plan(n: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The reference box filter as one sequence of signed operands to a running float32 sum.

    Returns (operand index, operand sign, positions in the running sum where an output is written, divisor).
    """
    half = (window + 2) // 2
    index = list(range(window))
    sign = [1.0] * window
    for t in range(n - window):
        index += [window + t, t]
        sign += [1.0, -1.0]
    for t in range(half - 1):
        index.append(n - window + t)
        sign.append(-1.0)
    writes = list(range(half - 1, window)) + [window + 2 * t + 1 for t in range(n - window)]
    writes += [window + 2 * (n - window) + t for t in range(half - 1)]
    counts = list(range(half, window + 1)) + [window] * (n - window) + [window - 1 - t for t in range(half - 1)]
    return (np.array(index), np.array(sign, np.float32), np.array(writes), np.array(counts, np.float32))


def _running_box(values: np.ndarray, window: int, axis: int) -> np.ndarray:
    index, sign, writes, counts = _running_box_plan(values.shape[axis], window)
    if axis == 1:
        sums = np.add.accumulate(values[:, index] * sign, axis=1, dtype=np.float32)
        return sums[:, writes] / counts
    sums = np.add.accumulate(values[index, :] * sign[:, None], axis=0, dtype=np.float32)
    return sums[writes, :] / counts[:, None]


def reference_float32_block(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(64x64 float32, 16x16 float32 DCT) computed with the reference's float32 operation order."""
    rows, cols = luma.shape
    if rows == 64 and cols == 64:
        block = luma.astype(np.float32)
    else:
        along_rows, along_cols = jarosz_window(cols), jarosz_window(rows)
        values = luma.astype(np.float32)
        for _ in range(2):
            values = _running_box(_running_box(values, along_rows, axis=1), along_cols, axis=0)
        pick_r = ((np.arange(64) + 0.5) * rows / 64).astype(np.int64)
        pick_c = ((np.arange(64) + 0.5) * cols / 64).astype(np.int64)
        block = values[np.ix_(pick_r, pick_c)]
    # DCT with float32 products summed in order, as the reference's loops do.
    first = np.add.accumulate(_DCT[:, :, None] * block[None, :, :], axis=1, dtype=np.float32)[:, -1, :]
    second = np.add.accumulate(first[:, None, :] * _DCT[None, :, :], axis=2, dtype=np.float32)[:, :, -1]
    return block, second


def _too_close_to_call(block64: np.ndarray, dct: np.ndarray, luma_shape: tuple[int, int]) -> bool:
    """Could the reference's float32 rounding put a bit or the quality score on the other side?"""
    # Observed |float64 - reference| stays below 2e-3 coefficient units at 1600x1000 and grows with the side
    # length (running sums); the margin is about five times that.
    tolerance = 1e-3 + 4e-6 * (luma_shape[0] + luma_shape[1])
    ordered = np.sort(dct.ravel())
    if ordered[128] - ordered[127] <= tolerance:
        return True
    block = block64.astype(np.float32)
    terms = np.concatenate(
        [((block[:-1, :] - block[1:, :]) * 100 / 255).ravel(), ((block[:, :-1] - block[:, 1:]) * 100 / 255).ravel()]
    )
    near = int((np.abs(terms - np.round(terms)) < tolerance).sum())
    if near == 0:
        return False
    total = int(np.abs(np.trunc(terms)).sum())
    return total < 9000 + 90 and (total - near) // 90 != (total + near) // 90


# ----------------------------------------------------------------------------------------------------------------
# Whole images


def hash_luma(luma: np.ndarray, exact: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """(hash (32,) uint8, DCT block (16, 16), quality) of one float32 luma array, like the reference core."""
    rows, cols = luma.shape
    if rows < MIN_HASHABLE_DIM or cols < MIN_HASHABLE_DIM:
        return np.zeros(HASH_BYTES, np.uint8), np.zeros((16, 16)), 0
    block = downsample_64(luma)
    dct = dct_16(block)
    if exact and _too_close_to_call(block, dct, (rows, cols)):
        block32, dct32 = reference_float32_block(luma)
        return bits_from_dct(dct32), dct32.astype(np.float64), int(quality_scores(block32))
    return bits_from_dct(dct), dct, int(quality_scores(block))


def hash_rgb(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """PDQ of a decoded (h, w, 3) uint8 array, as the reference core would hash it."""
    bits, _, quality = hash_luma(luma_from_rgb(np.asarray(rgb)))
    return bits, quality


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB through Pillow's own conversions (CMYK inverted properly, palettes looked up,
    1-bit expanded). Passing raw CMYK or palette indices to the core is the classic mistake: 36 to 256 bits off.

    Alpha is dropped, not composited: the reference's Python hasher does the same, and banks are built with it.
    EXIF orientation is not applied, as in the reference tools; dihedral queries cover rotated copies.
    """
    return image if image.mode == "RGB" else image.convert("RGB")


def _mirror_index(length: int, before: int, after: int) -> np.ndarray:
    """Source index of each pixel of a side grown by `before`/`after` pixels (negative: cut), mirrored at the
    edges (edge pixel repeated, numpy's 'symmetric')."""
    positions = np.arange(-before, length + after)
    period = 2 * length
    folded = np.mod(positions, period)
    return np.where(folded < length, folded, period - 1 - folded)


def linear_resize_matrix(n: int, size: int) -> np.ndarray:
    """(size, n) weights of a linear-interpolation resize of n pixels to `size` (pixel centres aligned, edge
    pixels repeated): what Pillow's bilinear filter does when enlarging."""
    centres = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    share = centres - low
    matrix = np.zeros((size, n))
    np.add.at(matrix, (np.arange(size), low), 1 - share)
    np.add.at(matrix, (np.arange(size), high), share)
    return matrix


@lru_cache(maxsize=4096)
def canonical_bands(
    n: int, other: int, scale: int, before: float = 0.0, after: float = 0.0, canvas: int = 0
) -> tuple[np.ndarray, ...]:
    """Bands (see pdq_kernels.bands) of the 64 outputs along a side of n canonical pixels decoded at 1/scale.

    Without re-framing, the canonical image is what `exact` hashes (n pixels, or 512 after the reference tool's
    nearest-neighbour resize); each reduced pixel stands for a block of `scale` canonical pixels and takes the sum
    of their weights. With re-framing (fractions `before`/`after`), the canonical side is the grown or cut one,
    mapped back onto the n pixels by mirroring; with a `canvas`, it is `canvas` pixels linearly interpolated from
    the n (see `Reframe`).
    """
    grow_before, grow_after = round(before * n), round(after * n)
    if canvas:
        full = blur_decimate_weights(canvas) @ linear_resize_matrix(n, canvas)
    elif grow_before == 0 and grow_after == 0:
        index = reference_resize_index(n, other)
        if index is None:
            full = blur_decimate_weights(n)
        else:
            full = np.zeros((64, n))
            np.add.at(full.T, index, blur_decimate_weights(REFERENCE_RESIZE).T)
    else:
        length = max(MIN_HASHABLE_DIM, n + grow_before + grow_after)
        source = _mirror_index(n, grow_before, length - n - grow_before)
        full = np.zeros((64, n))
        np.add.at(full.T, source, blur_decimate_weights(length).T)
    reduced = -(-n // scale)
    padded = np.zeros((64, reduced * scale))
    padded[:, :n] = full
    return pdq_kernels.bands(padded.reshape(64, reduced, scale).sum(axis=2))


@lru_cache(maxsize=4096)
def mirrored_bands(
    n: int, other: int, scale: int, before: float = 0.0, after: float = 0.0, canvas: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The bands of `canonical_bands`, and the same for the side read backwards (a mirrored picture, re-framed
    the same way)."""
    start, weights = canonical_bands(n, other, scale, before, after, canvas)
    reduced = -(-n // scale)
    back_start = reduced - start - weights.shape[1]
    back_weights = np.ascontiguousarray(weights[:, ::-1])
    back_start.setflags(write=False)
    back_weights.setflags(write=False)  # read-only like the forward bands: one compiled kernel for both
    return (start, weights), (back_start, back_weights)


def fast_weights(n: int, other: int, scale: int) -> np.ndarray:
    """(64, ceil(n / scale)) float32 dense weights on a grid decoded at 1/scale (the numpy form of the bands)."""
    start, weights = canonical_bands(n, other, scale)
    dense = np.zeros((64, -(-n // scale)), np.float32)
    index = start[:, None] + np.arange(weights.shape[1])[None, :]
    np.put_along_axis(dense, index, weights.astype(np.float32), axis=1)
    return dense


@dataclass
class _Pixels:
    """Decoded pixels on a grid that is the canonical image (scale 1) or its 1/scale reduction (fast path)."""

    values: np.ndarray  # uint8 (rows', cols') luma, or (rows', cols', 3) RGB in exact mode
    rows: int  # canonical size, before any reduction
    cols: int
    scale: int

    def _bands(self, bands: Callable[..., Any], frame: Reframe | None) -> tuple[Any, Any]:
        """`bands` (canonical_bands or mirrored_bands) along the rows and along the columns of this grid, as the
        frame re-frames each side."""
        if frame is None:
            return bands(self.rows, self.cols, self.scale), bands(self.cols, self.rows, self.scale)
        along_rows = bands(self.rows, self.cols, self.scale, frame.top, frame.bottom, frame.canvas)
        return along_rows, bands(self.cols, self.rows, self.scale, frame.left, frame.right, frame.canvas)

    def block(self, out: np.ndarray, frame: Reframe | None = None) -> None:
        """Write the 64x64 block of this grid (optionally re-framed) into out."""
        (row_start, row_weights), (col_start, col_weights) = self._bands(canonical_bands, frame)
        kernel = pdq_kernels.decimate_rgb if self.values.ndim == 3 else pdq_kernels.decimate_gray
        kernel(self.values, row_start, row_weights, col_start, col_weights, out)

    def flipped_blocks(self, out: np.ndarray, frame: Reframe | None = None) -> None:
        """out[r, c] (2, 2, 64, 64): the blocks of this grid (optionally re-framed) with rows (r) and/or columns (c)
        reversed, from two row passes and four column passes (reversing the pixels is reversing the weight bands)."""
        row_bands, col_bands = self._bands(mirrored_bands, frame)
        kernel = pdq_kernels.decimate_rgb if self.values.ndim == 3 else pdq_kernels.decimate_gray
        for r, (r_start, r_weights) in enumerate(row_bands):
            for c, (c_start, c_weights) in enumerate(col_bands):
                kernel(self.values, r_start, r_weights, c_start, c_weights, out[r, c])

    def luma(self) -> np.ndarray:
        return luma_from_rgb(self.values) if self.values.ndim == 3 else self.values.astype(np.float32)


class _DecodeBuffer:
    """The fast path's decode target, reused across a batch (replaced, never resized: views of it may live)."""

    def __init__(self) -> None:
        self._array = np.empty(0, np.uint8)

    def at_least(self, size: int) -> np.ndarray:
        if len(self._array) < size:
            self._array = np.empty(max(size, 2 * len(self._array)), np.uint8)
        return self._array


def _fast_scale(width: int, height: int) -> int:
    """Largest DCT scale (1/8, 1/4, 1/2) that keeps the short side at FAST_MIN_SIDE pixels or more."""
    short = min(width, height)
    return next(s for s in (8, 4, 2, 1) if short // s >= FAST_MIN_SIDE or s == 1)


def _decode_jpeg(blob: bytes, mode: str, max_pixels: int, buffer: _DecodeBuffer) -> _Pixels | None:
    """Baseline/progressive YCbCr and grey JPEGs through libjpeg-turbo (simplejpeg), into a reused buffer: `fast`
    asks for the luma channel alone at the DCT scale, `exact` for full-size RGB (the same pixels as Pillow's
    decode, checked on every reference file and the benchmark's photos). None when it cannot (other colour
    spaces, damaged data): Pillow then decodes, and gives the reason if the bytes are bad."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(blob)
    except ValueError:
        return None
    if width * height > max_pixels:
        raise ImageRefused(f"image of {width}x{height} pixels exceeds the {max_pixels}-pixel limit; not decoded")
    if colorspace not in ("Gray", "YCbCr") or min(width, height) < 1:
        return None
    scale = _fast_scale(width, height) if mode == "fast" else 1
    rows, cols = -(-height // scale), -(-width // scale)
    channels, space = (1, "GRAY") if mode == "fast" else (3, "RGB")
    target = buffer.at_least(rows * cols * channels)
    try:
        # strict: libjpeg's warnings (premature end of data, corrupt entropy data) are errors, as in Pillow.
        pixels = simplejpeg.decode_jpeg(
            blob, space, min_height=rows, min_width=cols, min_factor=scale, buffer=target, strict=True
        )
    except ValueError:
        return None
    if pixels.shape != (rows, cols, channels):  # a scale other than the one asked for: let Pillow decode
        return None
    return _Pixels(pixels[:, :, 0] if channels == 1 else pixels, height, width, scale)


def _decode_with_pillow(image: Image.Image, mode: str) -> _Pixels:
    width, height = image.size
    if mode == "exact":
        return _Pixels(np.asarray(to_rgb(image)), height, width, 1)
    scale = 1
    if image.format == "JPEG":
        scale = _fast_scale(width, height)
        # Asking for floor(side / scale) makes Pillow choose exactly this DCT scale; mode "L" asks libjpeg
        # for the luma channel alone (JPEG's Y uses the same 0.299/0.587/0.114 weights as PDQ).
        drafted = image.draft("L", (max(1, width // scale), max(1, height // scale)))
        scale = round(width / drafted[1][2]) if drafted else 1
    gray = image if image.mode == "L" else to_rgb(image).convert("L")
    return _Pixels(np.asarray(gray), height, width, scale)


def _decode(blob: bytes, mode: str, max_pixels: int, buffer: _DecodeBuffer) -> _Pixels:
    """Decode untrusted bytes once: this decode is also the image check (every entropy-coded byte is read)."""
    if blob[:3] == b"\xff\xd8\xff" and (pixels := _decode_jpeg(blob, mode, max_pixels, buffer)):
        return pixels
    with open_image(blob, max_pixels) as image:
        pixels = _decode_with_pillow(image, mode)
    return pixels


def _trimmed(pixels: _Pixels) -> _Pixels | None:
    """The same grid without uniform borders; the canonical size shrinks by whole reduced pixels."""
    box = uniform_border_box(pixels.luma())
    if box is None:
        return None
    top, bottom, left, right = box
    s = pixels.scale
    kept_rows = min(pixels.rows, bottom * s) - top * s
    kept_cols = min(pixels.cols, right * s) - left * s
    return _Pixels(pixels.values[top:bottom, left:right], kept_rows, kept_cols, s)


def uniform_border_box(
    luma: np.ndarray, tolerance: float = 12.0, min_keep: float = 0.3, ringing: int = 8
) -> tuple[int, ...] | None:
    """(top, bottom, left, right) bounds of the image inside uniform bars along its edges, or None.

    Letterbox and pillarbox bars and plain frames are what web copies add. An edge row or column belongs to a
    bar when every pixel in it is within `tolerance` luma levels of the median of the outermost line (so JPEG
    ringing along the bar does not stop the trim, while any picture content does). Bars are removed only if at
    least `min_keep` of each side remains and one is at least 2 pixels thick. Next to a bar found that way, up to
    `ringing` more lines (one JPEG block) count as the bar when 90 % of their pixels are: where the bar ends inside
    a block, the picture's ringing spoils the bar's last lines (measured: 5 more bordered copies found of 8 missed,
    one lost where a dark photo's own background was trimmed, no false match among 15 M pairs).
    """
    rows, cols = luma.shape
    if rows < 16 or cols < 16:
        return None
    luma = luma.astype(np.float32, copy=False)

    def thickness(lines: np.ndarray) -> int:
        bar = np.median(lines[0])
        close = np.abs(lines - bar).max(axis=1) <= tolerance
        strict = len(close) if close.all() else int(np.argmin(close))
        if strict < 2:
            return strict
        # JPEG ringing: the block straddling the picture's edge blurs the bar's last lines. Within one block of
        # a bar already found, a line whose pixels are mostly the bar's is still the bar.
        loose = strict
        for line in lines[strict : strict + ringing]:
            if np.mean(np.abs(line - bar) <= tolerance) < 0.9:
                break
            loose += 1
        return loose

    top, bottom = thickness(luma), thickness(luma[::-1])
    left, right = thickness(luma.T), thickness(luma.T[::-1])
    if top + bottom > rows * (1 - min_keep) or left + right > cols * (1 - min_keep):
        return None
    if max(top, bottom, left, right) < 2:
        return None
    return top, rows - bottom, left, cols - right


def _too_close_batch(blocks: np.ndarray, dcts: np.ndarray, sides: np.ndarray, chunk: int = 256) -> np.ndarray:
    """`_too_close_to_call` for a batch: (n,) bool. `sides` is rows + cols of each hashed (canonical) image."""
    close = np.zeros(len(blocks), dtype=bool)
    for lo in range(0, len(blocks), chunk):
        block = blocks[lo : lo + chunk].astype(np.float32)
        tolerance = 1e-3 + 4e-6 * sides[lo : lo + chunk]
        ordered = np.partition(dcts[lo : lo + chunk].reshape(len(block), 256), (127, 128), axis=1)
        gap_close = ordered[:, 128] - ordered[:, 127] <= tolerance
        terms = np.concatenate(
            [
                ((block[:, :-1, :] - block[:, 1:, :]) * 100 / 255).reshape(len(block), -1),
                ((block[:, :, :-1] - block[:, :, 1:]) * 100 / 255).reshape(len(block), -1),
            ],
            axis=1,
        )
        near = (np.abs(terms - np.round(terms)) < tolerance[:, None]).sum(axis=1)
        total = np.abs(np.trunc(terms)).sum(axis=1).astype(np.int64)
        quality_close = (near > 0) & (total < 9000 + 90) & ((total - near) // 90 != (total + near) // 90)
        close[lo : lo + chunk] = gap_close | quality_close
    return close


def _exact_fallback(blob: bytes, max_pixels: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Hash, DCT and quality in the reference's float32 operation order (bit-for-bit with the C++ core), for the
    rare image where float rounding could decide a bit or the quality: decoded again rather than kept."""
    with open_image(blob, max_pixels) as image:
        luma = luma_from_rgb(np.asarray(to_rgb(image)))
    rows, cols = luma.shape
    index = reference_resize_index(rows, cols)
    if index is not None:
        luma = luma[index][:, reference_resize_index(cols, rows)]
    block32, dct32 = reference_float32_block(luma)
    return bits_from_dct(dct32), dct32.astype(np.float64), int(quality_scores(block32))


def hash_images(
    blobs: list[bytes | None],
    mode: str = DEFAULT_MODE,
    *,
    dihedral: bool = False,
    unletterbox: bool = False,
    reframes: tuple[Reframe, ...] = (),
    pixel_flips: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PdqHashes:
    """PDQ of each image (None entries and undecodable bytes are invalid, with a reason).

    Each image is decoded once (that decode is also its check: `errors` holds the same reasons as
    `images.image_problem`), then a compiled kernel reads the pixels into its 64x64 block; the DCT, quality,
    medians and bit packing run once over the batch; in `exact` mode, the few images whose bits float rounding
    could decide are decoded again and recomputed in the reference's float32 order. Images smaller than 5 px on a
    side get the reference's answer: an all-zero hash of quality 0. `reframes` adds one hash per re-framing per image
    (`PdqHashes.reframed`), from the same decoded pixels. `pixel_flips` computes the dihedral variants from the
    mirrored pixels instead of the DCT's signs (see `dihedral_dcts_from_flips`): four blocks per image, not one.
    """
    if mode not in MODES:
        raise ValueError(f"unknown PDQ mode {mode!r}; choose {' or '.join(MODES)}")
    n = len(blobs)
    blocks = np.zeros((n, 64, 64))
    batched = np.zeros(n, dtype=bool)  # rows whose DCT and bits are computed together at the end
    hashes = np.zeros((n, HASH_BYTES), np.uint8)
    dcts = np.zeros((n, 16, 16))
    quality = np.zeros(n, np.int16)
    valid = np.zeros(n, dtype=bool)
    decoded = np.zeros(n, dtype=bool)
    errors: list[str | None] = [None] * n
    trim_blocks = np.zeros((n, 64, 64)) if unletterbox else None
    trimmed_valid = np.zeros(n, dtype=bool)
    frame_blocks = np.zeros((n, len(reframes), 64, 64)) if reframes else None
    frame_valid = np.zeros((n, len(reframes)), dtype=bool)
    # Frames whose rotations/flips are wanted: from mirrored pixels (four blocks each) or from the DCT's signs.
    flipped_frames = [f for f, frame in enumerate(reframes) if frame.flips] if dihedral else []
    frame_flip_dcts = np.zeros((n, len(flipped_frames), 2, 2, 16, 16)) if flipped_frames and pixel_flips else None
    flips = dihedral and pixel_flips
    flip_dcts = np.zeros((n, 2, 2, 16, 16)) if flips else None
    trim_flip_dcts = np.zeros((n, 2, 2, 16, 16)) if flips and unletterbox else None
    four = np.zeros((2, 2, 64, 64))
    buffer = _DecodeBuffer()
    sides = np.full(n, 2 * REFERENCE_RESIZE)  # rows + cols of the canonical image (`exact`'s rounding margin)
    for i, blob in enumerate(blobs):
        if blob is None:
            errors[i] = "no image"
            continue
        try:
            # Decoding is where untrusted bytes meet the decoders: every failure there is a reason.
            pixels = _decode(blob, mode, max_pixels, buffer)
        except Exception as exc:
            errors[i] = decode_problem(exc)
            continue
        decoded[i] = True
        if min(pixels.rows, pixels.cols) < MIN_HASHABLE_DIM:
            valid[i] = True
            continue
        # From here on the input is a decoded pixel array, no longer the file's bytes.
        try:
            pixels.block(blocks[i])
            quality[i] = pdq_kernels.quality_of_block(blocks[i])
            batched[i] = True
            if reference_resize_index(pixels.rows, pixels.cols) is None:
                sides[i] = pixels.rows + pixels.cols
            if flip_dcts is not None:
                pixels.flipped_blocks(four)
                flip_dcts[i] = dct_16(four)
            if trim_blocks is not None and (inner := _trimmed(pixels)) is not None:
                trimmed_valid[i] = True
                inner.block(trim_blocks[i])
                if trim_flip_dcts is not None:
                    inner.flipped_blocks(four)
                    trim_flip_dcts[i] = dct_16(four)
            if frame_blocks is not None:
                for f, frame in enumerate(reframes):
                    if frame.applies(pixels.rows, pixels.cols):
                        pixels.block(frame_blocks[i, f], frame)
                        frame_valid[i, f] = True
                if frame_flip_dcts is not None:
                    for k, f in enumerate(flipped_frames):
                        if frame_valid[i, f]:
                            pixels.flipped_blocks(four, reframes[f])
                            frame_flip_dcts[i, k] = dct_16(four)
            valid[i] = True
        except (ValueError, FloatingPointError) as exc:  # degenerate pixels (say, NaN from an odd mode)
            errors[i] = f"unhashable image: {exc}"
    with single_threaded_blas():
        if batched.all():  # the common case: no copies of the blocks
            dcts = dct_16(blocks)
            hashes = bits_from_dct(dcts)
        elif batched.any():
            dcts[batched] = dct_16(blocks[batched])
            hashes[batched] = bits_from_dct(dcts[batched])
        if mode == "exact" and batched.any():
            for i in np.flatnonzero(batched)[_too_close_batch(blocks[batched], dcts[batched], sides[batched])]:
                try:
                    hashes[i], dcts[i], quality[i] = _exact_fallback(blobs[i], max_pixels)  # type: ignore[arg-type]
                except Exception:  # bytes libjpeg-turbo took and Pillow refuses: keep the float64 hash
                    continue
        trim_dct = None if trim_blocks is None else dct_16(trim_blocks)
        frame_dct = None if frame_blocks is None else dct_16(frame_blocks)
    out = PdqHashes(hashes, quality, valid, errors, decoded)
    out.pixel_flips = flips
    if dihedral:
        out.dihedral = dihedral_bits(dcts, flip_dcts)
        out.dihedral[:, 0] = hashes  # the original itself, exactly as hashed (exact mode's fallback included)
        out.dihedral[~valid] = 0
    if trim_dct is not None:
        out.trimmed = bits_from_dct(trim_dct)
        out.trimmed[~trimmed_valid] = 0
        out.trimmed_valid = trimmed_valid
        if dihedral:
            out.trimmed_dihedral = dihedral_bits(trim_dct, trim_flip_dcts)
            out.trimmed_dihedral[~trimmed_valid] = 0
    if frame_dct is not None:
        out.reframes = tuple(reframes)
        out.reframed = bits_from_dct(frame_dct)
        out.reframed_dct = frame_dct
        frame_valid &= valid[:, None]
        out.reframed[~frame_valid] = 0
        out.reframed_valid = frame_valid
        if flipped_frames:
            out.reframed_dihedral = np.zeros((n, len(reframes), len(DIHEDRAL_NAMES), HASH_BYTES), np.uint8)
            for k, f in enumerate(flipped_frames):
                flipped = None if frame_flip_dcts is None else frame_flip_dcts[:, k]
                out.reframed_dihedral[:, f] = dihedral_bits(frame_dct[:, f], flipped)
                out.reframed_dihedral[:, f, 0] = out.reframed[:, f]
            out.reframed_dihedral[~frame_valid] = 0
    return out


def popcount_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between (..., 32) uint8 hashes, broadcasting."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64)
