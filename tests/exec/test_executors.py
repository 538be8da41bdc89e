"""Executors spread the work differently but must give identical results: every pass (the scan of shards, the
copy and neighbour searches of the expansion pass, the release) in this process, in a local pool and on a local
Ray cluster."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from safeset.banks.store import BankStore
from safeset.demo import demo_rows, write_webdataset
from safeset.exec.base import Executor
from safeset.exec.local import LocalExecutor
from safeset.policy.actions import ReleasePolicy
from safeset.release.clean import clean_dataset
from safeset.scan.config import config_from_dict
from safeset.scan.driver import run_scan
from tests.conftest import image_rows, write_list
from tests.embed.layout import at_cosine, random_unit, write_laion_layout

OUTPUTS = ("findings.parquet", "errors.parquet", "expansions.parquet")


@pytest.fixture
def webdataset_and_banks(tmp_path: Path) -> tuple[Path, Path]:
    shards = demo_rows(shards=4, rows_per_shard=10)
    write_webdataset(tmp_path / "ds", shards)
    banks = tmp_path / "banks"
    known = image_rows(shards)[::9]
    BankStore(banks).add(
        "k", "md5", write_list(tmp_path / "k.txt", [hashlib.md5(r.image or b"").hexdigest() for r in known])
    )
    return tmp_path / "ds", banks


@pytest.fixture
def laion_and_banks(tmp_path: Path) -> tuple[Path, Path]:
    """Two embedding parts with neighbours of two seeds planted in both, and a top-k that must hold globally."""
    rng = np.random.default_rng(7)
    vectors = random_unit(500, 32, rng)
    spots = iter([20, 120, 299, 300, 310, 420, 499, 5])
    for seed in (10, 350):
        for cosine in (0.97, 0.9, 0.86, 0.84):
            vectors[next(spots)] = at_cosine(vectors[seed], cosine, rng)
    root = write_laion_layout(tmp_path / "laion", [vectors[:300], vectors[300:]])
    banks = tmp_path / "laion-banks"
    md5s = [hashlib.md5(f"image-{row}".encode()).hexdigest() for row in (10, 350)]
    BankStore(banks).add("known", "md5", write_list(tmp_path / "md5.txt", md5s))
    return root, banks


def _run(dataset: Path, banks: Path, out: Path, executor: Executor, policy: dict[str, object]) -> dict[str, object]:
    names = tuple(info.name for info in BankStore(banks).list())
    config = config_from_dict(policy, dataset=str(dataset), banks_dir=str(banks), bank_names=names)
    return run_scan(config, out, executor=executor).summary


def _same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _release(dataset: Path, run: Path, out: Path, executor: Executor) -> dict[str, bytes]:
    """Every file of the release but its public record (which names the release id and time), by path."""
    clean_dataset(dataset, run, out, ReleasePolicy(), executor=executor)
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert files.pop("_safeset/release.json")
    return files


COPIES = {"expanders": ["duplicate"]}
NEIGHBOURS = {"expanders": ["neighbor"], "neighbor": {"threshold": 0.85, "top_k": 2, "hops": 2}}


def test_local_pool_matches_one_process(
    webdataset_and_banks: tuple[Path, Path], laion_and_banks: tuple[Path, Path], tmp_path: Path
) -> None:
    for (dataset, banks), policy, name in (
        (webdataset_and_banks, COPIES, "copies"),
        (laion_and_banks, NEIGHBOURS, "nn"),
    ):
        one = _run(dataset, banks, tmp_path / f"{name}-one", LocalExecutor(1), policy)
        pool = _run(dataset, banks, tmp_path / f"{name}-pool", LocalExecutor(2), policy)
        assert (
            one["rows_flagged"] == pool["rows_flagged"] and one["findings_by_detector"] == pool["findings_by_detector"]
        )
        _same_outputs(tmp_path / f"{name}-one", tmp_path / f"{name}-pool")
        released = _release(dataset, tmp_path / f"{name}-one", tmp_path / f"{name}-rel-one", LocalExecutor(1))
        assert released == _release(dataset, tmp_path / f"{name}-pool", tmp_path / f"{name}-rel-pool", LocalExecutor(2))
        assert len(released) > 1
    assert one["findings_by_detector"].get("neighbor", 0) > 0  # the expansion pass did find something


@pytest.mark.slow
def test_ray_executor_matches_local(
    webdataset_and_banks: tuple[Path, Path], laion_and_banks: tuple[Path, Path], tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    from safeset.exec.ray import RayExecutor

    seen: list[str] = []
    try:
        executor = RayExecutor(num_cpus=2)
        dataset, banks = webdataset_and_banks
        local = _run(dataset, banks, tmp_path / "local", LocalExecutor(1), COPIES)
        names = tuple(info.name for info in BankStore(banks).list())
        config = config_from_dict(COPIES, dataset=str(dataset), banks_dir=str(banks), bank_names=names)
        distributed = run_scan(
            config, tmp_path / "ray", executor=executor, on_shard=lambda r: seen.append(r.shard)
        ).summary
        released = _release(dataset, tmp_path / "local", tmp_path / "rel-local", LocalExecutor(1))
        assert released == _release(dataset, tmp_path / "ray", tmp_path / "rel-ray", executor)
        dataset, banks = laion_and_banks
        _run(dataset, banks, tmp_path / "nn-local", LocalExecutor(1), NEIGHBOURS)
        _run(dataset, banks, tmp_path / "nn-ray", executor, NEIGHBOURS)
    finally:
        ray.shutdown()
    assert sorted(seen) == ["00000.tar", "00001.tar", "00002.tar", "00003.tar"]
    assert distributed["rows_flagged"] == local["rows_flagged"] > 0
    assert local["findings_by_detector"].get("duplicate", 0) > 0
    _same_outputs(tmp_path / "local", tmp_path / "ray")
    _same_outputs(tmp_path / "nn-local", tmp_path / "nn-ray")


def test_passes_run_in_the_driver_reuse_its_open_dataset(
    laion_and_banks: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one process, the neighbour rounds and the release work on the dataset the driver opened: the
    dataset is opened once by the scan and once by clean, not again per round or per pass."""
    import safeset.io.detect as detect

    opened: list[str] = []
    real_open = detect.open_dataset

    def counting_open(*args: object, **kwargs: object) -> object:
        opened.append(str(args[0]))
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    for module in ("safeset.io.detect", "safeset.scan.task", "safeset.expansion.base", "safeset.release.clean"):
        monkeypatch.setattr(f"{module}.open_dataset", counting_open)
    dataset, banks = laion_and_banks
    _run(dataset, banks, tmp_path / "run", LocalExecutor(1), NEIGHBOURS)
    assert len(opened) == 1  # the scan's; two hops of neighbour search reused it
    _release(dataset, tmp_path / "run", tmp_path / "release", LocalExecutor(1))
    assert len(opened) == 2  # clean's own; its shards reused it
