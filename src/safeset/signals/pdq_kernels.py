"""Compiled blur-and-decimate for PDQ: the 64x64 block of one decoded image, straight from its pixels.

The reference's two box passes and the pick of 64 cell centres are linear and separable, so each output row
(and column) is a weighted sum over a short band of input rows (columns): about twice the box window on the
canonical grid. Dense matrix products (the numpy path) spend most of their time multiplying zeros, and numpy's
luma conversion touches every pixel three times before the blur reads it once. These kernels read only the rows
a band needs, compute luma on the fly from RGB (with the reference binding's double-then-float32 rounding, so
`exact` stays bit-for-bit), and accumulate in float64, the same sums as the dense float64 products up to
rounding far below the `exact` closeness check's margin.

Weights arrive as bands: `start[i]` and `weights[i, :]` (zero-padded), built once per side length and scale.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=True)
def _columns_pass(rows: np.ndarray, col_start: np.ndarray, col_weights: np.ndarray, out: np.ndarray) -> None:
    """out[i, j] = sum_l col_weights[j, l] * rows[i, col_start[j] + l]."""
    span = col_weights.shape[1]
    for i in range(64):
        row = rows[i]
        for j in range(64):
            start = col_start[j]
            total = 0.0
            for offset in range(span):
                total += col_weights[j, offset] * row[start + offset]
            out[i, j] = total


@njit(cache=True, nogil=True, fastmath=True)
def decimate_gray(
    pixels: np.ndarray,
    row_start: np.ndarray,
    row_weights: np.ndarray,
    col_start: np.ndarray,
    col_weights: np.ndarray,
    out: np.ndarray,
) -> None:
    """64x64 block of a (rows, cols) luma array (uint8 or float) into `out` (64, 64) float64.

    fastmath lets the row sums vectorise; only rounding far below a bit's margin can change (the `fast` path).
    """
    cols = pixels.shape[1]
    rows = np.zeros((64, cols))
    span = row_weights.shape[1]
    for i in range(64):
        start = row_start[i]
        total = rows[i]
        for offset in range(span):
            weight = row_weights[i, offset]
            source = pixels[start + offset]
            for c in range(cols):
                total[c] += weight * source[c]
    _columns_pass(rows, col_start, col_weights, out)


@njit(cache=True, nogil=True)
def decimate_rgb(
    pixels: np.ndarray,
    row_start: np.ndarray,
    row_weights: np.ndarray,
    col_start: np.ndarray,
    col_weights: np.ndarray,
    out: np.ndarray,
) -> None:
    """64x64 block of a (rows, cols, 3) uint8 RGB array, luma as the reference binding computes it.

    No fastmath here: the luma must be the binding's float64 products summed left to right, then rounded to
    float32, for `exact` to stay bit-for-bit with the C++ core.
    """
    cols = pixels.shape[1]
    rows = np.zeros((64, cols))
    luma = np.empty(cols)
    span = row_weights.shape[1]
    for i in range(64):
        start = row_start[i]
        total = rows[i]
        for offset in range(span):
            weight = row_weights[i, offset]
            if weight == 0.0:  # bands of the reference tool's 512-px resize skip most source rows
                continue
            source = pixels[start + offset]
            for c in range(cols):
                luma[c] = np.float32(source[c, 0] * 0.299 + source[c, 1] * 0.587 + source[c, 2] * 0.114)
            for c in range(cols):
                total[c] += weight * luma[c]
    _columns_pass(rows, col_start, col_weights, out)


def bands(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start (64,) int64, weights (64, span) float64) of a dense (64, n) weight matrix, each row's nonzero band
    shifted to fit inside [0, n)."""
    n = dense.shape[1]
    nonzero = dense != 0
    any_nonzero = nonzero.any(axis=1)
    first = np.where(any_nonzero, nonzero.argmax(axis=1), 0)
    last = np.where(any_nonzero, n - 1 - nonzero[:, ::-1].argmax(axis=1), 0)
    span = int(max(1, (last - first + 1).max()))
    start = np.minimum(first, n - span).astype(np.int64)
    index = start[:, None] + np.arange(span)[None, :]
    weights = np.ascontiguousarray(np.take_along_axis(dense, index, axis=1), dtype=np.float64)
    start.setflags(write=False)
    weights.setflags(write=False)
    return start, weights


@njit(cache=True, nogil=True)
def quality_of_block(block: np.ndarray) -> int:
    """The reference's quality score of a (64, 64) float64 block, in its float32 arithmetic: each neighbour
    difference scaled by 100/255 and truncated, absolute values summed, divided by 90, capped at 100."""
    scale, norm = np.float32(100.0), np.float32(255.0)
    total = 0
    for i in range(64):
        for j in range(64):
            here = np.float32(block[i, j])
            if i < 63:
                total += abs(int(((here - np.float32(block[i + 1, j])) * scale) / norm))
            if j < 63:
                total += abs(int(((here - np.float32(block[i, j + 1])) * scale) / norm))
    return min(total // 90, 100)
