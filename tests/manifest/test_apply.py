"""A manifest made by `clean` removes exactly its rows from copies that kept different keys."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from safeset.demo import DemoRow, write_webdataset
from safeset.errors import SafesetError
from safeset.io.columns import ColumnOptions
from safeset.manifest import Manifest, apply_to_copy, apply_to_hf_dataset, apply_to_table, read_manifest
from safeset.policy.actions import ReleasePolicy
from safeset.release.clean import clean_dataset
from tests.conftest import image_rows
from tests.helpers import scan
from tests.manifest.planted import write_planted


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Manifest, pa.Table, set[str], Path]:
    """A manifest of a planted parquet dataset's flagged rows (no decoys, so it lists exactly the planted rows)."""
    dataset, banks, table, urls = write_planted(tmp_path / "ds", tmp_path)
    scan(dataset, banks, tmp_path / "run")
    clean_dataset(
        dataset, tmp_path / "run", tmp_path / "release", ReleasePolicy(roadmap_bound=0.0), manifest_dir=tmp_path / "m"
    )
    return read_manifest(tmp_path / "m"), table, urls, dataset


def _urls(table: pa.Table, column: str = "URL") -> list[str]:
    return table[column].to_pylist()


def test_manifest_lists_every_key_and_no_url_or_caption(planted: tuple[Manifest, pa.Table, set[str], Path]) -> None:
    manifest, table, urls, _ = planted
    assert manifest.table.num_rows == len(urls) == manifest.info["counts"]["rows_withheld"]
    assert manifest.info["keys"] == [
        "dataset_key", "sample_id", "laion_hash", "url_canonical_md5", "url_te_md5"
    ]  # fmt: skip
    raw = b"".join(p.read_bytes() for p in manifest.folder.iterdir())
    for url in urls:
        assert url.encode() not in raw
    for row in table.filter(pc.is_in(table["URL"], value_set=pa.array(sorted(urls)))).to_pylist():
        assert row["TEXT"].encode() not in raw
    for path in manifest.folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_ten_percent_subset_with_other_columns(planted: tuple[Manifest, pa.Table, set[str], Path]) -> None:
    manifest, table, urls, _ = planted
    rng = np.random.default_rng(3)
    subset = table.take(pa.array(np.sort(rng.choice(table.num_rows, table.num_rows // 10, replace=False))))
    # The subset kept LAION's hash and the URL, dropped SAMPLE_ID and the caption, and added a column of its own.
    subset = subset.select(["URL", "hash", "WIDTH"]).append_column("aesthetic", pa.array(np.ones(subset.num_rows)))
    kept, report = apply_to_table(manifest, subset)
    planted_here = [u for u in _urls(subset) if u in urls]
    assert planted_here and not set(_urls(kept)) & urls
    assert kept.num_rows == subset.num_rows - len(planted_here)
    assert kept.column_names == subset.column_names
    assert report.removed_by_key == {"laion_hash": len(planted_here)}
    assert report.manifest_entries_not_in_copy == len(urls) - len(planted_here)


def test_a_reordered_copy_on_disk(planted: tuple[Manifest, pa.Table, set[str], Path], tmp_path: Path) -> None:
    manifest, table, urls, _ = planted
    copy = tmp_path / "copy"
    copy.mkdir()
    shuffled = table.take(pa.array(np.random.default_rng(5).permutation(table.num_rows)))
    pq.write_table(shuffled.slice(0, 700), copy / "a.parquet")
    pq.write_table(shuffled.slice(700), copy / "b.parquet")
    report = apply_to_copy(manifest, copy, tmp_path / "cleaned")
    cleaned = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "cleaned").glob("*.parquet")))
    assert set(_urls(cleaned)) == set(_urls(table)) - urls and cleaned.num_rows == table.num_rows - len(urls)
    assert cleaned.schema == table.schema
    assert (report.rows_in, report.rows_removed, report.manifest_entries_not_in_copy) == (table.num_rows, len(urls), 0)
    assert report.removed_by_key == {"dataset_key": len(urls)}  # SAMPLE_ID: a stable key, the best one


def test_a_recaptioned_copy_matches_by_url(planted: tuple[Manifest, pa.Table, set[str], Path]) -> None:
    manifest, table, urls, _ = planted
    recaptioned = pa.table({"url": table["URL"], "caption": pa.array([f"new caption {i}" for i in range(len(table))])})
    kept, report = apply_to_table(manifest, recaptioned)
    assert set(_urls(kept, "url")) == set(_urls(table)) - urls
    assert report.removed_by_key == {"url_canonical_md5": len(urls)}
    assert report.keys_available == ["laion_hash", "url_canonical_md5", "url_te_md5"]  # the hash cannot match


def test_a_hugging_face_dataset(planted: tuple[Manifest, pa.Table, set[str], Path]) -> None:
    datasets = pytest.importorskip("datasets")
    manifest, table, urls, _ = planted
    dataset = datasets.Dataset(table.select(["SAMPLE_ID", "URL", "punsafe"])).shuffle(seed=1)
    kept, report = apply_to_hf_dataset(manifest, dataset)
    assert kept["URL"] == [u for u in dataset["URL"] if u not in urls]  # the shuffled order, kept
    assert set(kept["URL"]) == set(_urls(table)) - urls and len(kept) == len(table) - len(urls)
    assert report.removed_by_key == {"dataset_key": len(urls)}  # SAMPLE_ID keys both the dataset and the copy


def _redownloaded(shards: list[list[DemoRow]]) -> list[list[DemoRow]]:
    """Same images, fetched again: new positional keys (the old ones shifted onto other rows), other URLs and
    captions, rows in another order."""
    rows = [r for shard in shards for r in shard if r.image is not None][::-1]
    out = []
    for i, row in enumerate(rows):
        out.append(DemoRow(key=f"{i // 12:05d}{i % 12:04d}", url=f"https://mirror.example.com/{i}.jpg",
                           caption=f"re-downloaded {i}", image=row.image))  # fmt: skip
    return [out[i : i + 12] for i in range(0, len(out), 12)]


def test_a_redownloaded_webdataset_matches_by_content(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], demo_shards: list[list[DemoRow]], tmp_path: Path
) -> None:
    banks, known = md5_bank
    scan(webdataset_dir, banks, tmp_path / "run")
    clean_dataset(
        webdataset_dir,
        tmp_path / "run",
        tmp_path / "release",
        ReleasePolicy(roadmap_bound=0.0),
        manifest_dir=tmp_path / "m",
    )
    manifest = read_manifest(tmp_path / "m")
    copy_rows = _redownloaded(demo_shards)
    write_webdataset(tmp_path / "copy", copy_rows, md5_column=False)
    report = apply_to_copy(manifest, tmp_path / "copy", tmp_path / "cleaned")
    known_images = {r.image for r in known}
    expected = {r.key for shard in copy_rows for r in shard if r.image not in known_images}
    cleaned_keys = {k for p in (tmp_path / "cleaned").glob("*.parquet") for k in pq.read_table(p)["key"].to_pylist()}
    assert cleaned_keys == expected
    assert report.rows_removed == len(known) and report.removed_by_key == {"image_sha256": len(known)}
    assert report.manifest_entries_not_in_copy == 0
    assert len(image_rows(copy_rows)) == report.rows_in


