"""Inline SVG charts drawn in Python: horizontal bars, histograms, stacked bars and a compact shard strip.

No chart library and no script: the report must open from a file with no network access and run nothing, so
each chart is plain SVG with a `<title>` per bar (the browser shows it on hover). Every label is escaped — bank
names, domains and shard names come from files a hostile dataset could shape. Each chart's root carries
`data-chart` and `data-bars` and each bar the class `bar`, which is what the browser test counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#3b6ea5", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f", "#c97c5d", "#5c6b73")
CLEAN, FLAGGED, ERRORED, FAILED, COVER = "#9fc5a8", "#d1495b", "#edae49", "#5c1a1b", "#c9b6d9"
FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:12px"


@dataclass(frozen=True)
class Segment:
    label: str
    value: float
    color: str


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"


def _open(name: str, width: int, height: int, bars: int, title: str) -> str:
    return (
        f'<svg role="img" class="chart" data-chart="{escape(name)}" '
        f'data-bars="{bars}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" style="{FONT}">'
        f"<title>{escape(title)}</title>"
    )


def hbar_chart(
    name: str, title: str, items: Sequence[tuple[str, float]], color: str = PALETTE[0], value_suffix: str = ""
) -> str:
    """One labelled horizontal bar per item, longest first as given."""
    label_w, bar_w, row_h = 190, 330, 22
    width, height = label_w + bar_w + 90, max(row_h * len(items), row_h) + 8
    top = max((v for _, v in items), default=0) or 1
    parts = [_open(name, width, height, len(items), title)]
    if not items:
        parts.append(f'<text x="4" y="18" fill="#777">{escape("nothing to show")}</text>')
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        w = max(bar_w * value / top, 1.5)
        shown = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" fill="#333">{escape(shown)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" rx="3" fill="{color}">'
            f"<title>{escape(label)}: {_fmt(value)}{escape(value_suffix)}</title></rect>"
            f'<text x="{label_w + w + 5:.1f}" y="{y + 14}" fill="#555">{_fmt(value)}{escape(value_suffix)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    name: str, title: str, edges: Sequence[float], counts: Sequence[int], color: str = PALETTE[3], x_label: str = ""
) -> str:
    """Vertical bars over bins: `counts[i]` for `edges[i] .. edges[i + 1]`."""
    width, height, left, bottom, top_pad = 560, 210, 44, 36, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    n = len(counts)
    peak = max(counts, default=0) or 1
    parts = [_open(name, width, height, n, title)]
    parts.append(
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" stroke="#999"/>'
        f'<text x="{left - 6}" y="{top_pad + 10}" text-anchor="end" fill="#555">{peak:,}</text>'
        f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end" fill="#555">0</text>'
    )
    step = plot_w / max(n, 1)
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x = left + i * step
        lo, hi = edges[i], edges[i + 1]
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{top_pad + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>{_fmt(lo)}–{_fmt(hi)}: {count:,}</title></rect>'
        )
    ticks = sorted({0, n // 2, n}) if n else []
    for i in ticks:
        value = edges[i] if i < len(edges) else edges[-1]
        parts.append(
            f'<text x="{left + i * step:.1f}" y="{top_pad + plot_h + 14}" text-anchor="middle" fill="#555">'
            f"{_fmt(value)}</text>"
        )
    if x_label:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="#333">'
            f"{escape(x_label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(name: str, title: str, rows: Sequence[tuple[str, Sequence[Segment]]]) -> str:
    """One horizontal bar per row, split into coloured segments (shares of the row's total)."""
    label_w, bar_w, row_h = 150, 420, 24
    width, height = label_w + bar_w + 20, row_h * max(len(rows), 1) + 8
    segments = sum(1 for _, segs in rows for s in segs if s.value > 0)
    parts = [_open(name, width, height, segments, title)]
    for i, (label, segs) in enumerate(rows):
        y = 4 + i * row_h
        total = sum(s.value for s in segs) or 1
        shown = label if len(label) <= 22 else label[:21] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" fill="#333">{escape(shown)}</text>')
        x = float(label_w)
        for seg in segs:
            if seg.value <= 0:
                continue
            w = bar_w * seg.value / total
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y + 2}" width="{max(w, 1):.1f}" height="{row_h - 6}" '
                f'fill="{seg.color}"><title>{escape(label)} · {escape(seg.label)}: {_fmt(seg.value)} '
                f"({100 * seg.value / total:.1f}%)</title></rect>"
            )
            x += w
    parts.append("</svg>")
    return "".join(parts)


def shard_strip(name: str, title: str, shards: Sequence[tuple[str, int, int, int, bool]]) -> str:
    """Hundreds of shards at a glance: one thin column each (rows in scaled to the largest shard), flagged
    and errored shares stacked from the bottom, failed shards as a dark full-height column."""
    n = len(shards)
    width, height, pad = 760, 120, 4
    step = (width - 2 * pad) / max(n, 1)
    largest = max((s[1] for s in shards), default=0) or 1
    parts = [_open(name, width, height, n, title)]
    for i, (shard, rows_in, flagged, errored, failed) in enumerate(shards):
        x = pad + i * step
        full = (height - 2 * pad) * (rows_in / largest if rows_in else 1.0)
        label = f"{shard}: failed" if failed else f"{shard}: {rows_in:,} rows, {flagged:,} flagged, {errored:,} errored"
        y0 = height - pad
        w = max(step - (1 if step > 3 else 0), 0.6)
        if failed:
            parts.append(
                f'<rect class="bar" x="{x:.2f}" y="{pad}" width="{w:.2f}" height="{height - 2 * pad}" '
                f'fill="{FAILED}"><title>{escape(label)}</title></rect>'
            )
            continue
        parts.append(
            f'<rect class="bar" x="{x:.2f}" y="{y0 - full:.2f}" width="{w:.2f}" height="{full:.2f}" '
            f'fill="{CLEAN}"><title>{escape(label)}</title></rect>'
        )
        for value, color in ((flagged, FLAGGED), (errored, ERRORED)):
            if value and rows_in:
                h = full * value / rows_in
                parts.append(
                    f'<rect x="{x:.2f}" y="{y0 - h:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{color}">'
                    f"<title>{escape(label)}</title></rect>"
                )
                y0 -= h
    parts.append("</svg>")
    return "".join(parts)


def legend(entries: Sequence[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:{color}"></i>{escape(label)}</span>' for label, color in entries)
        + "</div>"
    )
