"""`safeset hash`: MD5 and PDQ of image files, in the form `bank add` imports.

Files are hashed in batches (one decode per image; the DCT and bits run once per batch) on every core by
default: building a bank or checking a folder is embarrassingly parallel, and output order stays the input's.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from safeset.cli.common import console

#: Files per task: large enough that the batched DCT pays off, small enough to spread a short list over cores.
FILES_PER_TASK = 64


def register(app: typer.Typer) -> None:
    app.command("hash")(hash_files)


@dataclass(frozen=True)
class HashOptions:
    mode: str
    dihedral: bool


@dataclass(frozen=True)
class HashedFile:
    path: str
    fields: list[str] | None  # path, md5, pdq, quality (+ 8 dihedral hashes); None when it failed
    error: str | None


def hash_paths(paths: list[str], options: HashOptions) -> list[HashedFile]:
    """Hash one batch of files (run in a worker process, or in this one with --processes 1)."""
    from safeset.signals.pdq import hash_images

    blobs: list[bytes | None] = []
    read_errors: list[str | None] = []
    for path in paths:
        try:
            blobs.append(Path(path).read_bytes())
            read_errors.append(None)
        except OSError as exc:
            blobs.append(None)
            read_errors.append(f"cannot read: {exc.strerror or exc}")
    result = hash_images(blobs, options.mode, dihedral=options.dihedral)
    out = []
    for i, (path, blob) in enumerate(zip(paths, blobs, strict=True)):
        if blob is None or not result.valid[i]:
            out.append(HashedFile(path, None, read_errors[i] or result.errors[i]))
            continue
        fields = [path, hashlib.md5(blob).hexdigest(), result.hex(i), str(int(result.quality[i]))]
        if options.dihedral and result.dihedral is not None:
            fields += [bytes(h).hex() for h in result.dihedral[i]]
        out.append(HashedFile(path, fields, None))
    return out


def _batches(paths: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(paths), FILES_PER_TASK):
        yield paths[start : start + FILES_PER_TASK]


def hash_files(
    files: Annotated[list[Path], typer.Argument(help="Image files.")],
    mode: Annotated[str, typer.Option("--mode", help="fast or exact (the reference tool's pipeline).")] = "fast",
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Add the 8 rotation/flip hashes (original, rotate90, ... flipminus1).")
    ] = False,
    processes: Annotated[
        int, typer.Option("--processes", min=0, help="Worker processes (0: one per available core).")
    ] = 0,
) -> None:
    """Print `path, md5, pdq (64 hex), quality` per file, tab-separated: the tool for building PDQ banks.

    The output imports as is with `safeset bank add --kind pdq` (hash and quality) or `--kind md5`.

    An unreadable file gets an error line on stderr naming it; the others are still hashed; exit status 1.
    """
    from safeset.signals.pdq import MODES

    if mode not in MODES:
        console.print(f"[bold red]error:[/] unknown --mode {mode!r}; choose {' or '.join(MODES)}", highlight=False)
        raise typer.Exit(2)
    options = HashOptions(mode, dihedral)
    paths = [str(p) for p in files]
    workers = processes or len(os.sched_getaffinity(0))
    workers = max(1, min(workers, -(-len(paths) // FILES_PER_TASK)))
    failed = 0

    def report(batch: list[HashedFile]) -> None:
        nonlocal failed
        for item in batch:
            if item.fields is None:
                console.print(f"[bold red]error:[/] {item.path}: {item.error}", highlight=False, soft_wrap=True)
                failed += 1
            else:
                sys.stdout.write("\t".join(item.fields) + "\n")

    if workers == 1:
        for chunk in _batches(paths):
            report(hash_paths(chunk, options))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for batch in pool.map(hash_paths, _batches(paths), [options] * -(-len(paths) // FILES_PER_TASK)):
                report(batch)
    sys.stdout.flush()
    if failed:
        raise typer.Exit(1)
