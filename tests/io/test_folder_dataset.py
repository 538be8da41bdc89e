"""A plain folder of images with sidecar captions: one shard per directory, keys are relative paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safeset.banks.store import BankStore
from safeset.demo import variant
from tests.conftest import write_list
from tests.helpers import assert_reconciles, clean, errors, findings, scan


def test_folder_scan_and_clean(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for sub, names in (("a", ["coffee", "rocket", "chelsea"]), ("b", ["bridge", "hubble"])):
        (root / sub).mkdir(parents=True)
        for i, name in enumerate(names):
            (root / sub / f"{name}.jpg").write_bytes(variant(name, i))
            (root / sub / f"{name}.txt").write_text(f"a photo of {name}")
            (root / sub / f"{name}.json").write_text(json.dumps({"url": f"https://example.org/{name}.jpg"}))
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    banks = tmp_path / "banks"
    known = hashlib.md5((root / "a" / "rocket.jpg").read_bytes()).hexdigest()
    BankStore(banks).add("k", "md5", write_list(tmp_path / "k.txt", [known]))
    BankStore(banks).add("u", "url", write_list(tmp_path / "u.txt", ["https://EXAMPLE.org/hubble.jpg"]))
    summary = scan(root, banks, tmp_path / "run")
    assert summary["dataset"]["format"] == "folder"
    assert (summary["rows_in"], summary["rows_flagged"], summary["rows_errored"]) == (6, 2, 1)
    assert sorted(f["key"] for f in findings(tmp_path / "run")) == ["a/rocket", "b/hubble"]
    assert [e["key"] for e in errors(tmp_path / "run")] == ["b/broken"]
    manifest = clean(root, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    released = sorted(p.relative_to(tmp_path / "release").as_posix() for p in (tmp_path / "release").rglob("*.*"))
    assert "a/rocket.jpg" not in released and "a/rocket.txt" not in released and "b/broken.png" not in released
    assert "a/coffee.jpg" in released and "a/coffee.txt" in released and "b/bridge.json" in released
