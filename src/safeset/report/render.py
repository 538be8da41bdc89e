"""The report page: one self-contained HTML file (inline CSS and SVG, no script, no link, no font, no image).

Its Content-Security-Policy meta tag (`default-src 'none'`) makes any request the page might still try fail,
so a report opened on a reviewer's machine cannot reach the network even if a label smuggled markup past the
escaping. It shows counts, bank and detector names, domains and shard names; never captions, URLs or images.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from safeset.report import svg
from safeset.report.data import ReportData, ReportOptions

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'"

CSS = """
:root{--ink:#1f2933;--muted:#5f6b76;--line:#e3e7eb;--bg:#f5f7f9}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif}
header{background:#1f3a5a;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c9d6e3;font-size:13px}
main{padding:18px 28px;display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:16px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px;overflow-x:auto}
section.wide{grid-column:1/-1}h2{font-size:15px;margin:0 0 10px}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{border:1px solid var(--line);border-radius:8px;
padding:8px 14px;min-width:120px}.tile b{display:block;font-size:20px}.tile span{color:var(--muted);font-size:12px}
.tile.bad b{color:#b3261e}.tile.warn b{color:#9a6700}.tile.ok b{color:#2e7d32}
.legend{display:flex;gap:14px;font-size:12px;color:var(--muted);margin:6px 0}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
table{border-collapse:collapse;font-size:12px;margin-top:8px}td,th{border-bottom:1px solid var(--line);
padding:3px 10px 3px 0;text-align:left}td.n,th.n{text-align:right}.muted{color:var(--muted)}
footer{padding:0 28px 24px;color:var(--muted);font-size:12px}
"""


def _tile(value: Any, label: str, tone: str = "") -> str:
    shown = f"{value:,}" if isinstance(value, int) else escape(str(value))
    return f'<div class="tile {tone}"><b>{shown}</b><span>{escape(label)}</span></div>'


def _section(title: str, body: str, wide: bool = False, anchor: str = "") -> str:
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<section{ident}{' class=wide' if wide else ''}><h2>{escape(title)}</h2>{body}</section>"


def _muted(text: str) -> str:
    return f'<p class="muted">{escape(text)}</p>'


def _overview(data: ReportData) -> str:
    s = data.summary
    failed = int(s.get("shards_failed") or 0)
    errored = int(s.get("rows_errored") or 0)
    tiles = [
        _tile(int(s.get("rows_in") or 0), "rows in"),
        _tile(int(s.get("rows_flagged") or 0), "rows flagged", "bad" if s.get("rows_flagged") else "ok"),
        _tile(errored, "rows errored", "warn" if errored else "ok"),
        _tile(int(s.get("rows_clean") or 0), "rows clean"),
        _tile(int(s.get("findings") or 0), "findings"),
        _tile(f"{len(data.shards):,} / {int(s.get('shards_total') or len(data.shards)):,}", "shards scanned"),
        _tile(failed, "shards failed", "bad" if failed else "ok"),
    ]
    tiles += [_tile(count, f"rows to {action}") for action, count in data.by_action]
    return _section("Overview", f'<div class="tiles">{"".join(tiles)}</div>', wide=True, anchor="overview")


def _histogram_counts(values: np.ndarray, bins: int) -> tuple[list[float], list[int]]:
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return [float(e) for e in edges], [int(c) for c in counts]


def _distances(data: ReportData) -> str:
    d = data.pdq_distances
    if not len(d):
        return _section("PDQ distances", _muted("No PDQ matches or PDQ duplicates in this run."), anchor="pdq")
    top = int(max(31, d.max()))
    counts = np.bincount(d.astype(np.int64), minlength=top + 1)
    chart = svg.histogram(
        "pdq-distance",
        "PDQ distance of each PDQ finding (bank match or duplicate)",
        list(range(top + 2)),
        [int(c) for c in counts],
        x_label="Hamming distance (bits of 256)",
    )
    note = _muted(f"{len(d):,} PDQ findings; median distance {float(np.median(d)):g}, largest {int(d.max())}.")
    return _section("PDQ distances", chart + note, anchor="pdq")


def _scores(data: ReportData, options: ReportOptions) -> str:
    charts = []
    names = {"neighbor": "cosine to the nearest seed", "model": "model score", "score": "score column"}
    for detector, values in data.scores.items():
        if not len(values):
            continue
        edges, counts = _histogram_counts(values, options.histogram_bins)
        charts.append(
            f"<h3>{escape(detector)}</h3>"
            + svg.histogram(
                f"score-{detector}", f"{detector} findings by score", edges, counts, svg.PALETTE[4], names[detector]
            )
        )
    body = "".join(charts) or _muted("No scored findings (neighbour, model or score-column detectors) in this run.")
    return _section("Scores", body, anchor="scores")


def _domains(data: ReportData, options: ReportOptions) -> str:
    if not data.domains:
        return _section("Flagged rows by domain", _muted("No flagged rows."), anchor="domains")
    total = data.flagged_rows or 1
    shown = data.domains[: options.top_domains]
    rest = data.domains[options.top_domains :]
    items = [(domain, 100.0 * count / total) for domain, count in shown]
    if rest:
        items.append((f"{len(rest):,} other domains", 100.0 * sum(c for _, c in rest) / total))
    chart = svg.hbar_chart("domains", "Share of flagged rows by registrable domain", items, svg.PALETTE[1], "%")
    note = _muted(
        f"Share of the {data.flagged_rows:,} flagged rows, by the registrable domain of the row's URL "
        "(rows flagged by several banks count once)."
    )
    return _section("Flagged rows by domain", chart + note, anchor="domains")


def _shards(data: ReportData, options: ReportOptions) -> str:
    lines = data.shards
    keys = svg.legend(
        [("clean", svg.CLEAN), ("flagged", svg.FLAGGED), ("errored", svg.ERRORED), ("failed", svg.FAILED)]
    )
    if not lines:
        return _section("Shards", _muted("The summary lists no shards."), wide=True, anchor="shards")
    if len(lines) <= options.strip_above:
        rows = []
        for line in lines:
            if line.failed:
                segments = [svg.Segment("failed", max(line.rows_in, 1), svg.FAILED)]
            else:
                clean = line.rows_in - line.rows_flagged - line.rows_errored
                segments = [
                    svg.Segment("clean", max(clean, 0), svg.CLEAN),
                    svg.Segment("flagged", line.rows_flagged, svg.FLAGGED),
                    svg.Segment("errored", line.rows_errored, svg.ERRORED),
                ]
            rows.append((line.shard, segments))
        chart = svg.stacked_bars("shards", "Rows per shard: clean, flagged, errored", rows)
    else:
        chart = svg.shard_strip(
            "shards",
            "Every shard: height = rows in (relative), red = flagged share, amber = errored share",
            [(ln.shard, ln.rows_in, ln.rows_flagged, ln.rows_errored, ln.failed) for ln in lines],
        )
    worst = sorted(lines, key=lambda ln: (not ln.failed, -ln.rows_errored, -ln.rows_flagged, ln.shard))
    worst = [ln for ln in worst if ln.failed or ln.rows_errored][: options.worst_shards]
    table = ""
    if worst:
        body = "".join(
            f"<tr><td>{escape(ln.shard)}</td><td class=n>{ln.rows_in:,}</td><td class=n>{ln.rows_errored:,}</td>"
            f"<td>{escape('failed: ' + (ln.error or '')[:160]) if ln.failed else ''}</td></tr>"
            for ln in worst
        )
        table = (
            "<table><tr><th>shard with errors</th><th class=n>rows in</th><th class=n>errored</th><th></th></tr>"
            f"{body}</table>"
        )
    total = int(data.summary.get("shards_total") or len(lines))
    progress = _muted(f"{len(lines):,} of {total:,} shards scanned; {sum(ln.failed for ln in lines):,} failed.")
    return _section("Shards: progress and errors", progress + keys + chart + table, wide=True, anchor="shards")


def _release(data: ReportData) -> str:
    r = data.release
    if r is None:
        return _section(
            "Release accounting", _muted("No release has been written from this run yet."), anchor="release"
        )
    rows_in = int(r.get("rows_in") or 0)
    cover = int(r.get("rows_removed_cover") or 0)
    removed = int(r.get("rows_removed") or 0)
    segments = [
        svg.Segment("kept", int(r.get("rows_kept") or 0), svg.CLEAN),
        svg.Segment("removed (flagged)", removed - cover, svg.FLAGGED),
        svg.Segment("removed (cover)", cover, svg.COVER),
        svg.Segment("errored (withheld)", int(r.get("rows_errored") or 0), svg.ERRORED),
    ]
    chart = svg.stacked_bars("release", "Release: every input row accounted for", [("release", segments)])
    keys = svg.legend([(s.label, s.color) for s in segments])
    balanced = rows_in == sum(int(s.value) for s in segments)
    tiles = "".join(
        [
            _tile(rows_in, "rows in"),
            *(_tile(int(s.value), s.label) for s in segments),
            _tile(int(r.get("members_withheld") or 0), "members withheld"),
            _tile(int(r.get("shards_failed") or 0), "shards withheld"),
        ]
    )
    source = f"{r.get('release_id') or ''} · from {data.release_source} · created {r.get('created', '?')}"
    check = "in = kept + removed + errored ✓" if balanced else "counts do not add up: in ≠ kept + removed + errored"
    body = f'<div class="tiles">{tiles}</div>{keys}{chart}' + _muted(check) + _muted(source.strip(" ·"))
    return _section("Release accounting", body, anchor="release")


def _cases(data: ReportData) -> str:
    if data.case_states is None and data.cases_note is None:
        return ""
    if data.case_states is None:
        return _section("Case states", _muted(data.cases_note or ""), anchor="cases")
    chart = svg.hbar_chart("cases", "Cases by state", data.case_states, svg.PALETTE[5])
    return _section("Case states", chart, anchor="cases")


def render(data: ReportData, options: ReportOptions | None = None) -> str:
    options = options or ReportOptions()
    s = data.summary
    title = f"safeset report · {data.run_dir.name}"
    banks = ", ".join(str(b.get("name")) for b in s.get("banks") or [] if isinstance(b, dict))
    subtitle = (
        f"run {data.run_dir} · started {s.get('started', '?')} · finished {s.get('finished', '?')} · "
        f"safeset {s.get('safeset_version', '?')} · banks: {banks}"
    )
    sections = [
        _overview(data),
        _section(
            "Findings by detector",
            svg.hbar_chart("detector", "Findings by detector", data.by_detector, svg.PALETTE[0]),
            anchor="detector",
        ),
        _section(
            "Findings by bank", svg.hbar_chart("bank", "Findings by bank", data.by_bank, svg.PALETTE[2]), anchor="bank"
        ),
        _distances(data),
        _scores(data, options),
        _domains(data, options),
        _release(data),
        _cases(data),
        _shards(data, options),
    ]
    notes = "".join(f"<p>{escape(n)}</p>" for n in data.notes)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f"<main>{''.join(sections)}</main>"
        f"<footer>{notes}<p>Counts, bank and detector names, domains and shard names only: no captions, URLs or "
        "images. Keep this file private (mode 0600): it describes what a dataset holds.</p></footer>"
        "</body></html>"
    )