def test_embedding_parts_stay_aligned(tmp_path: Path) -> None:
    from safeset.manifest.format import write_manifest
    from safeset.manifest.keys import MANIFEST_SCHEMA, url_digest_array
    from tests.embed.layout import random_unit, write_laion_layout

    rng = np.random.default_rng(0)
    parts = [random_unit(30, 8, rng), random_unit(25, 8, rng)]
    copy = write_laion_layout(tmp_path / "laion", parts)
    metadata = pa.concat_tables(pq.read_table(p) for p in sorted((copy / "metadata").glob("*.parquet")))
    withheld = metadata["URL"].to_pylist()[3::9]
    n = len(withheld)
    entries = {f.name: pa.nulls(n, f.type) for f in MANIFEST_SCHEMA}
    entries["url_canonical_md5"] = url_digest_array(pa.array(withheld), "canonical")
    write_manifest(
        tmp_path / "m",
        pa.table(entries, schema=MANIFEST_SCHEMA),
        source_dataset_digest="0" * 64,
        counts={"rows_withheld": n},
        roadmap={},
        key_column=None,
    )
    report = apply_to_copy(read_manifest(tmp_path / "m"), copy, tmp_path / "cleaned")
    assert report.rows_removed == n and report.removed_by_key == {"url_canonical_md5": n}
    original = {}
    for number, part in enumerate(parts):
        urls = pq.read_table(copy / "metadata" / f"metadata_{number:04d}.parquet")["URL"].to_pylist()
        original.update(zip(urls, part, strict=True))
    for number in range(len(parts)):
        kept = pq.read_table(tmp_path / "cleaned" / "metadata" / f"metadata_{number:04d}.parquet")["URL"].to_pylist()
        vectors = np.load(tmp_path / "cleaned" / "img_emb" / f"img_emb_{number:04d}.npy")
        assert len(kept) == len(vectors) and not set(kept) & set(withheld)
        expected = np.array([original[url] for url in kept]).astype(np.float16)
        assert np.array_equal(vectors, expected)


def test_odd_key_types_in_a_copy_are_skipped_or_reinterpreted(
    planted: tuple[Manifest, pa.Table, set[str], Path],
) -> None:
    manifest, table, urls, _ = planted
    copy = pa.table(
        {
            "SAMPLE_ID": pc.cast(table["SAMPLE_ID"], pa.float64()),  # a float id is no key
            "hash": pc.cast(table["hash"], pa.uint64(), safe=False),  # the same 64 bits, unsigned
            "name": pa.array([f"n{i}" for i in range(table.num_rows)]),
        }
    )
    with pytest.raises(SafesetError, match="column 'SAMPLE_ID' has type double"):
        apply_to_table(manifest, copy)  # detected as the row key, and a float key is refused in one line
    kept, report = apply_to_table(manifest, copy, ColumnOptions(key_col="name"))
    assert kept.num_rows == table.num_rows - len(urls)
    assert report.removed_by_key == {"laion_hash": len(urls)}
