"""Dataset locations: how a run records them (a lone local path exactly as before, so resumed runs still match),
how the typed configuration takes one or several, and that any location string ends in a location or one
SafesetError, never another exception."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeset.errors import SafesetError
from safeset.io.detect import open_dataset
from safeset.io.location import config_dataset, normalised_spec, relative_id, resolve_location, scheme_of
from safeset.scan.config import ScanConfig, config_from_dict, load_policy, policy_toml


def test_a_lone_local_path_is_recorded_as_runs_always_recorded_it(tmp_path: Path) -> None:
    for spec in ("data", "data/", "./data/../data", str(tmp_path / "x")):
        assert normalised_spec(spec) == str(Path(spec).resolve())
    assert normalised_spec(["a", "s3://bucket/prefix/"]) == [str(Path("a").resolve()), "s3://bucket/prefix"]
    assert config_dataset(["data/"]) == "data" and config_dataset(["a", "b"]) == ("a", "b")
    assert scheme_of("file:///x") == "" and scheme_of("S3://b/k") == "s3" and scheme_of("C:/x") == ""


def test_the_configuration_takes_one_location_or_several(tmp_path: Path) -> None:
    one = config_from_dict({}, dataset="data")
    several = config_from_dict({"dataset": ["a/*.tar", "s3://b/c"]})
    assert one.dataset == "data" and several.dataset == ("a/*.tar", "s3://b/c")
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_toml(several))
    assert load_policy(policy) == several
    with pytest.raises(SafesetError, match="dataset"):
        config_from_dict({"dataset": 3})
    assert ScanConfig("data").fingerprint([])["settings"]["dataset"] == str(Path("data").resolve())


def test_relative_ids_of_remote_files() -> None:
    from upath import UPath

    root = UPath("memory://bucket/data")
    assert relative_id(UPath("memory://bucket/data/a/b.tar"), root) == "a/b.tar"
    with pytest.raises(ValueError):
        relative_id(UPath("memory://bucket/database/b.tar"), root)  # a sibling sharing a name prefix is not inside


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(
        st.text(alphabet=string.ascii_letters + string.digits + "*?[]{}/.-_ \\\x00é", max_size=20),
        min_size=1,
        max_size=3,
    ),
    remote=st.booleans(),
)
def test_any_location_string_resolves_or_is_one_safeset_error(tmp_path: Path, entries: list[str], remote: bool) -> None:
    (tmp_path / "d").mkdir(exist_ok=True)
    (tmp_path / "d" / "a.parquet").write_bytes(b"x")
    # Joined as text: a Path join with an entry starting with "/" would leave the test folder for the root.
    specs = [f"memory://hyp-{e}" if remote else f"{tmp_path / 'd'}/{e}" for e in entries]
    try:
        where = resolve_location(specs)
    except SafesetError as exc:
        assert "\n" not in str(exc)
        return
    assert where.files is None or all(f.is_file() for f in where.files)


def test_a_folder_that_cannot_be_listed_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root may read what a permission check would refuse anyone else, so the refusal is simulated."""
    (tmp_path / "d" / "locked").mkdir(parents=True)
    (tmp_path / "e").mkdir()

    def refuse(self: Path, pattern: str) -> object:
        raise PermissionError(13, "Permission denied", str(tmp_path / "d" / "locked"))

    monkeypatch.setattr(Path, "rglob", refuse)
    with pytest.raises(SafesetError, match=r"locked.*cannot be listed \(Permission denied\)"):
        resolve_location([str(tmp_path / "d"), str(tmp_path / "e")])  # several entries: listed here
    with pytest.raises(SafesetError, match=r"locked.*cannot be listed \(Permission denied\)"):
        open_dataset(tmp_path / "d")  # one folder: listed when its format is detected
