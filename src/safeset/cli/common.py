"""What every command module shares: the consoles, one-line errors instead of tracebacks, progress bars."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from safeset.errors import SafesetError
from safeset.fsutil import disk_full

console = Console(stderr=True)  # messages, warnings, progress
out = Console()  # results

F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Print SafesetError as one clear line and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SafesetError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            full = disk_full(exc)
            if full is not None:
                where = f" writing {full.filename}" if full.filename else ""
                console.print(
                    f"[bold red]error:[/] no space left on device{where}; free space and run again (scan: --resume)",
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(1) from None
            where = f"{exc.filename}: " if exc.filename else ""
            console.print(f"[bold red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def progress_bar() -> Progress:
    """A progress bar on stderr (items done of all, elapsed, ETA) that stays quiet when stderr is not a terminal
    (CI, pipes, logs)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def executor_for(name: str, processes: int, ray_address: str | None) -> Any:
    """The executor `--executor NAME --processes N [--ray-address A]` means (Ray imported only when chosen)."""
    from safeset.registry import EXECUTORS, executor_class

    if name not in EXECUTORS:
        raise SafesetError(f"unknown executor {name!r}; choose {' or '.join(EXECUTORS)}")
    if name == "local":
        if ray_address:
            raise SafesetError("--ray-address goes with --executor ray")
        return executor_class(name)(processes)
    return executor_class(name)(address=ray_address, num_cpus=processes if processes > 1 else None)


def given_flags(ctx: typer.Context, names: Iterable[str]) -> dict[str, Any]:
    """The parameters among `names` that the command line set (not left at their defaults), by name: these
    override a policy file or a run's recorded settings. A repeatable option never given arrives as an empty list."""
    given = {}
    for name in names:
        source, value = ctx.get_parameter_source(name), ctx.params[name]
        # By name: typer carries its own copy of click, whose enum is not click's.
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP") or value in (None, [], ()):
            continue
        given[name] = value
    return given
