"""The unit of data flowing through a scan: one Arrow-backed batch of rows from one shard."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

#: Metadata columns that carry image hashes computed when the dataset was downloaded (hex strings).
HASH_ALGORITHMS: tuple[str, ...] = ("md5", "sha1", "sha256")

#: The element types an embedding may have, wherever it is stored (.npy parts, list columns, tar members).
EMBEDDING_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))

#: Every stored member of a shard's samples as the scan read it (webdataset tar members). `clean` copies a
#: member only when it is listed here with `checked` true and its bytes still have this digest, so a release
#: carries, byte for byte, what the scan checked. `digest` is xxh3-128 of the member's bytes (null when the
#: member was not read); `checked` is false for members the scan could not classify or check.
MEMBERS_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("name", pa.string()),
        ("size", pa.int64()),
        ("digest", pa.binary(16)),
        ("checked", pa.bool_()),
    ]
)


@dataclass
class RowBatch:
    """Rows of one shard, in the canonical shape every signal and matcher reads.

    `rows` are positions within the shard (the row index of its metadata table), so that findings
    can be applied back to the shard when cleaning. A row may appear more than once: a sample with several
    image members gives one entry per image (the first carries the row's URL and caption, the others only
    their image), so that every image is hashed and matched; `row_count()` counts distinct rows. `images`
    holds raw image bytes where the format carries them (null for rows without an image); `read_errors` holds
    per-row problems found while reading (a tar member that could not be read, an image missing from its shard).
    """

    shard: str
    rows: np.ndarray  # int64, row index within the shard
    keys: pa.Array | None  # string; None means the rows carry no key and `shard:row` stands in
    urls: pa.Array | None = None  # string
    captions: pa.Array | None = None  # string
    images: pa.Array | None = None  # binary, null where the row has no image
    read_errors: pa.Array | None = None  # string, null where the row was read cleanly
    metadata_hashes: dict[str, pa.Array] = field(default_factory=dict)  # algorithm -> hex string column
    extra: dict[str, pa.Array] = field(default_factory=dict)  # further columns detectors may use
    # One embedding per row (float16 or float32, rows × d), attached only when a detector needs vectors;
    # `embedding_valid` is False where the row has none (a failed download without a vector, say).
    embeddings: np.ndarray | None = None
    embedding_valid: np.ndarray | None = None
    # The members this batch's rows were read from (MEMBERS_SCHEMA), for formats that store samples as
    # several files (webdataset); None for formats whose rows are whole records (parquet).
    members: pa.Table | None = None

    def row_count(self) -> int:
        """Distinct rows in the batch (entries of one multi-image sample share their row)."""
        if len(self.rows) < 2 or bool(np.all(self.rows[1:] > self.rows[:-1])):
            return len(self.rows)
        return len(np.unique(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    def keys_at(self, positions: np.ndarray) -> list[str]:
        """Keys of the rows at these positions within the batch (only flagged rows need keys)."""
        if self.keys is None:
            return [f"{self.shard}:{int(r)}" for r in self.rows[positions]]
        return [str(k) for k in self.keys.take(pa.array(positions, type=pa.int64())).to_pylist()]
