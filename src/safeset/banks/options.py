"""How a kind's import options are declared, so that `bank add` can offer each kind exactly its own flags.

A kind's options are a frozen dataclass; each field's metadata gives the flag's help and, where the command line
spells the value differently from the field (a comma list, `all`/`none`), how to read it (`parse`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field
from typing import Any


def option(default: Any, help: str, parse: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field that is also a `bank add` flag (`--name-with-dashes`)."""
    return field(default=default, metadata={"help": help, "parse": parse})


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def options_from(cls: type, values: dict[str, Any], kind: str) -> Any:
    """Options of type `cls` from keyword values (None meaning "not given"), refusing names `cls` does not have."""
    from safeset.errors import SafesetError

    given = {k: v for k, v in values.items() if v is not None}
    known = {f.name for f in dataclasses.fields(cls)} if cls is not None else set()
    refused = sorted(set(given) - known)
    if refused:
        flags = ", ".join(flag_name(name) for name in refused)
        raise SafesetError(f"{flags} do(es) not apply to banks of kind {kind!r}")
    if cls is None:
        return None
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return cls(**converted)
