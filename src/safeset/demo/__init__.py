"""A small benign demo dataset in img2dataset's webdataset layout, built from the bundled photos.

The photos are ordinary public-domain / CC0 / BSD-licensed pictures (see photos/SOURCES.md). The
"known" banks built from them are stand-ins that play the role of hotline lists; nothing here is abuse
material or derived from any real list.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageOps

PHOTOS = Path(__file__).parent / "photos"
CAPTIONS = {
    "astronaut": "an astronaut portrait in front of a flag",
    "bridge": "a bridge over a river at dusk",
    "brick": "a red brick wall texture",
    "camera": "a photographer with a camera on a tripod",
    "chelsea": "a tabby cat looking to the side",
    "coffee": "a cup of coffee on a saucer",
    "grass": "green grass close up",
    "gravel": "grey gravel stones",
    "hubble": "galaxies in the deep field",
    "retina": "a medical photograph of a retina",
    "rocket": "a rocket lifting off from the launch pad",
}


def photo_names() -> list[str]:
    return sorted(p.stem for p in PHOTOS.glob("*.jpg"))


def variant(name: str, index: int) -> bytes:
    """A re-encoded, resized or flipped copy of a bundled photo: distinct bytes, same picture."""
    with Image.open(PHOTOS / f"{name}.jpg") as image:
        image = image.convert("RGB")
        scale = (0.5, 0.6, 0.75, 0.9)[index % 4]
        image = image.resize((max(8, int(image.width * scale)), max(8, int(image.height * scale))))
        if index % 3 == 1:
            image = ImageOps.mirror(image)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=70 + (index * 7) % 25)
        return buffer.getvalue()


@dataclass
class DemoRow:
    key: str
    url: str
    caption: str
    image: bytes | None
    status: str = "success"
    error_message: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def demo_rows(shards: int, rows_per_shard: int) -> list[list[DemoRow]]:
    names = photo_names()
    out: list[list[DemoRow]] = []
    counter = 0
    for shard in range(shards):
        rows = []
        for i in range(rows_per_shard):
            name = names[counter % len(names)]
            key = f"{shard:05d}{i:04d}"
            host = (
                "images.optout.example.net"
                if counter % 10 == 7
                else ("photos.example.org", "cdn.example.com")[counter % 2]
            )
            url = f"https://{host}/{name}/{counter}.jpg"
            caption = CAPTIONS.get(name, f"a photo of {name}")
            if counter % 17 == 5:
                rows.append(DemoRow(key, url, caption, None, "failed_to_download", "HTTP Error 404: Not Found"))
            else:
                rows.append(DemoRow(key, url, caption, variant(name, counter)))
            counter += 1
        out.append(rows)
    return out


def _size(image: bytes | None) -> tuple[int | None, int | None]:
    """Width and height from the header, as img2dataset records them; None where unreadable."""
    if image is None:
        return None, None
    try:
        with Image.open(io.BytesIO(image)) as opened:
            return opened.size
    except (OSError, Image.DecompressionBombError):
        return None, None


def write_webdataset(root: Path, shards: list[list[DemoRow]], md5_column: bool = True) -> None:
    """Write shards as img2dataset does: NNNNN.tar (successes only), NNNNN.parquet (every row), _stats.json."""
    root.mkdir(parents=True, exist_ok=True)
    for shard_id, rows in enumerate(shards):
        stem = root / f"{shard_id:05d}"
        with tarfile.open(f"{stem}.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            for row in rows:
                if row.image is None:
                    continue
                meta = {"url": row.url, "caption": row.caption, "key": row.key, "status": row.status}
                for suffix, payload in (
                    ("jpg", row.image),
                    ("txt", row.caption.encode()),
                    ("json", json.dumps(meta, indent=4).encode()),
                ):
                    info = tarfile.TarInfo(f"{row.key}.{suffix}")
                    info.size = len(payload)
                    info.mtime = 1_700_000_000
                    tar.addfile(info, io.BytesIO(payload))
        columns: dict[str, list[object]] = {
            "url": [r.url for r in rows],
            "caption": [r.caption for r in rows],
            "key": [r.key for r in rows],
            "status": [r.status for r in rows],
            "error_message": [r.error_message for r in rows],
            "width": [_size(r.image)[0] for r in rows],
            "height": [_size(r.image)[1] for r in rows],
        }
        if md5_column:
            columns["md5"] = [None if r.image is None else hashlib.md5(r.image).hexdigest() for r in rows]
        pq.write_table(pa.table(columns), f"{stem}.parquet")
        successes = sum(r.status == "success" for r in rows)
        stats = {
            "count": len(rows),
            "successes": successes,
            "failed_to_download": len(rows) - successes,
            "failed_to_resize": 0,
            "duration": 1.0,
            "status_dict": {},
        }
        Path(f"{stem}_stats.json").write_text(json.dumps(stats, indent=4))
