"""A policy file and the equivalent flags are one typed configuration: same findings, byte for byte; flags given
on the command line override the file; the run records the resolved policy, and `policy show` prints it back."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.demo import DemoRow
from safeset.errors import SafesetError
from safeset.scan.config import ScanConfig, config_from_dict, content_digest, load_policy
from tests.conftest import image_rows, write_list

runner = CliRunner()

POLICY = """
bank_names = ["known", "optout"]
expanders = ["duplicate"]

[pdq]
radius = 20
dihedral = false

[duplicate]
pdq = false
action = "remove"

[actions]
"bank:optout" = "review"
"""
FLAGS = [
    "--bank", "known", "--bank", "optout", "--expand", "duplicate", "--pdq-radius", "20", "--no-pdq-dihedral",
    "--no-duplicate-pdq", "--duplicate-action", "remove", "--action", "bank:optout=review",
]  # fmt: skip


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def banks(tmp_path: Path, demo_shards: list[list[DemoRow]]) -> Path:
    store = BankStore(tmp_path / "banks")
    known = image_rows(demo_shards)[2]
    store.add("known", "md5", write_list(tmp_path / "m.txt", [hashlib.md5(known.image or b"").hexdigest()]))
    store.add("optout", "exclude-domain", write_list(tmp_path / "d.txt", ["optout.example.net"]))
    store.add("unused", "md5", write_list(tmp_path / "u.txt", ["0" * 32]))
    return tmp_path / "banks"


def test_policy_file_and_flags_give_identical_findings(webdataset_dir: Path, banks: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    code, output = invoke("scan", webdataset_dir, "--banks", banks, "--out", tmp_path / "p", "--policy", policy)
    assert code == 0, output
    code, output = invoke("scan", webdataset_dir, "--banks", banks, "--out", tmp_path / "f", *FLAGS)
    assert code == 0, output
    for name in ("findings.parquet", "errors.parquet"):
        assert (tmp_path / "p" / name).read_bytes() == (tmp_path / "f" / name).read_bytes(), name
    findings = (tmp_path / "p" / "findings.parquet").read_bytes()
    assert len(findings) > 0
    recorded = [json.loads((tmp_path / d / "run.json").read_text())["fingerprint"] for d in ("p", "f")]
    assert recorded[0] == recorded[1]
    config = json.loads((tmp_path / "p" / "run.json").read_text())["config"]
    assert config["pdq"]["radius"] == 20 and config["duplicate"]["action"] == "remove"
    assert config["bank_names"] == ["known", "optout"]  # not the unused bank
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert "exclude" not in summary["rows_by_action"] and summary["rows_by_action"]["review"] > 0  # the override


def test_flags_override_the_policy_file_and_policy_show_prints_it_back(
    webdataset_dir: Path, banks: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    run = tmp_path / "run"
    code, output = invoke(
        "scan", webdataset_dir, "--banks", banks, "--out", run, "--policy", policy, "--pdq-radius", "8"
    )
    assert code == 0, output
    code, shown = invoke("policy", "show", run)
    assert code == 0, shown
    assert "radius = 8" in shown and '"bank:optout" = "review"' in shown
    # What `policy show` prints is a policy file giving the same configuration.
    again = tmp_path / "shown.toml"
    again.write_text(shown)
    fixed = {"dataset": str(webdataset_dir), "banks_dir": str(banks)}
    resolved = load_policy(again, **fixed)
    assert resolved.pdq.radius == 8 and resolved.pdq.dihedral is False
    expected = tomllib.loads(POLICY)
    expected["pdq"]["radius"] = 8
    assert resolved == config_from_dict(expected, **fixed)


def test_ignored_signal_is_not_reported(webdataset_dir: Path, banks: Path, tmp_path: Path) -> None:
    code, output = invoke(
        "scan", webdataset_dir, "--banks", banks, "--out", tmp_path / "run", "--bank", "optout",
        "--action", "bank:optout=ignore",
    )  # fmt: skip
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["findings"] == 0 and summary["rows_flagged"] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pdq]\nradus = 3\n", "unknown setting 'radus'"),
        ("[pdq]\nradius = '3'\n", "pdq: radius: expected int, found str"),
        ("[pdq]\nradius = 300\n", "not between 0 and 128"),
        ("[neighbor]\naction = 'delete'\n", "'delete' is not one of remove, exclude, review"),
        ("[actions]\n'optout' = 'remove'\n", "bank:NAME or detector:NAME"),
        ("expanders = 'duplicate'\n", "expanders: expected a list"),
        ("[pdq\nradius = 3\n", "not a valid TOML policy file"),
        ("metadata_only = 1\n", "metadata_only: expected bool, found int"),
    ],
)
def test_bad_policy_is_one_line_naming_the_file(
    webdataset_dir: Path, banks: Path, tmp_path: Path, text: str, message: str
) -> None:
    policy = tmp_path / "bad.toml"
    policy.write_text(text)
    code, output = invoke("scan", webdataset_dir, "--banks", banks, "--out", tmp_path / "run", "--policy", policy)
    assert code == 2, output
    assert message in output and "bad.toml" in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_fingerprint_digests_every_path_setting_folders_included(tmp_path: Path) -> None:
    parts = tmp_path / "img_emb"
    parts.mkdir()
    (parts / "img_emb_0.npy").write_bytes(b"one")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("a\n")
    config = config_from_dict(
        {"embeddings": {"path": str(parts)}, "neighbor": {"seed_file": str(seeds)}}, dataset=str(tmp_path)
    )
    before = config.fingerprint([])
    assert set(before["files"]) == {"embeddings.path", "neighbor.seed_file"}
    (parts / "img_emb_0.npy").write_bytes(b"two")  # same size, other content
    assert config.fingerprint([])["files"]["embeddings.path"] != before["files"]["embeddings.path"]
    seeds.write_text("b\n")
    assert config.fingerprint([])["files"]["neighbor.seed_file"] != before["files"]["neighbor.seed_file"]
    assert content_digest(tmp_path / "absent") is None


def test_python_form_is_the_same_schema() -> None:
    config = config_from_dict({"pdq": {"radius": 12}, "triage": {"scores": ["punsafe>0.9"]}}, dataset="d")
    assert isinstance(config, ScanConfig)
    assert config.pdq.radius == 12 and config.triage.scores == ("punsafe>0.9",)
    with pytest.raises(SafesetError, match="unknown setting 'nope'"):
        config_from_dict({"nope": 1}, dataset="d")
