"""UTF-8 encoding of one code point into a byte buffer, for the compiled caption and URL kernels.

Kept as plain Python: each kernel module registers it with its own lazy compilation (`_jit`), so a module that
never compiles does not import numba, and both modules share one definition.
"""

from __future__ import annotations

import numpy as np


def k_put_utf8(out: np.ndarray, at: int, c: int) -> int:
    """Write code point `c` at `out[at:]` as UTF-8; the position after it."""
    if c < 0x80:
        out[at] = c
        return at + 1
    if c < 0x800:
        out[at] = 0xC0 | (c >> 6)
        out[at + 1] = 0x80 | (c & 0x3F)
        return at + 2
    if c < 0x10000:
        out[at] = 0xE0 | (c >> 12)
        out[at + 1] = 0x80 | ((c >> 6) & 0x3F)
        out[at + 2] = 0x80 | (c & 0x3F)
        return at + 3
    out[at] = 0xF0 | (c >> 18)
    out[at + 1] = 0x80 | ((c >> 12) & 0x3F)
    out[at + 2] = 0x80 | ((c >> 6) & 0x3F)
    out[at + 3] = 0x80 | (c & 0x3F)
    return at + 4
