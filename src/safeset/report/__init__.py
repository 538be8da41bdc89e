"""`safeset report`: one self-contained HTML page a reviewer would rather look at than read.

Charts of a run's findings (by detector and bank, PDQ distances, scores, domains), per-shard progress and
errors, the release's accounting and, with a case store, case states. Built from the run directory's
documented files only, written private (0600), with no script and no network request.
"""

from __future__ import annotations

from pathlib import Path

from safeset.fsutil import atomic_path
from safeset.report.data import ReportData, ReportOptions, gather
from safeset.report.render import render


def write_report(
    run_dir: Path,
    out: Path,
    release_dir: Path | None = None,
    cases_url: str | None = None,
    options: ReportOptions | None = None,
) -> ReportData:
    """Gather, render and write the report to `out` (mode 0600, atomically); returns what it showed."""
    data = gather(run_dir, release_dir, cases_url, options)
    page = render(data, options)
    with atomic_path(out, private=True) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return data


__all__ = ["ReportData", "ReportOptions", "gather", "render", "write_report"]
