"""`safeset cases …`: the case store from the command line (import, list, verify, mark, report, verify-log)."""

from __future__ import annotations

import getpass
import importlib
import json
import pkgutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from safeset.cli.common import console, friendly, out
from safeset.errors import InputError, SafesetError
from safeset.rundir import RunDir

cases_app = typer.Typer(
    no_args_is_help=True,
    help="The case store: candidates from scans, their verification, hotline reports and the audit log.",
)

CasesOpt = Annotated[
    str, typer.Option("--cases", help="Case store: sqlite:///path/cases.db, a file path, or postgresql://…")
]
WhoOpt = Annotated[str | None, typer.Option("--who", help="Who is acting, for the audit log (default: OS user).")]


def register(app: typer.Typer) -> None:
    app.add_typer(cases_app, name="cases")


def _who(who: str | None) -> str:
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _open(url: str, create: bool = False):  # type: ignore[no-untyped-def]
    from safeset.cases.store import CaseStore

    return CaseStore.open(url, create=create)


@cases_app.command("import")
@friendly
def cases_import(
    run_dir: Annotated[Path, typer.Argument(help="A finished scan's run directory.")],
    cases: Annotated[str | None, typer.Option("--cases", help="Case store URL (default RUN_DIR/cases.db).")] = None,
    who: WhoOpt = None,
    no_dataset: Annotated[
        bool, typer.Option("--no-dataset", help="Do not re-read the dataset for the flagged rows' URLs.")
    ] = False,
) -> None:
    """Add a run's findings to the case store; known items gain occurrences, new ones become candidates."""
    if not RunDir(run_dir).findings.is_file():
        raise SafesetError(f"{run_dir}: no findings.parquet here; give the folder of a finished scan")
    store = _open(cases or str(run_dir / "cases.db"), create=True)
    try:
        result = store.import_run(run_dir, _who(who), dataset_pass=not no_dataset)
    finally:
        store.close()
    out.print(
        f"{result.findings_read} findings read: {result.new_cases} new cases, {result.updated_cases} updated",
        highlight=False,
        soft_wrap=True,
    )
    if result.note:
        console.print(f"[yellow]note:[/] {result.note}", highlight=False, soft_wrap=True)


@cases_app.command("list")
@friendly
def cases_list(
    cases: CasesOpt,
    state: Annotated[str | None, typer.Option("--state", help="Only cases in this state.")] = None,
    detector: Annotated[
        str | None, typer.Option("--detector", help="Only cases with evidence of this detector.")
    ] = None,
    bank: Annotated[str | None, typer.Option("--bank", help="Only cases with evidence from this bank.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per case, one per line.")] = False,
) -> None:
    """List cases: id, state, identity, where they occur and why they were flagged (no captions, no images)."""
    from safeset.cases.model import CaseState
    from safeset.cases.report import case_record

    wanted = _state(state, list(CaseState)) if state else None
    store = _open(cases)
    try:
        views = store.list_cases(state=wanted, detector=detector, bank=bank)
    finally:
        store.close()
    if as_json:
        for view in views:
            record = case_record(view)
            record["identity"] = view.identity
            record["evidence"] = [
                {"detector": e.detector, "bank": e.bank, "evidence": e.evidence, "action": e.action, "score": e.score}
                for e in view.evidence
            ]
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    table = Table("id", "state", "identity", "rows", "detection", "reference")
    for view in views:
        detection = ", ".join(dict.fromkeys(f"{e.detector}/{e.bank}" for e in view.evidence))
        table.add_row(
            str(view.id), view.state.value, view.identity, str(len(view.occurrences)), detection, view.reference or ""
        )
    out.print(table)
    out.print(f"{len(views)} cases", highlight=False, soft_wrap=True)


@cases_app.command("verify")
@friendly
def cases_verify(
    cases: CasesOpt,
    service: Annotated[str, typer.Option("--service", help="Verification service: arachnid, hma or photodna.")],
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Service base URL (default: its own).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the requests that would be sent; change nothing.")
    ] = False,
    batch: Annotated[
        int | None, typer.Option("--batch", min=1, help="Items per request (at most the service's).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many new candidates.")] = None,
    who: WhoOpt = None,
) -> None:
    """Send candidates' hashes and URLs (never image bytes) to a service and record its verdicts; re-sends first
    whatever a stopped run left submitted."""
    from safeset.cases.verify import VerifyOptions, verify_cases

    adapter = _service(service, endpoint)
    store = _open(cases)
    try:
        result = verify_cases(store, adapter, _who(who), VerifyOptions(batch=batch, dry_run=dry_run, limit=limit))
    finally:
        store.close()
    if dry_run:
        sys.stdout.write(json.dumps(result.requests, indent=2, ensure_ascii=False) + "\n")
        console.print(
            f"dry run: {result.resent} to re-send, {result.sent} candidates to send, "
            f"{result.no_hash} without hash or URL; nothing changed",
            highlight=False,
            soft_wrap=True,
        )
        return
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(result.outcomes.items())) or "no verdicts"
    out.print(
        f"{service}: {result.sent} sent, {result.resent} re-sent, {result.no_hash} without hash or URL "
        f"(unverifiable); {outcomes}",
        highlight=False,
        soft_wrap=True,
    )


