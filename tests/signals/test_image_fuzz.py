"""Fuzzing the image path: mutated bytes of every supported format never raise out of the scan's image checks.

Small benign images are generated with Pillow in each format a web dataset holds, then flipped, truncated,
padded with inserted bytes, or given the header of another format (supported or not). Whatever comes out, the
scan's two entry points for image bytes, `Signals.image_errors` (`image_problem`) and `Signals.pdq`
(`pdq.hash_images`), must either accept the bytes or give a reason, never raise.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from safeset.io.batch import RowBatch
from safeset.signals.compute import Signals
from safeset.signals.images import SUPPORTED_FORMATS, image_problem
from safeset.signals.pdq import hash_images
from safeset.signals.pdq_variants import ROBUST_REFRAMES, UPSCALED_FLIPS

#: Small enough that a mutated header claiming a huge canvas is refused before any allocation, and that each
#: example decodes in milliseconds.
FUZZ_MAX_PIXELS = 250_000

# Pillow warns about the damaged metadata these tests make on purpose; safeset silences it, pytest re-enables it.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _picture(mode: str = "RGB", size: tuple[int, int] = (40, 32)) -> Image.Image:
    """A benign gradient with some texture (so that every codec has real work to do)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


SUPPORTED_SAMPLES: dict[str, bytes] = {
    "jpeg": _encode(_picture(), "JPEG", quality=80),
    "jpeg-progressive": _encode(_picture(), "JPEG", quality=70, progressive=True),
    "jpeg-gray": _encode(_picture("L"), "JPEG"),
    "jpeg-cmyk": _encode(_picture("CMYK"), "JPEG"),
    "mpo": _encode(_picture(), "MPO"),
    "png": _encode(_picture(), "PNG"),
    "png-palette": _encode(_picture("P"), "PNG"),
    "png-rgba-interlaced": _encode(_picture("RGBA"), "PNG", interlace=True),
    "png-16bit": _encode(_picture("I;16"), "PNG"),
    "webp-lossy": _encode(_picture(), "WEBP", quality=60),
    "webp-lossless": _encode(_picture("RGBA"), "WEBP", lossless=True),
    "gif": _encode(_picture("P"), "GIF"),
    "gif-animated": _encode(_picture("P"), "GIF", save_all=True, append_images=[_picture("P", (40, 32))]),
    "bmp": _encode(_picture(), "BMP"),
    "bmp-palette": _encode(_picture("P"), "BMP"),
    "bmp-1bit": _encode(_picture("1"), "BMP"),
    "tiff": _encode(_picture(), "TIFF"),
    "tiff-lzw": _encode(_picture(), "TIFF", compression="tiff_lzw"),
    "tiff-deflate": _encode(_picture("L"), "TIFF", compression="tiff_adobe_deflate"),
    "tiff-packbits": _encode(_picture("1"), "TIFF", compression="packbits"),
    "tiff-jpeg": _encode(_picture(), "TIFF", compression="jpeg"),
}

OTHER_SAMPLES: dict[str, bytes] = {
    "DDS": _encode(_picture(), "DDS"),
    "ICO": _encode(_picture(), "ICO"),
    "PCX": _encode(_picture(), "PCX"),
    "TGA": _encode(_picture(), "TGA"),
    "PPM": _encode(_picture(), "PPM"),
    "SGI": _encode(_picture(), "SGI"),
    "QOI": _encode(_picture(), "QOI"),
    "MSP": _encode(_picture("1"), "MSP"),
    "JPEG2000": _encode(_picture(), "JPEG2000"),
}

ALL_SAMPLES = {**SUPPORTED_SAMPLES, **{f"other-{k}": v for k, v in OTHER_SAMPLES.items()}}


def dds_with_unknown_pixel_format(size: int = 200) -> bytes:
    """A 200-byte DDS file whose pixel format Pillow does not implement (its plugin raises NotImplementedError)."""
    header = struct.pack("<I3I3I", 124, 0x1007, 8, 8, 0, 0, 0) + bytes(44)
    header += struct.pack("<4I", 32, 0x4, int.from_bytes(b"XXXX", "little"), 0)
    data = b"DDS " + header + bytes(124 - len(header))
    return data + bytes(size - len(data))


