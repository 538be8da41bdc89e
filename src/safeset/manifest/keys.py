"""The keys a copy of a dataset may still carry for a row, computed the same way on both sides of a manifest.

A removal manifest is only useful if a stranger's copy can be joined against it, and copies keep different things:
a subset keeps LAION's `SAMPLE_ID` or `hash`, a re-captioned copy keeps only the URL, a re-downloaded webdataset keeps
only the image bytes (its img2dataset `key` is a fresh position, so it is never trusted across copies). So each
withheld row is listed under every key at once, and a copy is matched on whichever it has.

No key is a URL or caption in the clear: URLs appear only as MD5 digests of their `te` (ThreatExchange
`HASH_URL_MD5`) and `canonical` normal forms, captions only inside LAION's `hash`.

LAION's `hash` is `mmh3.hash64((url + text).encode("utf-8"))[0]` with a missing URL or text taken as '' (signed
int64; rom1504/laion-prepro `laion5B/safety/compute_hashes.py`, `usage_guide/watermark_safety_usage.py`). The
concatenation runs in Arrow; the hash itself is one C call per row (mmh3 has no array API).
"""

from __future__ import annotations

import hashlib

import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.io.batch import RowBatch
from safeset.signals.digests import hash_blobs, hex_to_digests
from safeset.signals.urls import NORMALIZERS

#: Manifest key columns, best first: the order `apply` tries them in and reports them by.
KEY_ORDER: tuple[str, ...] = (
    "dataset_key",
    "sample_id",
    "laion_hash",
    "image_sha256",
    "image_md5",
    "url_canonical_md5",
    "url_te_md5",
)

MANIFEST_SCHEMA = pa.schema(
    [
        ("dataset_key", pa.string()),
        ("sample_id", pa.string()),
        ("laion_hash", pa.int64()),
        ("image_sha256", pa.binary(32)),
        ("image_md5", pa.binary(16)),
        ("url_canonical_md5", pa.binary(16)),
        ("url_te_md5", pa.binary(16)),
    ]
)

#: LAION's own identifier, read as a key wherever a copy carries it.
SAMPLE_ID_COLUMN = "SAMPLE_ID"
#: LAION-5B "joined" metadata's stored `hash` column (a copy keeps it even when it drops the caption).
LAION_HASH_COLUMN = "hash"
#: img2dataset's positional `key` (shard number + row): a fresh download gives other rows the same keys.
POSITIONAL_KEY_COLUMNS = frozenset({"key"})


def laion_hash(url: str | None, text: str | None) -> int:
    """LAION's row hash, exactly as laion-prepro computes it (the scalar reference)."""
    return mmh3.hash64(((url or "") + (text or "")).encode("utf-8"))[0]


def laion_hash_array(urls: pa.Array, captions: pa.Array) -> pa.Array:
    """LAION's row hash for every row (int64): missing URL or caption counts as '', as in LAION's code."""
    joined = pc.binary_join_element_wise(pc.fill_null(urls, ""), pc.fill_null(captions, ""), "")
    values = pc.cast(joined, pa.binary()).to_pylist()
    return pa.array([mmh3.hash64(v)[0] for v in values], type=pa.int64())


def digest_array(digests: np.ndarray, valid: np.ndarray) -> pa.Array:
    """(n, size) uint8 digests as a fixed-size binary array, null where not valid."""
    n, size = digests.shape if digests.ndim == 2 else (0, 0)
    array = pa.Array.from_buffers(pa.binary(size), n, [None, pa.py_buffer(np.ascontiguousarray(digests).tobytes())])
    if valid.all():
        return array
    return pc.if_else(pa.array(valid), array, pa.scalar(None, pa.binary(size)))


def url_digest_array(urls: pa.Array, form: str) -> pa.Array:
    """MD5 of each URL's normal form (`te` or `canonical`), as binary(16); null URLs stay null."""
    forms = NORMALIZERS[form].normalize_array(urls)
    values = pc.cast(forms, pa.binary()).to_pylist()
    empty = bytes(16)
    joined = b"".join(empty if v is None else hashlib.md5(v).digest() for v in values)
    digests = np.frombuffer(joined, dtype=np.uint8).reshape(len(values), 16)
    return digest_array(digests, np.asarray(forms.is_valid().to_numpy(zero_copy_only=False), dtype=bool))


def _is_key_type(t: pa.DataType) -> bool:
    """A column usable as a key (a float or nested SAMPLE_ID in some copy is skipped, not trusted)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)


def _as_string(array: pa.Array) -> pa.Array:
    from safeset.io.columns import text_column

    values, _ = text_column(array, escape_invalid=True)
    return values


def batch_keys(batch: RowBatch, key_column: str | None, *, trust_key: bool) -> dict[str, pa.Array]:
    """Every manifest key this batch can give, one array per key aligned with the batch's entries.

    `key_column` names the column behind `batch.keys`; a positional key is used only with `trust_key` (the
    original dataset itself, or a copy whose user vouches for its keys with --key-col).
    """
    keys: dict[str, pa.Array] = {}
    if batch.keys is not None and key_column is not None and trust_key:
        keys["dataset_key"] = batch.keys
    if key_column == SAMPLE_ID_COLUMN and batch.keys is not None:
        keys["sample_id"] = batch.keys
    elif SAMPLE_ID_COLUMN in batch.extra and _is_key_type(batch.extra[SAMPLE_ID_COLUMN].type):
        keys["sample_id"] = _as_string(batch.extra[SAMPLE_ID_COLUMN])
    if LAION_HASH_COLUMN in batch.extra and pa.types.is_integer(batch.extra[LAION_HASH_COLUMN].type):
        # Unchecked: a copy that stored the signed hash as uint64 holds the same 64 bits.
        keys["laion_hash"] = pc.cast(batch.extra[LAION_HASH_COLUMN], pa.int64(), safe=False)
    elif batch.urls is not None and batch.captions is not None:
        keys["laion_hash"] = laion_hash_array(batch.urls, batch.captions)
    for algorithm, name in (("sha256", "image_sha256"), ("md5", "image_md5")):
        size = 32 if algorithm == "sha256" else 16
        found: pa.Array | None = None
        if batch.images is not None:
            digests, valid = hash_blobs(batch.images, [algorithm])[algorithm]
            found = digest_array(digests, valid)
        column = batch.metadata_hashes.get(algorithm)
        if column is not None:
            from_meta = digest_array(*hex_to_digests(column, size))
            found = from_meta if found is None else pc.coalesce(found, from_meta)
        if found is not None:
            keys[name] = found
    if batch.urls is not None:
        keys["url_canonical_md5"] = url_digest_array(batch.urls, "canonical")
        keys["url_te_md5"] = url_digest_array(batch.urls, "te")
    return keys
