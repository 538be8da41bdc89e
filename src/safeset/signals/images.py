"""Checking that image bytes decode, without ever rendering them: size check first, then a cheap decode.

Image bytes in a web dataset come from strangers. Pillow is asked to identify them only as the formats a web
dataset holds (`SUPPORTED_FORMATS`), so the dozens of other decoders it carries (DDS, PSD, FITS, EPS, ...),
which are rarely exercised and raise whatever they like, never see untrusted bytes. Anything Pillow raises
while opening or decoding becomes the row's reason (the exception's type kept in it), never a traceback.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 100_000_000

#: What img2dataset and web crawls hold; MPO (multi-picture JPEG from cameras) opens through the JPEG plugin.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

warnings.simplefilter("ignore", Image.DecompressionBombWarning)
# Pillow warns about damaged metadata (corrupt EXIF, truncated TIFF tags) in bytes it still decodes; with
# millions of strangers' images that is noise on stderr, and nothing the user can act on.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


class ImageRefused(ValueError):
    """The bytes are not an image that can be checked or hashed (with the reason)."""


def detected_format(blob: bytes) -> str | None:
    """The Pillow format whose signature the bytes start with, among all Pillow knows; None if none does.

    Only the plugins' prefix checks run (no decoder), to name what was refused.
    """
    Image.init()
    prefix = blob[:16]
    for format_id in Image.ID:
        accept = Image.OPEN[format_id][1]
        try:
            if accept is not None and accept(prefix):
                return format_id
        except Exception:  # a prefix check that fails on odd bytes says "not this format"
            continue
    return None


def open_image(blob: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open untrusted bytes as one of the supported formats, refusing oversized images before decoding.

    Raises ImageRefused for bytes that are no supported image; other exceptions from Pillow may still escape
    (callers turn them into reasons with `decode_problem`).
    """
    if not blob:
        raise ImageRefused("empty image")
    try:
        image = Image.open(io.BytesIO(blob), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError as exc:
        found = detected_format(blob)
        if found is not None and found not in SUPPORTED_FORMATS:
            raise ImageRefused(f"not a supported image format: {found}") from exc
        raise ImageRefused("not a recognised image format") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageRefused(f"image of {width}x{height} pixels exceeds the {max_pixels}-pixel limit; not decoded")
    return image


def decode_problem(exc: BaseException) -> str:
    """The reason to record for an exception raised while opening or decoding untrusted image bytes."""
    if isinstance(exc, ImageRefused):
        return str(exc)
    if isinstance(exc, Image.DecompressionBombError):
        return f"decompression bomb refused: {exc}"
    if isinstance(exc, (OSError, SyntaxError, EOFError, ValueError)):
        return f"corrupt or truncated image: {exc}"
    # Any other exception is a decoder failing on bytes it did not expect (NotImplementedError, struct.error,
    # IndexError, MemoryError, ...): the bytes could not be checked, which is all the row needs to record.
    return f"undecodable image ({type(exc).__name__}: {exc})"


def image_problem(blob: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why these bytes are not a usable image, or None. Oversized images are refused before decoding.

    JPEGs are decoded at 1/8 scale (libjpeg DCT scaling): every byte of entropy-coded data is still
    read, so truncation and corruption are caught at a fraction of the cost of a full decode.
    """
    try:
        with open_image(blob, max_pixels) as image:
            width, height = image.size
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Exception as exc:  # the boundary where untrusted bytes meet Pillow: every failure is a reason
        return decode_problem(exc)
    return None
