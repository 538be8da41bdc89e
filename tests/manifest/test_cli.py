"""The copy-holder's workflow through the CLI: clean --manifest (signed, with decoys), apply, audit-roadmap, --hf."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from safeset.cli.main import app
from tests.helpers import scan
from tests.manifest.planted import write_planted

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _read(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.rglob("*.parquet")))


def test_signed_manifest_with_decoys_cleans_a_copy(tmp_path: Path) -> None:
    dataset, banks, table, planted = write_planted(tmp_path / "ds", tmp_path)
    scan(dataset, banks, tmp_path / "run")
    code, output = invoke("manifest", "keygen", tmp_path / "k.pem", tmp_path / "k.pub")
    assert code == 0 and stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    code, output = invoke(
        "clean", dataset, tmp_path / "run", "--out", tmp_path / "release", "--roadmap-bound", "0.2",
        "--manifest", tmp_path / "m", "--sign-key", tmp_path / "k.pem", "--hf",
    )  # fmt: skip
    assert code == 0, output
    assert "achieved 0.2" in output
    # The release: planted rows and decoys gone, four decoys per planted row, and the public record says none of it.
    released = _read(tmp_path / "release")
    assert not set(released["URL"].to_pylist()) & planted
    assert released.num_rows == table.num_rows - 5 * len(planted)
    public = (tmp_path / "release" / "_safeset" / "release.json").read_text()
    assert "decoy" not in public and "roadmap" not in public
    card = (tmp_path / "release" / "README.md").read_text()
    assert "configs:" in card and "roadmap" not in card
    manifest_info = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest_info["counts"] == {"entries": 5 * len(planted), "rows_withheld": 5 * len(planted)}
    assert "decoys" not in json.dumps(manifest_info)
    # The copy-holder's two lines: apply (signature checked) to a copy that kept only URLs and captions.
    copy = tmp_path / "copy"
    copy.mkdir()
    pq.write_table(table.select(["URL", "TEXT"]), copy / "mine.parquet")
    code, output = invoke(
        "apply", tmp_path / "m", copy, "--out", tmp_path / "cleaned", "--verify-key", tmp_path / "k.pub"
    )
    assert code == 0, output
    cleaned = _read(tmp_path / "cleaned")
    assert set(cleaned["URL"].to_pylist()) == set(released["URL"].to_pylist())
    report = json.loads((tmp_path / "cleaned.apply-report.json").read_text())
    assert report["rows_removed"] == 5 * len(planted) and report["removed_by_key"] == {"laion_hash": 5 * len(planted)}
    assert stat.S_IMODE((tmp_path / "cleaned.apply-report.json").stat().st_mode) == 0o600
    # The adversary, on 33 removals hidden among 132 decoys: stored privately in the release record.
    code, output = invoke("audit-roadmap", tmp_path / "run", tmp_path / "release")
    assert code == 0 and "AUC" in output, output
    (record,) = (tmp_path / "run" / "releases").iterdir()
    figures = json.loads((record / "roadmap.json").read_text())
    assert figures["true_removals"] == len(planted) and figures["withheld"] == 5 * len(planted)
    assert 0 <= figures["auc"] <= 1 and stat.S_IMODE((record / "roadmap.json").stat().st_mode) == 0o600


def test_refusals_are_one_line_exit_2(tmp_path: Path) -> None:
    dataset, banks, _table, _ = write_planted(tmp_path / "ds", tmp_path)
    scan(dataset, banks, tmp_path / "run")
    code, output = invoke("clean", dataset, tmp_path / "run", "--out", tmp_path / "r", "--manifest", tmp_path / "m",
                          "--roadmap-bound", "0")  # fmt: skip
    assert code == 0, output
    invoke("manifest", "keygen", tmp_path / "k.pem", tmp_path / "k.pub")
    # Unsigned manifest with a key; then a tampered one.
    code, output = invoke(
        "apply", tmp_path / "m", dataset, "--out", tmp_path / "c1", "--verify-key", tmp_path / "k.pub"
    )
    assert code == 2 and "not signed" in output and "Traceback" not in output
    parquet = tmp_path / "m" / "manifest.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-40])
    code, output = invoke("apply", tmp_path / "m", dataset, "--out", tmp_path / "c2")
    assert code == 2 and "sha256 differs" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()
    code, output = invoke("audit-roadmap", tmp_path / "run", tmp_path / "r")
    assert code == 2 and "without --roadmap-bound" in output


def test_hf_folder_loads_with_datasets_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    dataset, banks, table, planted = write_planted(tmp_path / "ds", tmp_path)
    scan(dataset, banks, tmp_path / "run")
    code, output = invoke("clean", dataset, tmp_path / "run", "--out", tmp_path / "r", "--manifest", tmp_path / "m",
                          "--roadmap-bound", "0")  # fmt: skip
    assert code == 0, output
    code, output = invoke("apply", tmp_path / "m", dataset, "--out", tmp_path / "hf", "--hf")
    assert code == 0, output
    loaded = datasets.load_dataset(str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == table.num_rows - len(planted) and not set(loaded["URL"]) & planted
    assert loaded.column_names == table.column_names
