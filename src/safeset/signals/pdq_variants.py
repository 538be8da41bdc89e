"""Query-side PDQ variants: copies that were cropped (the picture re-padded to the frame it was cut from) and
copies that were downscaled (the picture hashed on the 512-px canvas of large originals).

Hotlines hash the original with the reference tool, so only the query can adapt. A copy cropped by c of each
side holds the original's middle; growing it back by c / (1 - 2c) per side (mirroring its edge into the new
margin) puts every remaining pixel where the original had it, so PDQ's DCT basis lines up again and only the
lost band differs. Measured on real photos (BENCHMARKS.md, "PDQ robustness (issue 12)"): four symmetric pads
recover most 1-3 % crops; at 5-10 % per side the lost band is a third of the picture and moves the hash past
any safe radius, and asymmetric pads (eight more queries) found no more random-side crops at radius 31, so they
are not used. Margin-aware distances (ignoring the 64 bits nearest the median) found 5-7 % crops far more often
(12 % -> 50 %), but an exact search for them needs a radius of 87 bits, beyond what the bank index can serve.
Even the exact cut, known in advance, brings only 38 % of the benchmark's 1-10 % crops within 31 bits: what is
missing is the lost band, not the alignment.

A downscaled copy of a fine texture misses its original because PDQ's blur depends on the picture's size (see
`Reframe`); hashing it on the 512 x 512 canvas finds those copies again (resize 0.5x and 0.75x: 88 -> 100 %), and
robust scans add that canvas's flips for copies that are also mirrored.
"""

from __future__ import annotations

from dataclasses import replace

from safeset.signals.pdq import REFERENCE_RESIZE, Reframe

#: Per-side pads (fraction of the copy's side): they undo symmetric crops of about 2, 4, 6.5 and 9 % per side.
ROBUST_PADS: tuple[float, ...] = (0.02, 0.045, 0.075, 0.11)

#: Pictures of at most 512 px hashed on the 512 x 512 canvas the reference hashes larger originals on: undoes the
#: blur a downscale changed (see `Reframe`). A scan default (`PdqOptions.upscale`), not only a robust variant.
UPSCALED = Reframe("upscaled 512", canvas=REFERENCE_RESIZE)
#: The same with its 8 rotations/flips (`--pdq-robust`): a copy both mirrored and downscaled needs both.
UPSCALED_FLIPS = replace(UPSCALED, flips=True)

ROBUST_REFRAMES: tuple[Reframe, ...] = tuple(Reframe(f"repad {pad:.1%}", pad, pad, pad, pad) for pad in ROBUST_PADS)
