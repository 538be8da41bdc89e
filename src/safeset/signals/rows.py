"""Per-row signals the first pass can keep for the expansion pass (`RUN_DIR/shards/<id>.signals.parquet`):
name -> (Arrow type, how to compute it from a batch's signals). Kinds register theirs (PDQ adds `image_pdq`)."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from safeset.signals.compute import Signals

#: Per-row signals the first pass can keep for expanders: name -> (Arrow type, compute from a batch).
RowSignal = Callable[[Signals], pa.Array]
ROW_SIGNALS: dict[str, tuple[pa.DataType, RowSignal]] = {}


def register_row_signal(name: str, dtype: pa.DataType, compute: RowSignal) -> None:
    ROW_SIGNALS[name] = (dtype, compute)


def _image_md5(signals: Signals) -> pa.Array:
    pair = signals.image_digest("md5")
    if pair is None:
        return pa.nulls(len(signals.batch), pa.binary(16))
    digests, valid = pair
    return pa.array([bytes(d) if ok else None for d, ok in zip(digests, valid, strict=True)], type=pa.binary(16))


register_row_signal("image_md5", pa.binary(16), _image_md5)


def _url(signals: Signals) -> pa.Array:
    urls = signals.batch.urls
    return urls.cast(pa.string()) if urls is not None else pa.nulls(len(signals.batch), pa.string())


# The row's URL: findings of the expansion pass name the row's domain like first-pass findings do.
register_row_signal("url", pa.string(), _url)