@cases_app.command("mark")
@friendly
def cases_mark(
    cases: CasesOpt,
    state: Annotated[str, typer.Option("--state", help="confirmed, not-confirmed or dismissed.")],
    keys: Annotated[Path, typer.Option("--keys", help="File of dataset keys, one per line.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    reference: Annotated[str | None, typer.Option("--reference", help="A verification reference, if any.")] = None,
    who: WhoOpt = None,
) -> None:
    """Move the cases the listed dataset keys occur under to a state, all or none; cases already there stay."""
    from safeset.cases.model import CaseState

    target = _state(state, [CaseState.CONFIRMED, CaseState.NOT_CONFIRMED, CaseState.DISMISSED])
    listed = _read_keys(keys)
    store = _open(cases)
    try:
        ids = store.cases_for_keys(listed)
        if not ids:
            raise SafesetError(f"{keys}: none of its {len(listed)} keys occurs in the case store")
        views = store.get_cases(ids)
        todo = [v.id for v in views if v.state is not target]
        store.transition(todo, target, _who(who), reason, reference)
    finally:
        store.close()
    out.print(
        f"{len(todo)} cases now {target.value} ({len(ids) - len(todo)} already were)", highlight=False, soft_wrap=True
    )


@cases_app.command("withheld")
@friendly
def cases_withheld(
    run_dir: Annotated[Path, typer.Argument(help="The scan's run directory the release was made from.")],
    cases: CasesOpt,
    release: Annotated[
        str | None, typer.Option("--release", help="Release id (a folder of RUN_DIR/releases/; default: the latest).")
    ] = None,
    who: WhoOpt = None,
) -> None:
    """Record that a release withheld the confirmed and reported cases it removed (state `withheld`)."""
    import pyarrow.parquet as pq

    from safeset.cases.model import CaseState

    records = RunDir(run_dir).releases
    chosen = (
        release or max((p.name for p in records.iterdir() if p.is_dir()), default=None) if records.is_dir() else release
    )
    if chosen is None:
        raise SafesetError(f"{run_dir} holds no release record; run `safeset clean` first")
    removed_file = RunDir(run_dir).release_record(chosen) / "removed.parquet"
    try:
        removed = pq.read_table(removed_file, columns=["key"])["key"].to_pylist()
    except (OSError, ValueError, KeyError) as exc:
        raise SafesetError(f"{removed_file}: unreadable release record ({exc})") from None
    store = _open(cases)
    try:
        views = store.get_cases(store.cases_for_keys(k for k in removed if k))
        todo = [v.id for v in views if v.state in (CaseState.CONFIRMED, CaseState.REPORTED)]
        store.transition(todo, CaseState.WITHHELD, _who(who), f"withheld in release {chosen}")
    finally:
        store.close()
    out.print(f"{len(todo)} cases now withheld in release {chosen}", highlight=False, soft_wrap=True)


@cases_app.command("report")
@friendly
def cases_report(
    cases: CasesOpt,
    fmt: Annotated[str, typer.Option("--format", help="ncmec (XML), csv or json.")],
    out_file: Annotated[Path, typer.Option("--out", help="Report file (written 0600).")],
    mark_reported: Annotated[
        bool, typer.Option("--mark-reported", help="Move the exported confirmed cases to `reported`.")
    ] = False,
    who: WhoOpt = None,
) -> None:
    """Export confirmed (and reported) cases for a hotline: keys, URLs, hashes, detection, verification reference."""
    from safeset.cases.report import FORMATS, export_report

    if fmt not in FORMATS:
        raise SafesetError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    store = _open(cases)
    try:
        result = export_report(store, fmt, out_file, _who(who), mark_reported)
    finally:
        store.close()
    marked = f"; {result.marked_reported} marked reported" if mark_reported else ""
    out.print(
        f"{result.cases} cases ({result.records} records) written to {out_file}{marked}",
        highlight=False,
        soft_wrap=True,
    )


@cases_app.command("verify-log")
@friendly
def cases_verify_log(cases: CasesOpt) -> None:
    """Check the audit log's hash chain: exit 0 when it holds, 1 naming the first altered entry."""
    store = _open(cases)
    try:
        problems = store.verify_log()
        entries = len(store.audit_trail()) if not problems else 0
    finally:
        store.close()
    if problems:
        for problem in problems:
            console.print(f"[bold red]audit log altered:[/] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"audit log intact: {entries} entries", highlight=False, soft_wrap=True)


def _state(text: str, allowed: list):  # type: ignore[no-untyped-def,type-arg]
    from safeset.cases.model import CaseState

    try:
        state = CaseState(text.strip().lower())
    except ValueError:
        state = None
    if state is None or state not in allowed:
        raise SafesetError(f"--state {text!r}: choose from {', '.join(s.value for s in allowed)}")
    return state


def _read_keys(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path) from None
    keys = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            raise InputError("not valid UTF-8", path, line=number) from None
        if line and not line.startswith("#"):
            keys.append(line)
    if not keys:
        raise InputError("holds no keys", path)
    return keys


def _service(name: str, endpoint: str | None):  # type: ignore[no-untyped-def]
    """An adapter from the registry; adapters register themselves when their module under safeset.services is
    imported, so every module there is imported first."""
    import safeset.services as services_package
    from safeset.services.base import SERVICES

    for module in pkgutil.iter_modules(services_package.__path__):
        if module.name != "base":
            importlib.import_module(f"safeset.services.{module.name}")
    if name not in SERVICES:
        known = ", ".join(sorted(SERVICES)) or "none installed"
        raise SafesetError(f"--service {name!r}: unknown service; available: {known}")
    return SERVICES[name](endpoint)