def scan_entry_points(blob: bytes, mode: str) -> tuple[str | None, bool, str | None]:
    """(image_problem's reason, PDQ valid, PDQ reason) through the same Signals object the scan builds."""
    batch = RowBatch(shard="fuzz", rows=np.arange(1, dtype=np.int64), keys=None, images=pa.array([blob], pa.binary()))
    signals = Signals(batch, [], FUZZ_MAX_PIXELS, mode)
    (problem,) = signals.image_errors()
    # Every query variant a scan can ask for, so hostile pixels reach the canvas and re-framing paths too.
    hashes = signals.pdq(dihedral=True, unletterbox=True, reframes=(UPSCALED_FLIPS, *ROBUST_REFRAMES), pixel_flips=True)
    assert hashes is not None
    return problem, bool(hashes.valid[0]), hashes.errors[0]


def _assert_answer(problem: str | None, valid: bool, reason: str | None) -> None:
    assert problem is None or (isinstance(problem, str) and problem)
    assert valid == (reason is None)
    assert reason is None or (isinstance(reason, str) and reason)


# --------------------------------------------------------------------------------------------------------------
# fixed cases


@pytest.mark.parametrize("name", sorted(SUPPORTED_SAMPLES))
def test_every_supported_sample_is_accepted(name: str) -> None:
    for mode in ("exact", "fast"):
        assert scan_entry_points(SUPPORTED_SAMPLES[name], mode) == (None, True, None)


@pytest.mark.parametrize("name", sorted(OTHER_SAMPLES))
def test_other_formats_are_refused_by_name(name: str) -> None:
    problem, valid, reason = scan_entry_points(OTHER_SAMPLES[name], "fast")
    # TGA has no signature; its first bytes happen to pass the CUR plugin's check, and the name is only a guess.
    assert problem == reason == f"not a supported image format: {'CUR' if name == 'TGA' else name}"
    assert not valid


def test_dds_named_like_a_jpeg_is_a_reason_not_a_traceback() -> None:
    blob = dds_with_unknown_pixel_format()
    assert len(blob) == 200
    assert image_problem(blob) == "not a supported image format: DDS"
    result = hash_images([blob], "exact")
    assert not result.valid[0] and result.errors[0] == "not a supported image format: DDS"


def test_unknown_bytes_and_empty_input() -> None:
    assert image_problem(b"\x00" * 64) == "not a recognised image format"
    assert image_problem(b"") == "empty image"
    assert hash_images([b""], "fast").errors == ["empty image"]


def test_any_exception_from_the_decoder_becomes_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a decoder raises (here a KeyError, as a buggy plugin might) is kept, with its type, as the reason."""

    def broken_load(self: Image.Image) -> None:
        raise KeyError("tile descriptor")

    monkeypatch.setattr(Image.Image, "load", broken_load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", broken_load)
    blob = SUPPORTED_SAMPLES["png"]
    assert image_problem(blob) == "undecodable image (KeyError: 'tile descriptor')"
    result = hash_images([blob], "exact")
    assert not result.valid[0] and result.errors[0] == "undecodable image (KeyError: 'tile descriptor')"


# --------------------------------------------------------------------------------------------------------------
# mutations


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A supported sample after one to three mutations: flips, truncation, insertion, another format's header."""
    data = bytearray(SUPPORTED_SAMPLES[draw(st.sampled_from(sorted(SUPPORTED_SAMPLES)))])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "splice", "overwrite-header"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip":
            for _ in range(draw(st.integers(1, 8))):
                position = draw(st.integers(0, max(0, len(data) - 1)))
                if data:
                    data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "splice":  # another format's first bytes, then this one's remainder
            other = ALL_SAMPLES[draw(st.sampled_from(sorted(ALL_SAMPLES)))]
            cut = draw(st.integers(1, min(len(other), 256)))
            data = bytearray(other[:cut]) + data[draw(st.integers(0, len(data))) :]
        else:  # header fields (sizes, offsets, counts) are where decoders trust their input most
            end = min(len(data), 64)
            if end:
                position = draw(st.integers(0, end - 1))
                data[position : position + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=mutated(), mode=st.sampled_from(["exact", "fast"]))
def test_mutated_images_never_raise(blob: bytes, mode: str) -> None:
    _assert_answer(*scan_entry_points(blob, mode))


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=512), prefix=st.sampled_from(sorted(ALL_SAMPLES)), keep=st.integers(0, 32))
def test_random_bytes_behind_a_real_signature_never_raise(blob: bytes, prefix: str, keep: int) -> None:
    _assert_answer(*scan_entry_points(ALL_SAMPLES[prefix][:keep] + blob, "fast"))


def test_supported_formats_are_the_web_formats() -> None:
    assert set(SUPPORTED_FORMATS) == {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}
