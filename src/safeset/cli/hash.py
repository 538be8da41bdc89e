"""`safeset hash`: MD5 and PDQ of image files, in the form `bank add` imports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from safeset.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("hash")(hash_files)


def hash_files(
    files: Annotated[list[Path], typer.Argument(help="Image files.")],
    mode: Annotated[str, typer.Option("--mode", help="fast or exact (the reference tool's pipeline).")] = "fast",
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Add the 8 rotation/flip hashes (original, rotate90, ... flipminus1).")
    ] = False,
) -> None:
    """Print `path, md5, pdq (64 hex), quality` per file, tab-separated: the tool for building PDQ banks.

    The output imports as is with `safeset bank add --kind pdq` (hash and quality) or `--kind md5`.

    An unreadable file gets an error line on stderr naming it; the others are still hashed; exit status 1.
    """
    import hashlib

    from safeset.signals.pdq import MODES, hash_images

    if mode not in MODES:
        console.print(f"[bold red]error:[/] unknown --mode {mode!r}; choose {' or '.join(MODES)}", highlight=False)
        raise typer.Exit(2)
    failed = 0
    for path in files:
        try:
            blob = path.read_bytes()
        except OSError as exc:
            console.print(
                f"[bold red]error:[/] {path}: cannot read: {exc.strerror or exc}", highlight=False, soft_wrap=True
            )
            failed += 1
            continue
        result = hash_images([blob], mode, dihedral=dihedral)
        if not result.valid[0]:
            console.print(f"[bold red]error:[/] {path}: {result.errors[0]}", highlight=False, soft_wrap=True)
            failed += 1
            continue
        fields = [str(path), hashlib.md5(blob).hexdigest(), result.hex(0), str(int(result.quality[0]))]
        if dihedral and result.dihedral is not None:
            fields += [bytes(h).hex() for h in result.dihedral[0]]
        sys.stdout.write("\t".join(fields) + "\n")
    sys.stdout.flush()
    if failed:
        raise typer.Exit(1)


