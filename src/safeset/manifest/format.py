"""The removal manifest on disk: `manifest.parquet` (the withheld rows by every key) + `manifest.json` (what it is).

Self-describing and versioned so that a copy-holder years later can tell what they hold: format version, a digest
of the source dataset (sha256 over the scan's shard pins, so two manifests of the same dataset say so), counts,
the roadmap bound the withheld rows were drawn under, creation time, and the sha256 of the parquet file, which is
checked on every read. An optional ed25519 signature over `manifest.json` (`manifest.json.sig`, raw 64 bytes)
lets a copy-holder check that the manifest comes from the dataset's maintainer; since the json names the
parquet's digest, the signature covers both. `cryptography` provides ed25519 (PEM keys, `safeset manifest keygen`).

Withheld rows are true removals and decoys together; nothing in either file says which is which.
Everything read here may be hostile: each failure is one SafesetError line naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from safeset import __version__
from safeset.errors import SafesetError
from safeset.fsutil import atomic_path, make_private_dir, sha256_file, write_json, write_parquet
from safeset.manifest.keys import KEY_ORDER, MANIFEST_SCHEMA

FORMAT_VERSION = 1
FORMAT_NAME = "safeset-removal-manifest"
PARQUET_NAME = "manifest.parquet"
JSON_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"


@dataclass(frozen=True)
class Manifest:
    """A manifest as read back: its rows (MANIFEST_SCHEMA) and its description."""

    table: pa.Table
    info: dict[str, Any]
    folder: Path
    signed: bool  # a signature was present and verified against the key given

    @property
    def key_column(self) -> str | None:
        return self.info.get("key_column")


def dataset_digest(shard_pins: list[dict[str, Any]]) -> str:
    """sha256 over the scan's per-shard file pins (path, size, xxh3-128), in shard order."""
    canonical = json.dumps(shard_pins, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def check_new_folder(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SafesetError(f"{folder} exists and is not an empty folder; choose a new manifest folder")


def write_manifest(
    folder: Path,
    table: pa.Table,
    *,
    source_dataset_digest: str,
    counts: dict[str, int],
    roadmap: dict[str, Any],
    key_column: str | None,
    sign_key: Path | None = None,
) -> Path:
    """Write the manifest (0700 folder, 0600 files); sign `manifest.json` with `sign_key` (PEM ed25519) if given."""
    check_new_folder(folder)
    private_key = load_private_key(sign_key) if sign_key is not None else None  # fail before writing anything
    make_private_dir(folder)
    table = table.select(list(MANIFEST_SCHEMA.names)).cast(MANIFEST_SCHEMA)
    write_parquet(folder / PARQUET_NAME, table, private=True)
    info = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "source_dataset_sha256": source_dataset_digest,
        "key_column": key_column,
        "keys": [k for k in KEY_ORDER if table[k].null_count < table.num_rows],
        "counts": {**counts, "entries": table.num_rows},
        "roadmap": roadmap,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "parquet_sha256": sha256_file(folder / PARQUET_NAME),
        "safeset_version": __version__,
    }
    write_json(folder / JSON_NAME, info, private=True)
    if private_key is not None:
        signature = private_key.sign((folder / JSON_NAME).read_bytes())
        with atomic_path(folder / SIGNATURE_NAME, private=True) as tmp:
            tmp.write_bytes(signature)
    return folder


def read_manifest(folder: Path, verify_key: Path | None = None) -> Manifest:
    """Read and check a manifest: json well-formed and of a known version, parquet digest as recorded, columns of
    the expected types, entry count as recorded; the signature too when `verify_key` is given."""
    json_path, parquet_path, sig_path = folder / JSON_NAME, folder / PARQUET_NAME, folder / SIGNATURE_NAME
    if not json_path.is_file() or not parquet_path.is_file():
        raise SafesetError(f"{folder}: not a removal manifest ({JSON_NAME} and {PARQUET_NAME} expected)")
    try:
        raw = json_path.read_bytes()
        info = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafesetError(f"{json_path}: unreadable or damaged manifest description ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise SafesetError(f"{json_path}: not a safeset removal manifest")
    if info.get("format_version") != FORMAT_VERSION:
        raise SafesetError(
            f"{json_path}: manifest format version {info.get('format_version')!r} is not supported "
            f"(this safeset reads version {FORMAT_VERSION})"
        )
    signed = False
    if verify_key is not None:
        public_key = load_public_key(verify_key)
        if not sig_path.is_file():
            raise SafesetError(f"{folder}: the manifest is not signed ({SIGNATURE_NAME} missing) but a key was given")
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(sig_path.read_bytes(), raw)
        except InvalidSignature:
            raise SafesetError(
                f"{json_path}: the signature does not match {verify_key}; the manifest was altered or signed by "
                "another key"
            ) from None
        signed = True
    recorded = info.get("parquet_sha256")
    if not isinstance(recorded, str) or sha256_file(parquet_path) != recorded:
        raise SafesetError(f"{parquet_path}: sha256 differs from the one {JSON_NAME} records; the manifest was altered")
    try:
        table = pq.ParquetFile(parquet_path).read()
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SafesetError(f"{parquet_path}: unreadable manifest table ({exc})") from None
    for field in MANIFEST_SCHEMA:
        if field.name not in table.schema.names:
            raise SafesetError(f"{parquet_path}: column {field.name!r} missing")
        if table.schema.field(field.name).type != field.type:
            raise SafesetError(
                f"{parquet_path}: column {field.name!r} has type {table.schema.field(field.name).type}, "
                f"expected {field.type}"
            )
    counts = info.get("counts")
    if not isinstance(counts, dict) or counts.get("entries") != table.num_rows:
        raise SafesetError(f"{parquet_path}: holds {table.num_rows} entries, {JSON_NAME} records another count")
    return Manifest(table.select(list(MANIFEST_SCHEMA.names)), info, folder, signed)


# --------------------------------------------------------------------------------------------------------------
# ed25519 keys


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """A new ed25519 key pair as PEM files: the private key 0600, the public key for copy-holders."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for path in (private_path, public_path):
        if path.exists():
            raise SafesetError(f"{path} exists; choose a new file name (keys are never overwritten)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with atomic_path(private_path, private=True) as tmp:
        tmp.write_bytes(private_pem)
    with atomic_path(public_path) as tmp:
        tmp.write_bytes(public_pem)


def load_private_key(path: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SafesetError(f"{path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SafesetError(f"{path}: not an ed25519 private key")
    return key


def load_public_key(path: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SafesetError(f"{path}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SafesetError(f"{path}: not an ed25519 public key")
    return key
