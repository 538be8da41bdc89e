"""Checking that image bytes decode, without ever rendering them: size check first, then a cheap decode."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 100_000_000

warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def image_problem(blob: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why these bytes are not a usable image, or None. Oversized images are refused before decoding.

    JPEGs are decoded at 1/8 scale (libjpeg DCT scaling): every byte of entropy-coded data is still
    read, so truncation and corruption are caught at a fraction of the cost of a full decode.
    """
    if not blob:
        return "empty image"
    try:
        with Image.open(io.BytesIO(blob)) as image:
            width, height = image.size
            if width * height > max_pixels:
                return f"image of {width}x{height} pixels exceeds the {max_pixels}-pixel limit; not decoded"
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Image.DecompressionBombError as exc:
        return f"decompression bomb refused: {exc}"
    except UnidentifiedImageError:
        return "not a recognised image format"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return f"corrupt or truncated image: {exc}"
    return None
