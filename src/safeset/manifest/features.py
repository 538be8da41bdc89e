"""What a diff-reader can observe of a withheld row, as features: the decoys are matched on them and the adversary
in `audit-roadmap` is trained on them, so both sides see the same thing.

Observable: the score columns LAION published (`punsafe`, `pwatermark`, `similarity`, aesthetic scores, the
`NSFW` tag), image size (`WIDTH`/`HEIGHT`), caption length and whether it leaves ASCII (a cheap stand-in for
language/script), URL length, and the registrable domain (a category). Everything is computed per batch in Arrow.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.io.batch import RowBatch
from safeset.signals.urls import hosts_array, registrable_domain

SCORE_COLUMNS = ("punsafe", "pwatermark", "similarity", "aesthetic", "AESTHETIC_SCORE", "NSFW")
SIZE_COLUMNS = ("WIDTH", "HEIGHT", "width", "height")
NSFW_TAGS = {"UNLIKELY": 0.0, "UNSURE": 1.0, "NSFW": 2.0}
DOMAIN = "domain"
#: Domains kept as their own category (the rest share one): HistGradientBoosting takes at most 255 categories.
MAX_DOMAIN_CATEGORIES = 250


def observable_columns(names: list[str]) -> tuple[str, ...]:
    """The metadata columns worth reading for features, among those a dataset has."""
    return tuple(c for c in (*SCORE_COLUMNS, *SIZE_COLUMNS) if c in names)


def _numeric(array: pa.Array, name: str) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if name == "NSFW" or pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        values = pc.cast(array, pa.string()) if not pa.types.is_string(array.type) else array
        codes = np.full(len(values), 3.0)  # an unknown tag is a category of its own
        for tag, code in NSFW_TAGS.items():
            codes[np.asarray(pc.fill_null(pc.equal(values, tag), False))] = code
        codes[np.asarray(values.is_null())] = np.nan
        return codes
    try:
        return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(len(array), np.nan)


def domains_of(urls: pa.Array) -> pa.Array:
    """Registrable domain of each URL (null where none): the Public Suffix List looked up once per distinct host."""
    hosts = hosts_array(urls).dictionary_encode()
    lookup = pa.array([registrable_domain(h) if h else None for h in hosts.dictionary.to_pylist()], type=pa.string())
    return lookup.take(hosts.indices)


def batch_features(batch: RowBatch, columns: tuple[str, ...]) -> tuple[np.ndarray, pa.Table]:
    """(distinct rows, features) of a batch: one row per distinct row (a multi-image sample counts once)."""
    rows, first = np.unique(batch.rows, return_index=True)
    take = pa.array(first, type=pa.int64())
    out: dict[str, pa.Array | np.ndarray] = {}
    for column in columns:
        if column in batch.extra:
            out[column] = _numeric(batch.extra[column].take(take), column)
    if batch.captions is not None:
        captions = batch.captions.take(take)
        out["caption_length"] = np.asarray(pc.fill_null(pc.utf8_length(captions), 0), dtype=np.float64)
        out["caption_non_ascii"] = 1.0 - np.asarray(pc.fill_null(pc.string_is_ascii(captions), True), dtype=np.float64)
    if batch.urls is not None:
        urls = batch.urls.take(take)
        out["url_length"] = np.asarray(pc.fill_null(pc.utf8_length(urls), 0), dtype=np.float64)
        out[DOMAIN] = domains_of(urls)
    return rows, pa.table(
        {k: (v if isinstance(v, pa.Array) else pa.array(v, type=pa.float64())) for k, v in out.items()}
    )


def feature_matrix(features: pa.Table, rank_domains_by: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Features as a float matrix for scikit-learn, and the index of the categorical (domain) column if any.

    Domains become category codes: the most frequent among the rows `rank_domains_by` marks (the true removals
    when matching, all rows when auditing) get their own codes, every other domain shares the last one.
    """
    numeric = [c for c in features.column_names if c != DOMAIN]
    columns = [np.asarray(features[c].to_numpy(zero_copy_only=False), dtype=np.float64) for c in numeric]
    categorical: list[int] = []
    if DOMAIN in features.column_names:
        encoded = pc.fill_null(features[DOMAIN], "").combine_chunks().dictionary_encode()
        codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        weight = np.ones(len(codes), dtype=bool) if rank_domains_by is None else rank_domains_by
        counts = np.bincount(codes[weight], minlength=len(encoded.dictionary))
        order = np.argsort(-counts, kind="stable")[:MAX_DOMAIN_CATEGORIES]
        mapping = np.full(len(encoded.dictionary), MAX_DOMAIN_CATEGORIES, dtype=np.float64)
        mapping[order] = np.arange(len(order))
        categorical.append(len(columns))
        columns.append(mapping[codes])
    if not columns:
        return np.zeros((features.num_rows, 0)), []
    return np.column_stack(columns), categorical
