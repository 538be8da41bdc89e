"""`--pdq-robust` in a scan: slightly cropped copies in a webdataset are found, with the variant in the evidence."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.demo import PHOTOS, DemoRow, write_webdataset
from safeset.kinds.pdq.matcher import query_variants
from safeset.signals import pdq
from safeset.signals.pdq_variants import UPSCALED
from tests.conftest import write_list
from tests.helpers import findings, scan

runner = CliRunner()
NAMES = ("coffee", "rocket", "chelsea", "astronaut", "bridge", "camera")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _cropped(name: str, cut: float) -> bytes:
    with Image.open(PHOTOS / f"{name}.jpg") as image:
        rgb = image.convert("RGB")
    w, h = rgb.size
    return _jpeg(rgb.crop((round(w * cut), round(h * cut), w - round(w * cut), h - round(h * cut))), 85)


def _dataset(tmp_path: Path) -> tuple[Path, Path, set[str], set[str]]:
    """Bank: the reference hashes of four photos. Shard: 2-3 % crops of them, and of two photos not in the bank."""
    banked = NAMES[:4]
    bank = [pdq.hash_images([(PHOTOS / f"{n}.jpg").read_bytes()], "exact").hex(0) for n in banked]
    BankStore(tmp_path / "banks").add("known", "pdq", write_list(tmp_path / "known.txt", bank))
    rows, copies, others = [], set(), set()
    for i, name in enumerate(NAMES):
        for j, cut in enumerate((0.02, 0.03)):
            key = f"{i:03d}{j}"
            rows.append(DemoRow(key, f"https://example.org/{name}/{j}.jpg", f"photo {j}", _cropped(name, cut)))
            (copies if name in banked else others).add(key)
    write_webdataset(tmp_path / "ds", [rows])
    return tmp_path / "ds", tmp_path / "banks", copies, others


def test_robust_queries_find_cropped_copies_the_plain_scan_misses(tmp_path: Path) -> None:
    dataset, banks, copies, _ = _dataset(tmp_path)
    scan(dataset, banks, tmp_path / "plain")
    plain = {f["key"] for f in findings(tmp_path / "plain")}
    scan(dataset, banks, tmp_path / "robust", policy={"pdq": {"robust": True}})
    robust = {f["key"]: f for f in findings(tmp_path / "robust")}
    assert plain <= set(robust) <= copies  # nothing unrelated, nothing the plain scan found is lost
    assert len(robust) >= len(copies) - 1 and len(robust) >= len(plain) + 3  # measured: 7 of 8 against 0
    repadded = [f for f in robust.values() if f["key"] not in plain]
    assert all(" (repad " in f["evidence"] and " distance " in f["evidence"] for f in repadded)
    assert all(f["detector"] == "pdq" and f["evidence"].startswith("pdq:") for f in robust.values())


def test_robust_flag_on_the_command_line(tmp_path: Path) -> None:
    dataset, banks, copies, _ = _dataset(tmp_path)
    result = runner.invoke(
        app, ["scan", str(dataset), "--banks", str(banks), "--out", str(tmp_path / "run"), "--pdq-robust"]
    )
    assert result.exit_code == 0, result.output
    assert {f["key"] for f in findings(tmp_path / "run")} <= copies and len(findings(tmp_path / "run")) >= 6


def test_hash_command_on_several_processes_keeps_order_and_errors(tmp_path: Path) -> None:
    paths = []
    for i in range(150):  # three tasks of 64 files
        path = tmp_path / f"{i:03d}.jpg"
        path.write_bytes(_cropped(NAMES[i % len(NAMES)], 0.01 * (i % 4)) if i != 70 else b"not an image")
        paths.append(str(path))
    one = runner.invoke(app, ["hash", *paths, "--processes", "1"])
    many = runner.invoke(app, ["hash", *paths, "--processes", "2"])
    assert one.exit_code == many.exit_code == 1
    assert one.stdout == many.stdout and len(one.stdout.splitlines()) == 149
    assert [line.split("\t")[0] for line in many.stdout.splitlines()] == paths[:70] + paths[71:]
    assert "070.jpg: not a recognised image format" in many.stderr


def test_pictures_the_canvas_would_not_enlarge_get_no_upscaled_query() -> None:
    with Image.open(PHOTOS / "coffee.jpg") as image:
        rgb = image.convert("RGB")
    sizes = [(600, 400), (512, 512), (300, 512), (64, 48)]
    result = pdq.hash_images([_jpeg(rgb.resize(size), 90) for size in sizes], "fast", reframes=(UPSCALED,))
    _, owners, names = query_variants(result)
    assert sorted(owners[[name == UPSCALED.name for name in names]].tolist()) == [2, 3]


def _downscaled(name: str, factor: float) -> bytes:
    with Image.open(PHOTOS / f"{name}.jpg") as image:
        rgb = image.convert("RGB")
    original = rgb.resize((480, round(480 * rgb.height / rgb.width)), Image.LANCZOS)
    return _jpeg(original.resize((round(480 * factor), round(original.height * factor)), Image.LANCZOS), 85)


def test_downscaled_textures_are_found_on_the_512_canvas_by_default(tmp_path: Path) -> None:
    """Bank: the 480-px originals of two fine textures. Shard: their downscaled copies, and a photo not in the bank."""
    originals = []
    for name in ("brick", "grass"):
        with Image.open(PHOTOS / f"{name}.jpg") as image:
            rgb = image.convert("RGB")
        originals.append(_jpeg(rgb.resize((480, round(480 * rgb.height / rgb.width)), Image.LANCZOS), 90))
    bank = [pdq.hash_images([blob], "exact").hex(0) for blob in originals]
    BankStore(tmp_path / "banks").add("known", "pdq", write_list(tmp_path / "known.txt", bank))
    copies = {"b050": ("brick", 0.5), "b075": ("brick", 0.75), "g025": ("grass", 0.25), "x050": ("gravel", 0.5)}
    rows = [DemoRow(key, f"https://example.org/{key}.jpg", key, _downscaled(*made)) for key, made in copies.items()]
    write_webdataset(tmp_path / "ds", [rows])
    scan(tmp_path / "ds", tmp_path / "banks", tmp_path / "off", policy={"pdq": {"upscale": False}})
    scan(tmp_path / "ds", tmp_path / "banks", tmp_path / "on")
    assert not findings(tmp_path / "off")  # measured: 38-52 bits from their originals without the canvas
    found = {f["key"]: f["evidence"] for f in findings(tmp_path / "on")}
    assert set(found) == {"b050", "b075", "g025"}
    assert all("(upscaled 512, " in evidence for evidence in found.values())


def test_robust_scan_finds_mirrored_downscaled_textures_by_the_canvas_flips(tmp_path: Path) -> None:
    with Image.open(PHOTOS / "brick.jpg") as image:
        rgb = image.convert("RGB")
    original = rgb.resize((480, round(480 * rgb.height / rgb.width)), Image.LANCZOS)
    bank = [pdq.hash_images([_jpeg(original, 90)], "exact").hex(0)]
    BankStore(tmp_path / "banks").add("known", "pdq", write_list(tmp_path / "known.txt", bank))
    small = original.resize((240, round(original.height / 2)), Image.LANCZOS)
    rows = [
        DemoRow("m050", "https://example.org/m.jpg", "m", _jpeg(small.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 85))
    ]
    write_webdataset(tmp_path / "ds", [rows])
    scan(tmp_path / "ds", tmp_path / "banks", tmp_path / "plain")
    scan(tmp_path / "ds", tmp_path / "banks", tmp_path / "robust", policy={"pdq": {"robust": True}})
    assert not findings(tmp_path / "plain")  # the DCT-sign flips drift on this texture
    [found] = findings(tmp_path / "robust")
    assert "(upscaled 512 flipy, " in found["evidence"]
