"""Real photos for the PDQ benchmarks: the bundled demo photos and the PDQ reference test images."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "safeset" / "demo" / "photos"
PDQ_DATA = ROOT / "tests" / "data" / "pdq" / "data"
# PDQ test images of quality >= 80 that are distinct pictures (the bridge photo is already a demo photo).
PDQ_PHOTOS = [f"reg-test-input/labelme-subset/q{n}.jpg" for n in ("0122", "0291", "0746", "1050", "2821")]


def photo_paths(extra: Path | None = None) -> list[Path]:
    paths = sorted(DEMO.glob("*.jpg")) + [PDQ_DATA / p for p in PDQ_PHOTOS]
    if extra is not None:
        paths += sorted(p for p in extra.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    return paths


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def web_sized(image: Image.Image, side: int) -> Image.Image:
    """The photo scaled so that its longer side is `side` pixels, as images on the web mostly are."""
    scale = side / max(image.size)
    return image.resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))), Image.LANCZOS)
